//! The fleet key: what keeps a shared (PostgreSQL) store's dump useless on its own.
//!
//! With a fleet store every host reads and writes the same rows, and a database dump, backup
//! or replica is one more place secrets could leak from. So the rows never hold anything a
//! dump could use by itself: TOTP secrets are sealed with XChaCha20-Poly1305 under a key that
//! lives only in a root-only file on the fleet's hosts (PostgreSQL never sees it), and
//! emergency codes are kept as HMAC-SHA256 of their salted hash, so guessing the (short,
//! numeric) codes from a dump needs the key too, where a plain salted SHA-256 falls to a
//! brute force of the 10^n codes.
//!
//! The account name is part of each secret's associated data: a row's sealed secret copied
//! to another account (by someone who can write the database but lacks the key) fails to
//! open instead of letting that person log in as the other account with a known code.
//!
//! The 32 key bytes are never kept: HKDF-SHA256 derives one subkey per purpose (distinct
//! `info` strings), so the encryption and the keyed hash never share a key.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::io::{ErrorKind, Read};
use std::path::Path;
use zeroize::{Zeroize, Zeroizing};

/// The size of the fleet key file, in bytes.
pub const KEY_BYTES: usize = 32;
/// The version byte leading every sealed secret.
const BLOB_VERSION: u8 = 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// HKDF `info` for the subkey that seals TOTP secrets; also the prefix of their AD.
const SECRET_INFO: &[u8] = b"pam-totp secret v1";
/// HKDF `info` for the subkey of the emergency codes' keyed hash.
const EMERGENCY_INFO: &[u8] = b"pam-totp emergency-code v1";
/// The emergency subkey is one full SHA-256 block, the longest key HMAC uses as is.
const EMERGENCY_KEY_BYTES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the fleet key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Not a private regular file of the agent's (a link, another owner, a loose mode).
    #[error(transparent)]
    File(#[from] crate::fsperm::PermissionError),
    #[error(
        "refusing the fleet key file {path}: it is {len} bytes long; it must hold exactly 32 \
         bytes, e.g. head -c 32 /dev/urandom > {path}"
    )]
    Length { path: String, len: u64 },
    #[error("cannot seal the TOTP secret of account {account:?}: {reason}")]
    Seal { account: String, reason: String },
    #[error("cannot open the TOTP secret of account {account:?}: {reason}")]
    Open {
        account: String,
        reason: &'static str,
    },
}

/// The fleet key: 32 random bytes in a root-only file, the same on every host of a fleet.
///
/// Holds only the derived subkeys, wiped on drop; `Debug` shows no bytes.
pub struct FleetKey {
    secret_key: Zeroizing<[u8; 32]>,
    emergency_key: Zeroizing<[u8; EMERGENCY_KEY_BYTES]>,
}

impl fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FleetKey(..)")
    }
}

// Every field is `Zeroizing`, so dropping a `FleetKey` wipes all of it.
impl zeroize::ZeroizeOnDrop for FleetKey {}

/// HKDF-Expand into `N` bytes. Expand only fails when asked for more than 255 hash lengths,
/// which the const assertion rules out at compile time, so its error is never seen.
fn expand<const N: usize>(hkdf: &Hkdf<Sha256>, info: &[u8]) -> Zeroizing<[u8; N]> {
    const { assert!(N <= 255 * 32) };
    let mut okm = Zeroizing::new([0u8; N]);
    let _cannot_fail = hkdf.expand(info, okm.as_mut_slice());
    okm
}

/// The associated data of `account`'s sealed secret: `SECRET_INFO`, a NUL, the account name.
fn secret_ad(account: &str) -> Vec<u8> {
    let mut ad = Vec::with_capacity(SECRET_INFO.len() + 1 + account.len());
    ad.extend_from_slice(SECRET_INFO);
    ad.push(0);
    ad.extend_from_slice(account.as_bytes());
    ad
}

