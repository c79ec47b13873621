//! RFC 4226 HOTP codes, and RFC 6238 TOTP over them (the counter is the time step):
//! SHA1/SHA256/SHA512, 6-8 digits, any period.

use hmac::{Hmac, KeyInit, Mac};
use pam_totp_proto::Algorithm;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// How codes are made; `period` matters only for TOTP (an HOTP code depends on its counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u32,
}

/// The time step containing `unix_time`.
pub fn step_at(unix_time: i64, period: u32) -> i64 {
    unix_time.div_euclid(i64::from(period.max(1)))
}

fn hmac_digest(algorithm: Algorithm, key: &[u8], message: &[u8]) -> Zeroizing<Vec<u8>> {
    fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Zeroizing<Vec<u8>> {
        // HMAC takes keys of any length, so this cannot fail; an empty digest would only
        // make every comparison fail, never succeed.
        match <M as KeyInit>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(message);
                Zeroizing::new(mac.finalize().into_bytes().to_vec())
            }
            Err(_) => Zeroizing::new(Vec::new()),
        }
    }
    match algorithm {
        Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, message),
        Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, message),
        Algorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, message),
    }
}

/// The code for one counter (for TOTP: one time step), zero-padded to `digits`.
pub fn code_for_step(secret: &[u8], params: TotpParams, step: i64) -> Zeroizing<String> {
    let counter = u64::try_from(step).unwrap_or(0).to_be_bytes();
    let digest = hmac_digest(params.algorithm, secret, &counter);
    let Some(&last) = digest.last() else {
        return Zeroizing::new(String::new());
    };
    let offset = usize::from(last & 0x0f);
    let Some(window) = digest.get(offset..offset + 4) else {
        return Zeroizing::new(String::new());
    };
    let binary = u32::from_be_bytes([window[0] & 0x7f, window[1], window[2], window[3]]);
    let value = u64::from(binary) % 10u64.pow(u32::from(params.digits));
    Zeroizing::new(format!(
        "{value:0width$}",
        width = usize::from(params.digits)
    ))
}

/// Finds the step in `now ± window` whose code equals `code`.
pub fn matching_step(
    secret: &[u8],
    params: TotpParams,
    code: &str,
    now: i64,
    window: u32,
) -> Option<i64> {
    let current = step_at(now, params.period);
    let window = i64::from(window);
    first_match(
        secret,
        params,
        code,
        (current - window)..=(current + window),
    )
}

/// Finds the counter in `next ..= next + look_ahead` whose code equals `code` (RFC 4226's
/// look-ahead: the token may have been pressed without its code being used).
pub fn matching_counter(
    secret: &[u8],
    params: TotpParams,
    code: &str,
    next: i64,
    look_ahead: u32,
) -> Option<i64> {
    first_match(
        secret,
        params,
        code,
        next..=next.saturating_add(i64::from(look_ahead)),
    )
}

/// The first counter of `candidates` (negative ones skipped) whose code equals `code`. Every
/// candidate is computed and compared in constant time, so timing does not reveal which one
/// (if any) matched.
fn first_match(
    secret: &[u8],
    params: TotpParams,
    code: &str,
    candidates: std::ops::RangeInclusive<i64>,
) -> Option<i64> {
    let mut found = None;
    for counter in candidates {
        if counter < 0 {
            continue;
        }
        let candidate = code_for_step(secret, params, counter);
        let equal: bool = candidate.as_bytes().ct_eq(code.as_bytes()).into();
        if equal && found.is_none() {
            found = Some(counter);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    fn params(algorithm: Algorithm, digits: u8) -> TotpParams {
        TotpParams {
            algorithm,
            digits,
            period: 30,
        }
    }

    /// RFC 6238 Appendix B.
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let vectors: [(i64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, sha1, sha256, sha512) in vectors {
            let step = step_at(time, 30);
            let got1 = code_for_step(SEED_SHA1, params(Algorithm::Sha1, 8), step);
            let got256 = code_for_step(SEED_SHA256, params(Algorithm::Sha256, 8), step);
            let got512 = code_for_step(SEED_SHA512, params(Algorithm::Sha512, 8), step);
            assert_eq!(got1.as_str(), sha1, "SHA1 at {time}");
            assert_eq!(got256.as_str(), sha256, "SHA256 at {time}");
            assert_eq!(got512.as_str(), sha512, "SHA512 at {time}");
        }
    }

    #[test]
    fn shorter_codes_are_the_low_digits() {
        let step = step_at(59, 30);
        assert_eq!(
            code_for_step(SEED_SHA1, params(Algorithm::Sha1, 6), step).as_str(),
            "287082"
        );
        assert_eq!(
            code_for_step(SEED_SHA1, params(Algorithm::Sha1, 7), step).as_str(),
            "4287082"
        );
    }

    #[test]
    fn window_accepts_neighbours_only() {
        let p = params(Algorithm::Sha1, 6);
        let now = 1_700_000_000;
        let step = step_at(now, 30);
        for offset in -1..=1 {
            let code = code_for_step(SEED_SHA1, p, step + offset);
            assert_eq!(
                matching_step(SEED_SHA1, p, &code, now, 1),
                Some(step + offset)
            );
        }
        for offset in [-2, 2] {
            let code = code_for_step(SEED_SHA1, p, step + offset);
            assert_eq!(matching_step(SEED_SHA1, p, &code, now, 1), None);
        }
        let code = code_for_step(SEED_SHA1, p, step);
        assert_eq!(matching_step(SEED_SHA1, p, &code, now, 0), Some(step));
        assert_eq!(matching_step(SEED_SHA1, p, "000000x", now, 1), None);
    }

    /// RFC 4226 Appendix D: HOTP of the secret "12345678901234567890", counters 0 to 9.
    const RFC4226_CODES: [&str; 10] = [
        "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
        "520489",
    ];

    #[test]
    fn rfc4226_appendix_d_vectors() {
        let p = params(Algorithm::Sha1, 6);
        for (counter, code) in (0..).zip(RFC4226_CODES) {
            assert_eq!(code_for_step(SEED_SHA1, p, counter).as_str(), code);
            // Found from the counter itself, and from any earlier one within the look-ahead.
            assert_eq!(
                matching_counter(SEED_SHA1, p, code, counter, 0),
                Some(counter)
            );
            assert_eq!(matching_counter(SEED_SHA1, p, code, 0, 9), Some(counter));
        }
    }

    #[test]
    fn look_ahead_bounds_the_counters_tried() {
        let p = params(Algorithm::Sha1, 6);
        // Counter 3's code: within 3 of counter 0, not within 2; never behind the next one.
        let code = RFC4226_CODES[3];
        assert_eq!(matching_counter(SEED_SHA1, p, code, 0, 3), Some(3));
        assert_eq!(matching_counter(SEED_SHA1, p, code, 0, 2), None);
        assert_eq!(matching_counter(SEED_SHA1, p, code, 4, 5), None);
        assert_eq!(matching_counter(SEED_SHA1, p, "000000", 0, 9), None);
        assert_eq!(matching_counter(SEED_SHA1, p, "75522", 0, 9), None);
        // The period plays no part in a counter's code.
        let other_period = TotpParams { period: 60, ..p };
        assert_eq!(
            matching_counter(SEED_SHA1, other_period, code, 1, 5),
            Some(3)
        );
        // The end of the range saturates instead of overflowing.
        assert_eq!(matching_counter(SEED_SHA1, p, code, i64::MAX, 10), None);
    }

    #[test]
    fn period_changes_the_step() {
        assert_eq!(step_at(119, 60), 1);
        assert_eq!(step_at(-1, 30), -1);
    }
}
