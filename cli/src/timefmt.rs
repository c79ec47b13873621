//! Times for people: `--since` values in, local times out. JSON output keeps the agent's
//! RFC 3339 UTC strings untouched.

use chrono::{
    DateTime, FixedOffset, Local, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
};
use pam_totp_proto::ApiError;

/// How human output shows times, and how `--since` reads times without a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The system's zone (`TZ`, else /etc/localtime).
    Local,
    /// A fixed offset (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Fixed(FixedOffset),
}

/// The layout of a time in human output.
const HUMAN_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

impl Zone {
    /// An RFC 3339 time as `YYYY-MM-DD HH:MM:SS` in this zone; anything else unchanged.
    pub fn human(self, rfc3339: &str) -> String {
        let Ok(time) = DateTime::parse_from_rfc3339(rfc3339) else {
            return rfc3339.to_owned();
        };
        match self {
            Self::Local => time.with_timezone(&Local).format(HUMAN_FORMAT).to_string(),
            Self::Fixed(offset) => time.with_timezone(&offset).format(HUMAN_FORMAT).to_string(),
        }
    }

    /// Unix time of a wall-clock time in this zone: the earlier one when a clock change makes
    /// it ambiguous, `None` when it does not exist (skipped by a clock change).
    fn resolve(self, naive: NaiveDateTime) -> Option<i64> {
        fn earliest<Tz: TimeZone>(result: LocalResult<DateTime<Tz>>) -> Option<i64> {
            match result {
                LocalResult::Single(time) | LocalResult::Ambiguous(time, _) => {
                    Some(time.timestamp())
                }
                LocalResult::None => None,
            }
        }
        match self {
            Self::Local => earliest(Local.from_local_datetime(&naive)),
            Self::Fixed(offset) => earliest(offset.from_local_datetime(&naive)),
        }
    }
}

const SINCE_FORMS: &str = "expected RFC 3339 (2026-11-22T10:00:00Z), a date (2026-11-22), a \
                           date and time (2026-11-22 10:00), @UNIXTIME, or an age (30m, 1h, 2d)";

/// `--since TIME` as Unix seconds. `now` is the current Unix time (for ages like `1h`);
/// dates and times without a zone are read in `zone`.
pub fn parse_since(text: &str, now: i64, zone: Zone) -> Result<i64, ApiError> {
    let text = text.trim();
    let bad = |why: &str| {
        ApiError::invalid(
            "since",
            format!(
                "invalid --since '{}': {why}",
                pam_totp_proto::text::sanitize(text)
            ),
        )
    };
    if text.is_empty() {
        return Err(bad(SINCE_FORMS));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp());
    }
    if let Some(seconds) = text.strip_prefix('@') {
        return seconds
            .parse::<i64>()
            .map_err(|_| bad("@ must be followed by Unix seconds"));
    }
    let wall_clock = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|date| date.and_time(NaiveTime::MIN))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S"))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"));
    if let Ok(naive) = wall_clock {
        return zone
            .resolve(naive)
            .ok_or_else(|| bad("that local time does not exist (a clock change skips it)"));
    }
    let age = text.strip_suffix("ago").unwrap_or(text).trim_end();
    match humantime::parse_duration(age) {
        Ok(duration) => {
            let seconds = i64::try_from(duration.as_secs()).map_err(|_| bad("too long ago"))?;
            now.checked_sub(seconds).ok_or_else(|| bad("too long ago"))
        }
        Err(_) => Err(bad(SINCE_FORMS)),
    }
}

/// The current Unix time.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000; // 2026-11-18T...Z

    fn utc() -> Zone {
        Zone::Fixed(FixedOffset::east_opt(0).unwrap())
    }

    fn plus_two() -> Zone {
        Zone::Fixed(FixedOffset::east_opt(2 * 3600).unwrap())
    }

    fn since(text: &str, zone: Zone) -> Result<i64, ApiError> {
        parse_since(text, NOW, zone)
    }

    #[test]
    fn rfc3339_in_any_offset() {
        assert_eq!(since("2026-11-22T10:00:00Z", utc()).unwrap(), 1_795_341_600);
        assert_eq!(
            since("2026-11-22T12:00:00+02:00", utc()).unwrap(),
            1_795_341_600
        );
        // A zone in the text wins over the local zone.
        assert_eq!(
            since("2026-11-22T10:00:00Z", plus_two()).unwrap(),
            1_795_341_600
        );
        assert_eq!(
            since("2026-11-22T10:00:00.5Z", utc()).unwrap(),
            1_795_341_600
        );
    }

    #[test]
    fn dates_and_wall_clock_times_are_local() {
        assert_eq!(since("2026-11-22", utc()).unwrap(), 1_795_305_600);
        assert_eq!(
            since("2026-11-22", plus_two()).unwrap(),
            1_795_305_600 - 7200
        );
        assert_eq!(since("2026-11-22 10:00", utc()).unwrap(), 1_795_341_600);
        assert_eq!(since("2026-11-22 10:00:30", utc()).unwrap(), 1_795_341_630);
        assert_eq!(
            since("2026-11-22T10:00", plus_two()).unwrap(),
            1_795_341_600 - 7200
        );
    }

    #[test]
    fn ages_count_back_from_now() {
        assert_eq!(since("1h", utc()).unwrap(), NOW - 3600);
        assert_eq!(since("30m", utc()).unwrap(), NOW - 1800);
        assert_eq!(since("2d", utc()).unwrap(), NOW - 2 * 86_400);
        assert_eq!(since("1h 30m", utc()).unwrap(), NOW - 5400);
        assert_eq!(since("15min ago", utc()).unwrap(), NOW - 900);
        assert_eq!(since(" 10s ", utc()).unwrap(), NOW - 10);
    }

    #[test]
    fn unix_seconds() {
        assert_eq!(since("@1700000000", utc()).unwrap(), 1_700_000_000);
        assert_eq!(
            since("@x", utc()).unwrap_err().target.as_deref(),
            Some("since")
        );
    }

    #[test]
    fn nonsense_names_the_field() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-22T25:00:00Z",
            "10",
            "-1h",
            "1 fortnight",
            "\u{1b}[2J",
        ] {
            let error = since(bad, utc()).unwrap_err();
            assert_eq!(error.target.as_deref(), Some("since"), "{bad:?}");
            assert_eq!(error.code.exit_code(), 2);
            assert!(!error.message.contains('\u{1b}'), "{}", error.message);
        }
        let error = since("99999999999999999999s", utc()).unwrap_err();
        assert_eq!(error.target.as_deref(), Some("since"));
    }

    #[test]
    fn human_times_are_shown_in_the_zone() {
        assert_eq!(utc().human("2026-11-22T10:00:00Z"), "2026-11-22 10:00:00");
        assert_eq!(
            plus_two().human("2026-11-22T23:30:00Z"),
            "2026-11-23 01:30:00"
        );
        assert_eq!(utc().human("not a time"), "not a time");
    }

    #[test]
    fn local_zone_follows_tz() {
        // Whatever the zone, a round trip through the local zone lands on the same instant.
        let text = Zone::Local.human("2026-11-22T10:00:00Z");
        let back = since(&text, Zone::Local).unwrap();
        assert!((back - 1_795_341_600).abs() <= 3600, "{text} -> {back}");
    }
}