impl FleetKey {
    /// Reads the key file: a regular file (not a symbolic link), owned by the agent's euid,
    /// with no group or other permission bits (0600, or 0400 as systemd `LoadCredential=`
    /// makes it), holding exactly 32 raw bytes.
    pub fn load(path: &Path) -> Result<FleetKey, KeyError> {
        let shown = || path.display().to_string();
        let mut file = crate::fsperm::open_secret_file(path, "fleet key file")?;
        let meta = file.metadata().map_err(|source| KeyError::Read {
            path: shown(),
            source,
        })?;
        if meta.len() != KEY_BYTES as u64 {
            return Err(KeyError::Length {
                path: shown(),
                len: meta.len(),
            });
        }
        // One byte of room to notice a file that grew after fstat.
        let mut buffer = Zeroizing::new([0u8; KEY_BYTES + 1]);
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(KeyError::Read {
                        path: shown(),
                        source,
                    })
                }
            }
        }
        match buffer.first_chunk::<KEY_BYTES>() {
            Some(bytes) if filled == KEY_BYTES => Ok(FleetKey::from_bytes(bytes)),
            _ => Err(KeyError::Length {
                path: shown(),
                len: filled as u64,
            }),
        }
    }

    /// From raw bytes (tests, benchmarks).
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> FleetKey {
        let hkdf = Hkdf::<Sha256>::new(None, bytes);
        FleetKey {
            secret_key: expand(&hkdf, SECRET_INFO),
            emergency_key: expand(&hkdf, EMERGENCY_INFO),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        // The cipher's copy of the key is wiped when it drops (chacha20poly1305 `zeroize`).
        XChaCha20Poly1305::new(<&Key>::from(&*self.secret_key))
    }

    /// Encrypts `account`'s TOTP secret with a fresh random nonce, bound to the account name.
    /// The blob is `1 (version) || 24-byte nonce || ciphertext || 16-byte tag`.
    pub fn seal_secret(&self, account: &str, secret: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| KeyError::Seal {
            account: account.to_owned(),
            reason: format!("the operating system's random number generator failed: {e}"),
        })?;
        // Sized up front so nothing reallocates (and leaves plaintext behind) while sealing.
        let header = 1 + NONCE_BYTES;
        let mut blob = Vec::with_capacity(header + secret.len() + TAG_BYTES);
        blob.push(BLOB_VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(secret);
        let sealed = match blob.get_mut(header..) {
            Some(body) => self
                .cipher()
                .encrypt_inout_detached(&XNonce::from(nonce), &secret_ad(account), body.into())
                .map_err(|_| "the secret is too long"),
            None => Err("internal error: short buffer"),
        };
        match sealed {
            Ok(tag) => {
                blob.extend_from_slice(&tag);
                Ok(blob)
            }
            Err(reason) => {
                blob.zeroize();
                Err(KeyError::Seal {
                    account: account.to_owned(),
                    reason: reason.to_owned(),
                })
            }
        }
    }

    /// Decrypts a blob from [`seal_secret`](Self::seal_secret) for the same `account`, in
    /// place in a buffer that is wiped on drop. Fails on a wrong account or key, on tampering,
    /// truncation or an unknown version.
    pub fn open_secret(&self, account: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let fail = |reason: &'static str| KeyError::Open {
            account: account.to_owned(),
            reason,
        };
        let (&version, rest) = blob.split_first().ok_or_else(|| fail("it is empty"))?;
        if version != BLOB_VERSION {
            return Err(fail("unknown format version (written by a newer agent?)"));
        }
        let (nonce, rest) = rest
            .split_first_chunk::<NONCE_BYTES>()
            .ok_or_else(|| fail("it is truncated"))?;
        let (ciphertext, tag) = rest
            .split_last_chunk::<TAG_BYTES>()
            .ok_or_else(|| fail("it is truncated"))?;
        let mut plaintext = Zeroizing::new(ciphertext.to_vec());
        self.cipher()
            .decrypt_inout_detached(
                <&XNonce>::from(nonce),
                &secret_ad(account),
                plaintext.as_mut_slice().into(),
                <&Tag>::from(tag),
            )
            .map_err(|_| {
                fail("authentication failed (another fleet key, another account's row, or altered data)")
            })?;
        Ok(plaintext)
    }

    /// The keyed digest stored for an emergency code with a fleet store:
    /// HMAC-SHA256(emergency subkey, `salted_sha256`), where `salted_sha256` is the
    /// SHA-256(salt || code) the agent computes anyway.
    pub fn emergency_digest(&self, salted_sha256: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new((&*self.emergency_key).into());
        mac.update(salted_sha256);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    const KEY: [u8; 32] = [
        0x8f, 0x3a, 0x61, 0xd2, 0x07, 0x5e, 0xc4, 0x19, 0xaa, 0x70, 0x2b, 0xe9, 0x14, 0x88, 0x5d,
        0x36, 0xf1, 0x0c, 0x97, 0x42, 0xbd, 0x63, 0x2e, 0xd8, 0x55, 0x1a, 0xc6, 0x7f, 0x09, 0xb3,
        0xe4, 0x21,
    ];
    const OTHER_KEY: [u8; 32] = [0x5a; 32];
    const SECRET: &[u8] = b"12345678901234567890";

    fn key() -> FleetKey {
        FleetKey::from_bytes(&KEY)
    }

    fn write_key_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn assert_no_key_bytes(message: &str) {
        let lower = message.to_lowercase();
        for bytes in [&KEY[..], &KEY[..8], &KEY[8..16], SECRET] {
            assert!(!lower.contains(&hex::encode(bytes)), "{message}");
        }
        assert!(!message.contains(&format!("{:?}", &KEY[..4])), "{message}");
        assert!(!message.contains("12345678901234567890"), "{message}");
    }

    #[test]
    fn round_trip() {
        let key = key();
        let blob = key.seal_secret("alice", SECRET).unwrap();
        assert_eq!(blob.len(), 1 + NONCE_BYTES + SECRET.len() + TAG_BYTES);
        assert_eq!(blob[0], BLOB_VERSION);
        assert!(!blob.windows(SECRET.len()).any(|w| w == SECRET));
        assert_eq!(key.open_secret("alice", &blob).unwrap().as_slice(), SECRET);
        // The same key read back from the same bytes (another host) opens it too.
        let again = FleetKey::from_bytes(&KEY);
        assert_eq!(
            again.open_secret("alice", &blob).unwrap().as_slice(),
            SECRET
        );
        // An empty secret round-trips as well.
        let empty = key.seal_secret("alice", b"").unwrap();
        assert!(key.open_secret("alice", &empty).unwrap().is_empty());
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let key = key();
        let a = key.seal_secret("alice", SECRET).unwrap();
        let b = key.seal_secret("alice", SECRET).unwrap();
        assert_ne!(a[1..1 + NONCE_BYTES], b[1..1 + NONCE_BYTES]);
        assert_ne!(a, b);
    }

    #[test]
    fn another_account_cannot_open() {
        let key = key();
        let blob = key.seal_secret("alice", SECRET).unwrap();
        let err = key.open_secret("bob", &blob).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("\"bob\""), "{message}");
        assert!(message.contains("authentication failed"), "{message}");
        assert_no_key_bytes(&message);
        // A prefix or an extension of the name does not open it either.
        assert!(key.open_secret("alic", &blob).is_err());
        assert!(key.open_secret("alice\0", &blob).is_err());
    }

    #[test]
    fn another_key_cannot_open() {
        let blob = key().seal_secret("alice", SECRET).unwrap();
        let other = FleetKey::from_bytes(&OTHER_KEY);
        let err = other.open_secret("alice", &blob).unwrap_err();
        assert_no_key_bytes(&err.to_string());
    }

    #[test]
    fn any_flipped_bit_fails() {
        let key = key();
        let blob = key.seal_secret("alice", SECRET).unwrap();
        for byte in 0..blob.len() {
            for bit in 0..8 {
                let mut altered = blob.clone();
                altered[byte] ^= 1 << bit;
                assert!(key.open_secret("alice", &altered).is_err(), "{byte}/{bit}");
            }
        }
    }

    #[test]
    fn truncated_or_extended_fails() {
        let key = key();
        let blob = key.seal_secret("alice", SECRET).unwrap();
        for len in 0..blob.len() {
            let err = key.open_secret("alice", &blob[..len]).unwrap_err();
            assert_no_key_bytes(&err.to_string());
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(key.open_secret("alice", &longer).is_err());
        let err = key
            .open_secret("alice", &blob[..1 + NONCE_BYTES])
            .unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn unknown_version_fails() {
        let key = key();
        let mut blob = key.seal_secret("alice", SECRET).unwrap();
        for version in [0u8, 2, 0xff] {
            blob[0] = version;
            let err = key.open_secret("alice", &blob).unwrap_err();
            assert!(err.to_string().contains("unknown format version"), "{err}");
        }
    }

    #[test]
    fn emergency_digest_is_keyed() {
        let salted = [0x42u8; 32];
        let key = key();
        assert_eq!(key.emergency_digest(&salted), key.emergency_digest(&salted));
        assert_eq!(
            key.emergency_digest(&salted),
            FleetKey::from_bytes(&KEY).emergency_digest(&salted)
        );
        assert_ne!(
            key.emergency_digest(&salted),
            FleetKey::from_bytes(&OTHER_KEY).emergency_digest(&salted)
        );
        assert_ne!(
            key.emergency_digest(&salted),
            key.emergency_digest(&[0x43; 32])
        );
        // Not the unkeyed hash, nor an HMAC under the raw key bytes.
        let mut raw = <Hmac<Sha256> as KeyInit>::new_from_slice(&KEY).unwrap();
        raw.update(&salted);
        assert_ne!(
            key.emergency_digest(&salted),
            <[u8; 32]>::from(raw.finalize().into_bytes())
        );
    }

    /// The subkeys are RFC 5869 HKDF-SHA256 (salt empty) with the two `info` strings,
    /// recomputed here by hand: T(1) = HMAC(PRK, info || 1), T(2) = HMAC(PRK, T(1) || info || 2).
    #[test]
    fn subkeys_are_hkdf_sha256() {
        let hmac = |key: &[u8], parts: &[&[u8]]| -> Vec<u8> {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        };
        let prk = hmac(&[0u8; 32], &[&KEY]);
        let t1 = hmac(&prk, &[SECRET_INFO, &[1]]);
        let key = key();
        assert_eq!(key.secret_key.as_slice(), t1.as_slice());
        let e1 = hmac(&prk, &[EMERGENCY_INFO, &[1]]);
        let e2 = hmac(&prk, &[&e1, EMERGENCY_INFO, &[2]]);
        assert_eq!(key.emergency_key[..32], e1[..]);
        assert_eq!(key.emergency_key[32..], e2[..]);
        assert_ne!(key.secret_key[..], key.emergency_key[..32]);
        assert_ne!(key.secret_key[..], KEY[..]);
    }

    #[test]
    fn debug_shows_no_bytes() {
        assert_eq!(format!("{:?}", key()), "FleetKey(..)");
    }

    #[test]
    fn load_accepts_private_32_byte_files() {
        let dir = tempfile::tempdir().unwrap();
        let blob = key().seal_secret("alice", SECRET).unwrap();
        for (name, mode) in [("rw", 0o600), ("ro", 0o400)] {
            let path = write_key_file(&dir, name, &KEY, mode);
            let loaded = FleetKey::load(&path).unwrap();
            assert_eq!(
                loaded.open_secret("alice", &blob).unwrap().as_slice(),
                SECRET
            );
        }
    }

    #[test]
    fn load_refuses_wrong_length() {
        let dir = tempfile::tempdir().unwrap();
        let hex_text = hex::encode(KEY);
        let hex_line = format!("{hex_text}\n");
        let longer = [&KEY[..], &[0]].concat();
        let cases: [(&str, &[u8]); 5] = [
            ("short", &KEY[..31]),
            ("long", &longer),
            ("empty", b""),
            ("hex", hex_text.as_bytes()),
            ("hexnl", hex_line.as_bytes()),
        ];
        for (name, bytes) in cases {
            let path = write_key_file(&dir, name, bytes, 0o600);
            let err = FleetKey::load(&path).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, KeyError::Length { .. }), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(
                message.contains("must hold exactly 32 bytes, e.g. head -c 32 /dev/urandom >"),
                "{message}"
            );
            assert!(
                message.contains(&format!("{} bytes long", bytes.len())),
                "{message}"
            );
            assert_no_key_bytes(&message);
        }
    }

    #[test]
    fn load_refuses_group_or_other_access() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o606] {
            let path = write_key_file(&dir, &format!("m{mode:o}"), &KEY, mode);
            let err = FleetKey::load(&path).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, KeyError::File(_)), "{message}");
            assert!(message.contains(&format!("{mode:04o}")), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert_no_key_bytes(&message);
        }
    }

    #[test]
    fn load_refuses_a_file_of_another_owner() {
        // Changing a file's owner needs root (the tests run as root).
        let dir = tempfile::tempdir().unwrap();
        let path = write_key_file(&dir, "theirs", &KEY, 0o600);
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(&path, Some(nobody), None).unwrap();
        let err = FleetKey::load(&path).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, KeyError::File(_)), "{message}");
        assert!(message.contains("owned by uid 65534"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert_no_key_bytes(&message);
    }

    #[test]
    fn load_refuses_symlinks_and_non_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = write_key_file(&dir, "real", &KEY, 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = FleetKey::load(&link).unwrap_err();
        assert!(matches!(err, KeyError::File(_)), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(
            err.to_string().contains(&link.display().to_string()),
            "{err}"
        );

        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = FleetKey::load(&sub).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");

        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(
            &fifo,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .unwrap();
        let err = FleetKey::load(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");

        let err = FleetKey::load(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, KeyError::File(_)), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
