//! Rendering of replies and errors: compact JSON (`--json`) or terse human text. JSON carries
//! the agent's values unchanged (times in RFC 3339 UTC); human text shows times in local time,
//! aligns tables, and is coloured only when [`Human::colour`] allows it.

use crate::commands::View;
use crate::qr;
use crate::style::{paint, result_paint, Paint};
use crate::timefmt::Zone;
use pam_totp_proto::text::sanitize;
use pam_totp_proto::{
    profile_fields, ApiError, AuditEntry, CodesReply, EnrollReply, LogPage, ProfileView, Reply,
    StatusReply,
};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use zeroize::Zeroizing;

/// How human output looks on this run.
pub struct Human<'a> {
    /// stdout is a terminal (enroll draws its QR code only there).
    pub terminal: bool,
    /// Colour allowed (see [`crate::style::colour_allowed`]).
    pub colour: bool,
    /// The zone times are shown in.
    pub zone: Zone,
    /// The account name of a uid, when NSS knows it.
    pub user_name: &'a dyn Fn(u32) -> Option<String>,
}

/// Profile fields that hold times.
const TIME_FIELDS: &[&str] = &[
    "created_at",
    "changed_at",
    "verified_at",
    "last_used_at",
    "locked_until",
];

/// Columns of `log`, in order.
pub const LOG_COLUMNS: &[&str] = &[
    "time", "account", "op", "service", "rhost", "tty", "caller", "result",
];

/// Columns of `list` without `--fields`.
pub const LIST_COLUMNS: &[&str] = &[
    "account",
    "uid",
    "verified",
    "enabled",
    "algorithm",
    "digits",
    "period",
    "failed_attempts",
    "locked_until",
    "comment",
];

/// The whole stdout text for a reply (ends with a newline). Zeroized after use because
/// enroll and codes output carries secrets.
pub fn render(
    view: &View,
    reply: Reply,
    json: bool,
    human: &Human<'_>,
) -> Result<Zeroizing<String>, ApiError> {
    let terminal = human.terminal;
    let mut out = Zeroizing::new(String::new());
    match (view, reply) {
        (View::Enroll { own }, Reply::Enrolled(enrolled)) => {
            if json {
                push_json(&mut out, &enrolled)?;
            } else {
                enroll_text(&mut out, &enrolled, *own, terminal);
            }
        }
        (View::Codes, Reply::Codes(codes)) => {
            if json {
                push_json(&mut out, &codes)?;
            } else {
                codes_text(&mut out, &codes);
            }
        }
        (View::Show { fields }, Reply::Profile(profile)) => {
            let fields = fields.as_deref().unwrap_or(profile_fields());
            let object = profile_object(&profile)?;
            if json {
                push_json(&mut out, &Picked::new(&object, fields))?;
            } else {
                out.push_str(&key_values(&object, fields, human));
            }
        }
        (View::List { fields }, Reply::Profiles(profiles)) => {
            let objects = profiles
                .iter()
                .map(profile_object)
                .collect::<Result<Vec<_>, _>>()?;
            if json {
                let fields = fields.as_deref().unwrap_or(profile_fields());
                let picked: Vec<Picked<'_>> =
                    objects.iter().map(|o| Picked::new(o, fields)).collect();
                push_json(&mut out, &picked)?;
            } else if objects.is_empty() {
                out.push_str("No profiles.\n");
            } else {
                let columns = fields.as_deref().unwrap_or(LIST_COLUMNS);
                let rows: Vec<Vec<Cell>> = objects
                    .iter()
                    .map(|object| {
                        columns
                            .iter()
                            .map(|field| profile_cell(object, field, human))
                            .collect()
                    })
                    .collect();
                out.push_str(&table(columns, &rows, human.colour));
            }
        }
        (View::Log, Reply::Log(LogPage { entries, .. })) => {
            if json {
                push_json(&mut out, &entries)?;
            } else if entries.is_empty() {
                out.push_str("No entries.\n");
            } else {
                out.push_str(&log_table(&entries, human));
            }
        }
        (View::Status, Reply::Status(status)) => {
            if json {
                push_json(&mut out, &status)?;
            } else {
                out.push_str(&status_text(&status));
            }
        }
        (View::Remove, Reply::Removed { account }) => {
            if json {
                push_json(&mut out, &serde_json::json!({ "removed": account }))?;
            } else {
                let _ = writeln!(out, "Profile for {} removed.", sanitize(&account));
            }
        }
        (view, Reply::Profile(profile))
            if matches!(
                view,
                View::Verify | View::Disable | View::Enable | View::Unlock | View::Set
            ) =>
        {
            if json {
                push_json(&mut out, &profile)?;
            } else {
                let account = sanitize(&profile.account);
                let _ = writeln!(out, "{}", status_line(view, &account, &profile));
            }
        }
        (_, other) => {
            return Err(ApiError::internal(format!(
                "the agent sent an unexpected reply ({})",
                other.kind()
            )))
        }
    }
    Ok(out)
}

fn status_line(view: &View, account: &str, profile: &ProfileView) -> String {
    match view {
        View::Verify if profile.enabled => {
            format!("Code accepted; profile for {account} is active.")
        }
        View::Verify => format!("Code accepted; profile for {account} is verified but disabled."),
        View::Disable => format!("Profile for {account} disabled."),
        View::Enable => format!("Profile for {account} enabled."),
        View::Unlock => format!("Profile for {account} unlocked."),
        _ => format!("Comment for {account} updated."),
    }
}

fn push_json(out: &mut String, value: &impl Serialize) -> Result<(), ApiError> {
    let text = Zeroizing::new(
        serde_json::to_string(value)
            .map_err(|e| ApiError::internal(format!("cannot encode the output: {e}")))?,
    );
    out.push_str(&text);
    out.push('\n');
    Ok(())
}

fn profile_object(profile: &ProfileView) -> Result<Map<String, Value>, ApiError> {
    match serde_json::to_value(profile) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::internal("a profile did not encode as an object")),
        Err(e) => Err(ApiError::internal(format!("cannot encode a profile: {e}"))),
    }
}

/// Selected keys of a profile object, serialized in the requested order.
struct Picked<'a> {
    object: &'a Map<String, Value>,
    fields: &'a [&'static str],
}

impl<'a> Picked<'a> {
    fn new(object: &'a Map<String, Value>, fields: &'a [&'static str]) -> Self {
        Self { object, fields }
    }
}

impl Serialize for Picked<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for field in self.fields {
            map.serialize_entry(field, self.object.get(*field).unwrap_or(&Value::Null))?;
        }
        map.end()
    }
}

/// A field value for people: null as "-", arrays comma-joined, strings unquoted and with
/// control characters escaped.
pub fn human_value(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => sanitize(s),
        Some(Value::Array(items)) if items.is_empty() => "-".to_owned(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| human_value(Some(item)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => sanitize(&other.to_string()),
    }
}

/// One table cell: its text (already safe to print) and its colour.
pub type Cell = (String, Option<Paint>);

/// A profile field for people: times in the zone, states coloured.
fn profile_cell(object: &Map<String, Value>, field: &str, human: &Human<'_>) -> Cell {
    let value = object.get(field);
    let text = match value {
        Some(Value::String(time)) if TIME_FIELDS.contains(&field) => {
            human.zone.human(&sanitize(time))
        }
        Some(Value::Array(sources)) if field == "blocked_sources" && !sources.is_empty() => {
            blocked_sources_text(sources, human)
        }
        _ => human_value(value),
    };
    let colour = match (field, value) {
        ("blocked_sources", Some(Value::Array(sources))) if !sources.is_empty() => Some(Paint::Red),
        ("verified", Some(Value::Bool(true))) | ("enabled", Some(Value::Bool(true))) => {
            Some(Paint::Green)
        }
        ("verified", Some(Value::Bool(false))) => Some(Paint::Yellow),
        ("enabled", Some(Value::Bool(false))) => Some(Paint::Red),
        ("locked_until", Some(Value::String(_))) => Some(Paint::Red),
        _ => None,
    };
    (text, colour)
}

/// "SOURCE until TIME (N failures)" for each blocked source, comma-separated.
fn blocked_sources_text(sources: &[Value], human: &Human<'_>) -> String {
    sources
        .iter()
        .map(|source| {
            let text = |key: &str| source.get(key).and_then(Value::as_str).unwrap_or("-");
            let failures = source
                .get("failed_attempts")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            format!(
                "{} until {} ({failures} failures)",
                sanitize(text("source")),
                human.zone.human(&sanitize(text("blocked_until")))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `key: value` lines with the values aligned.
pub fn key_values(object: &Map<String, Value>, fields: &[&str], human: &Human<'_>) -> String {
    let width = fields.iter().map(|f| f.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for field in fields {
        let key = format!("{field}:");
        let (value, colour) = profile_cell(object, field, human);
        let line = format!("{key:<width$} {}", paint(&value, colour, human.colour));
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// A table with a header row; columns are left-aligned and separated by two spaces. Widths
/// count characters before colour is added, so coloured cells stay aligned.
pub fn table(columns: &[&str], rows: &[Vec<Cell>], colour: bool) -> String {
    let header: Vec<Cell> = columns.iter().map(|c| (c.to_string(), None)).collect();
    let all: Vec<&Vec<Cell>> = std::iter::once(&header).chain(rows.iter()).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            all.iter()
                .map(|row| row.get(i).map_or(0, |cell| cell.0.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in all {
        let mut line = String::new();
        for (i, (text, colour_of)) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(&paint(text, *colour_of, colour));
            let pad = widths[i].saturating_sub(text.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The audit trail as a table: local times, caller uids as names when known.
fn log_table(entries: &[AuditEntry], human: &Human<'_>) -> String {
    let mut names: HashMap<u32, String> = HashMap::new();
    let optional = |value: &Option<String>| match value.as_deref() {
        None | Some("") => "-".to_owned(),
        Some(text) => sanitize(text),
    };
    let rows: Vec<Vec<Cell>> = entries
        .iter()
        .map(|entry| {
            let caller = names
                .entry(entry.caller_uid)
                .or_insert_with(|| {
                    (human.user_name)(entry.caller_uid)
                        .map(|name| sanitize(&name))
                        .unwrap_or_else(|| entry.caller_uid.to_string())
                })
                .clone();
            vec![
                (human.zone.human(&sanitize(&entry.time)), None),
                (sanitize(&entry.account), None),
                (sanitize(&entry.op), None),
                (optional(&entry.service), None),
                (optional(&entry.rhost), None),
                (optional(&entry.tty), None),
                (caller, None),
                (entry.result.to_string(), result_paint(entry.result)),
            ]
        })
        .collect();
    table(LOG_COLUMNS, &rows, human.colour)
}

/// `status` for people; the counts only when the agent sent them (administrators).
fn status_text(status: &StatusReply) -> String {
    let uptime = humantime::format_duration(std::time::Duration::from_secs(status.uptime_seconds));
    let mut lines: Vec<(&str, String)> = vec![
        ("version", sanitize(&status.version)),
        ("uptime", uptime.to_string()),
        ("socket", sanitize(&status.socket)),
        ("database", sanitize(&status.database)),
    ];
    if let Some(profiles) = &status.profiles {
        lines.push((
            "profiles",
            format!(
                "{} pending, {} active, {} disabled, {} locked",
                profiles.pending, profiles.active, profiles.disabled, profiles.locked
            ),
        ));
        if profiles.clock_ahead > 0 {
            lines.push((
                "clock",
                format!(
                    "{} profile(s) last used a code ahead of this clock (was it set back?): \
                     their codes are refused until then; 'pam-totp unlock USER' clears it",
                    profiles.clock_ahead
                ),
            ));
        }
    }
    if let Some(recent) = &status.last_hour {
        lines.push((
            "last hour",
            format!(
                "{} login{}, {} failure{}",
                recent.logins,
                if recent.logins == 1 { "" } else { "s" },
                recent.failures,
                if recent.failures == 1 { "" } else { "s" }
            ),
        ));
    }
    let width = lines
        .iter()
        .map(|(key, _)| key.len() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in lines {
        let key = format!("{key}:");
        let _ = writeln!(out, "{key:<width$} {value}");
    }
    out
}

fn enroll_text(out: &mut String, enrolled: &EnrollReply, own: bool, terminal: bool) {
    let profile = &enrolled.profile;
    let account = sanitize(&profile.account);
    let _ = writeln!(out, "Secret:    {}", enrolled.secret.expose());
    let _ = writeln!(out, "URI:       {}", enrolled.otpauth_uri.expose());
    let _ = writeln!(
        out,
        "Settings:  {}, {} digits, {} s period",
        profile.algorithm, profile.digits, profile.period
    );
    if terminal {
        if let Some(image) = qr::render(enrolled.otpauth_uri.expose()) {
            out.push('\n');
            out.push_str(&image);
            out.push('\n');
        }
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "Emergency codes (each works once; store them safely, they are not shown again):"
    );
    for code in &enrolled.emergency_codes {
        let _ = writeln!(out, "  {}", code.expose());
    }
    out.push('\n');
    let verify = if own {
        "pam-totp verify CODE".to_owned()
    } else {
        format!("pam-totp verify {account} CODE")
    };
    let _ = writeln!(
        out,
        "The profile for {account} is pending: confirm it with a code from the app: {verify}"
    );
}

fn codes_text(out: &mut String, codes: &CodesReply) {
    let account = sanitize(&codes.profile.account);
    let _ = writeln!(
        out,
        "New emergency codes for {account} (each works once; the previous ones no longer work; \
         store them safely, they are not shown again):"
    );
    for code in &codes.emergency_codes {
        let _ = writeln!(out, "  {}", code.expose());
    }
}

#[derive(serde::Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    target: Option<&'a str>,
}

/// The message of an error as one harmless line.
pub fn error_message(error: &ApiError) -> String {
    let message = sanitize(error.message.trim());
    if message.is_empty() {
        error.code.as_str().to_owned()
    } else {
        message
    }
}

/// The contract's error object `{"code","message","target"}` as a JSON value.
pub fn error_object(error: &ApiError) -> Value {
    serde_json::json!({
        "code": error.code.as_str(),
        "message": error_message(error),
        "target": error.target,
    })
}

/// `{"error":{"code":..,"message":..,"target":..}}` and a newline.
pub fn error_json(error: &ApiError) -> String {
    let message = error_message(error);
    let envelope = ErrorEnvelope {
        error: ErrorBody {
            code: error.code.as_str(),
            message: &message,
            target: error.target.as_deref(),
        },
    };
    match serde_json::to_string(&envelope) {
        Ok(text) => text + "\n",
        Err(_) => format!(
            "{{\"error\":{{\"code\":\"{}\",\"message\":\"\",\"target\":null}}}}\n",
            error.code.as_str()
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use pam_totp_proto::{Algorithm, ErrorCode, SecretString};

    pub fn sample(account: &str) -> ProfileView {
        ProfileView {
            id: 7,
            account: account.into(),
            uid: 1000,
            kind: "totp".into(),
            owner: "host1".into(),
            scope: "host".into(),
            verified: true,
            enabled: true,
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            sha_fingerprint: "ab".repeat(32),
            comment: Some("phone".into()),
            created_at: "2024-01-01T00:00:00Z".into(),
            changed_at: "2024-01-01T00:00:00Z".into(),
            verified_at: Some("2024-01-01T00:01:00Z".into()),
            last_used_at: None,
            failed_attempts: 0,
            locked_until: None,
            blocked_sources: vec![],
            emergency_codes_remaining: 10,
            can: vec!["show".into(), "verify".into()],
        }
    }

    fn no_names(_: u32) -> Option<String> {
        None
    }

    /// Human output as off a terminal, in UTC.
    fn plain() -> Human<'static> {
        Human {
            terminal: false,
            colour: false,
            zone: Zone::Fixed(chrono::FixedOffset::east_opt(0).unwrap()),
            user_name: &no_names,
        }
    }

    fn text(view: View, reply: Reply, json: bool) -> String {
        render(&view, reply, json, &plain()).unwrap().to_string()
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn show_json_is_the_whole_profile_in_contract_order() {
        let out = text(
            View::Show { fields: None },
            Reply::Profile(sample("alice")),
            true,
        );
        assert!(out.ends_with('\n') && out.lines().count() == 1);
        assert!(out.starts_with(
            "{\"id\":7,\"account\":\"alice\",\"uid\":1000,\"type\":\"totp\",\"owner\":\"host1\","
        ));
        assert!(out.ends_with(",\"emergency_codes_remaining\":10,\"can\":[\"show\",\"verify\"]}\n"));
        let value = parse(&out);
        assert_eq!(value["account"], "alice");
        assert_eq!(value["type"], "totp");
        assert_eq!(value["last_used_at"], Value::Null);
        assert_eq!(value.as_object().unwrap().len(), profile_fields().len());
    }

    #[test]
    fn fields_filter_and_order_json() {
        let out = text(
            View::Show {
                fields: Some(vec!["uid", "account", "can"]),
            },
            Reply::Profile(sample("alice")),
            true,
        );
        assert_eq!(
            out,
            "{\"uid\":1000,\"account\":\"alice\",\"can\":[\"show\",\"verify\"]}\n"
        );
        let out = text(
            View::List {
                fields: Some(vec!["account", "locked_until"]),
            },
            Reply::Profiles(vec![sample("alice"), sample("bob")]),
            true,
        );
        assert_eq!(
            out,
            "[{\"account\":\"alice\",\"locked_until\":null},\
             {\"account\":\"bob\",\"locked_until\":null}]\n"
        );
    }

    #[test]
    fn show_text_is_aligned() {
        let out = text(
            View::Show {
                fields: Some(vec![
                    "account",
                    "last_used_at",
                    "can",
                    "emergency_codes_remaining",
                ]),
            },
            Reply::Profile(sample("alice")),
            false,
        );
        assert_eq!(
            out,
            "account:                   alice\n\
             last_used_at:              -\n\
             can:                       show,verify\n\
             emergency_codes_remaining: 10\n"
        );
    }

    #[test]
    fn list_table_is_aligned() {
        let mut long = sample("maximilian");
        long.uid = 1_000_001;
        long.comment = None;
        long.locked_until = Some("2024-01-01T00:15:00Z".into());
        long.failed_attempts = 5;
        let out = text(
            View::List { fields: None },
            Reply::Profiles(vec![sample("al"), long]),
            false,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            "account     uid      verified  enabled  algorithm  digits  period  \
             failed_attempts  locked_until         comment"
        );
        assert_eq!(
            lines[1],
            "al          1000     true      true     SHA1       6       30      \
             0                -                    phone"
        );
        assert_eq!(
            lines[2],
            "maximilian  1000001  true      true     SHA1       6       30      \
             5                2024-01-01 00:15:00  -"
        );
        let column = lines[0].find("comment").unwrap();
        assert_eq!(lines[1].find("phone"), Some(column));
    }

    #[test]
    fn human_times_are_local_json_times_are_utc() {
        let mut profile = sample("alice");
        profile.last_used_at = Some("2024-01-01T23:30:00Z".into());
        let view = View::Show {
            fields: Some(vec!["created_at", "last_used_at", "verified_at"]),
        };
        let plus_two = Human {
            zone: Zone::Fixed(chrono::FixedOffset::east_opt(7200).unwrap()),
            ..plain()
        };
        let out = render(&view, Reply::Profile(profile.clone()), false, &plus_two).unwrap();
        assert_eq!(
            out.as_str(),
            "created_at:   2024-01-01 02:00:00\n\
             last_used_at: 2024-01-02 01:30:00\n\
             verified_at:  2024-01-01 02:01:00\n"
        );
        let out = render(&view, Reply::Profile(profile), true, &plus_two).unwrap();
        assert_eq!(
            out.as_str(),
            "{\"created_at\":\"2024-01-01T00:00:00Z\",\"last_used_at\":\"2024-01-01T23:30:00Z\",\
             \"verified_at\":\"2024-01-01T00:01:00Z\"}\n"
        );
    }

    #[test]
    fn colour_keeps_tables_aligned() {
        let mut disabled = sample("bob");
        disabled.enabled = false;
        disabled.verified = false;
        let coloured = Human {
            colour: true,
            ..plain()
        };
        let view = View::List {
            fields: Some(vec!["account", "verified", "enabled", "uid"]),
        };
        let reply = || Reply::Profiles(vec![sample("alice"), disabled.clone()]);
        let out = render(&view, reply(), false, &coloured).unwrap();
        assert!(out.contains("\u{1b}[32mtrue\u{1b}[0m"), "{out:?}");
        assert!(out.contains("\u{1b}[31mfalse\u{1b}[0m"), "{out:?}");
        let stripped = out
            .replace("\u{1b}[32m", "")
            .replace("\u{1b}[33m", "")
            .replace("\u{1b}[31m", "")
            .replace("\u{1b}[0m", "");
        assert_eq!(stripped, text(view.clone(), reply(), false));
        // No colour off a terminal, and never in JSON.
        assert!(!text(view.clone(), reply(), false).contains('\u{1b}'));
        let json = render(&view, reply(), true, &coloured).unwrap();
        assert!(!json.contains('\u{1b}'));
    }

    fn entry(time: &str, result: &str, caller_uid: u32) -> AuditEntry {
        AuditEntry {
            time: time.into(),
            account: "alice".into(),
            op: "authenticate".into(),
            result: pam_totp_proto::AuditResult::parse(result),
            service: Some("sshd".into()),
            rhost: Some("192.0.2.7".into()),
            tty: None,
            caller_uid,
        }
    }

    #[test]
    fn log_table_and_json() {
        let entries = vec![
            entry("2026-11-22T10:00:05Z", "wrong_code", 0),
            entry("2026-11-22T09:59:00Z", "success", 1001),
        ];
        fn names(uid: u32) -> Option<String> {
            (uid == 0).then(|| "root".to_owned())
        }
        let human = Human {
            user_name: &names,
            ..plain()
        };
        let out = render(
            &View::Log,
            Reply::Log(LogPage {
                entries: entries.clone(),
                next: None,
            }),
            false,
            &human,
        )
        .unwrap();
        assert_eq!(
            out.as_str(),
            "time                 account  op            service  rhost      tty  caller  result\n\
             2026-11-22 10:00:05  alice    authenticate  sshd     192.0.2.7  -    root    wrong_code\n\
             2026-11-22 09:59:00  alice    authenticate  sshd     192.0.2.7  -    1001    success\n"
        );
        let coloured = Human {
            colour: true,
            ..human
        };
        let out = render(
            &View::Log,
            Reply::Log(LogPage {
                entries: entries.clone(),
                next: None,
            }),
            false,
            &coloured,
        )
        .unwrap();
        assert!(out.contains("\u{1b}[31mwrong_code\u{1b}[0m"));
        assert!(out.contains("\u{1b}[32msuccess\u{1b}[0m"));
        let out = text(
            View::Log,
            Reply::Log(LogPage {
                entries,
                next: None,
            }),
            true,
        );
        let value = parse(&out);
        assert_eq!(value[0]["time"], "2026-11-22T10:00:05Z");
        assert_eq!(value[0]["caller_uid"], 0);
        assert_eq!(value[0]["tty"], Value::Null);
        let mut keys: Vec<&String> = value[0].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "account",
                "caller_uid",
                "op",
                "result",
                "rhost",
                "service",
                "time",
                "tty"
            ]
        );
        assert_eq!(
            text(View::Log, Reply::Log(LogPage::default()), false),
            "No entries.\n"
        );
        assert_eq!(
            text(View::Log, Reply::Log(LogPage::default()), true),
            "[]\n"
        );
    }

    #[test]
    fn log_never_prints_control_characters() {
        let mut evil = entry("2026-11-22T10:00:05Z", "success", 0);
        evil.rhost = Some("\u{1b}[2Jhost\n".into());
        let page = LogPage {
            entries: vec![evil],
            next: None,
        };
        let out = text(View::Log, Reply::Log(page), false);
        assert!(!out.contains('\u{1b}'));
        assert_eq!(out.lines().count(), 2);
    }

    #[test]
    fn status_text_and_json() {
        let mut status = StatusReply {
            version: "0.1.0".into(),
            uptime_seconds: 3725,
            socket: "/run/pam-totp/agent.sock".into(),
            database: "/var/lib/pam-totp/profiles.sqlite3".into(),
            profiles: Some(pam_totp_proto::ProfileCounts {
                pending: 1,
                active: 3,
                disabled: 0,
                locked: 2,
                clock_ahead: 0,
            }),
            last_hour: Some(pam_totp_proto::RecentAttempts {
                logins: 1,
                failures: 4,
            }),
        };
        assert_eq!(
            text(View::Status, Reply::Status(status.clone()), false),
            "version:   0.1.0\n\
             uptime:    1h 2m 5s\n\
             socket:    /run/pam-totp/agent.sock\n\
             database:  /var/lib/pam-totp/profiles.sqlite3\n\
             profiles:  1 pending, 3 active, 0 disabled, 2 locked\n\
             last hour: 1 login, 4 failures\n"
        );
        let value = parse(&text(View::Status, Reply::Status(status.clone()), true));
        assert_eq!(value["profiles"]["locked"], 2);
        assert_eq!(value["last_hour"]["failures"], 4);
        assert_eq!(value["uptime_seconds"], 3725);
        status.profiles = None;
        status.last_hour = None;
        let out = text(View::Status, Reply::Status(status.clone()), false);
        assert!(
            !out.contains("profiles:") && !out.contains("last hour"),
            "{out}"
        );
        let value = parse(&text(View::Status, Reply::Status(status), true));
        assert_eq!(value["profiles"], Value::Null);
    }

    #[test]
    fn list_text_with_fields_and_empty() {
        let out = text(
            View::List {
                fields: Some(vec!["uid", "account"]),
            },
            Reply::Profiles(vec![sample("alice")]),
            false,
        );
        assert_eq!(out, "uid   account\n1000  alice\n");
        let out = text(View::List { fields: None }, Reply::Profiles(vec![]), false);
        assert_eq!(out, "No profiles.\n");
        let out = text(View::List { fields: None }, Reply::Profiles(vec![]), true);
        assert_eq!(out, "[]\n");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let mut evil = sample("alice");
        evil.comment = Some("\u{1b}[2Jgotcha\n".into());
        let out = text(
            View::List { fields: None },
            Reply::Profiles(vec![evil]),
            false,
        );
        assert!(!out.contains('\u{1b}'));
        assert_eq!(out.lines().count(), 2);
    }

    fn enrolled() -> EnrollReply {
        EnrollReply {
            secret: SecretString::from("JBSWY3DPEHPK3PXP"),
            otpauth_uri: SecretString::from(
                "otpauth://totp/host1:alice?secret=JBSWY3DPEHPK3PXP&issuer=host1",
            ),
            emergency_codes: vec![
                SecretString::from("12345678"),
                SecretString::from("87654321"),
            ],
            profile: sample("alice"),
        }
    }

    #[test]
    fn enroll_json_shape() {
        let out = text(
            View::Enroll { own: true },
            Reply::Enrolled(enrolled()),
            true,
        );
        assert!(out.starts_with(
            "{\"secret\":\"JBSWY3DPEHPK3PXP\",\"otpauth_uri\":\"otpauth://totp/host1:alice?"
        ));
        let value = parse(&out);
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4);
        assert_eq!(value["emergency_codes"][1], "87654321");
        assert_eq!(value["profile"]["account"], "alice");
    }

    #[test]
    fn enroll_text_shows_the_qr_only_on_a_terminal() {
        let off = render(
            &View::Enroll { own: true },
            Reply::Enrolled(enrolled()),
            false,
            &plain(),
        )
        .unwrap();
        assert!(off.contains("Secret:    JBSWY3DPEHPK3PXP\n"));
        assert!(off.contains("  12345678\n"));
        assert!(off.contains("pam-totp verify CODE"));
        assert!(!off.contains('\u{2588}'));
        let tty = render(
            &View::Enroll { own: false },
            Reply::Enrolled(enrolled()),
            false,
            &Human {
                terminal: true,
                ..plain()
            },
        )
        .unwrap();
        assert!(tty.contains('\u{2588}'));
        assert!(tty.contains("pam-totp verify alice CODE"));
    }

    #[test]
    fn simple_replies() {
        let out = text(View::Verify, Reply::Profile(sample("alice")), false);
        assert_eq!(out, "Code accepted; profile for alice is active.\n");
        let out = text(
            View::Remove,
            Reply::Removed {
                account: "alice".into(),
            },
            true,
        );
        assert_eq!(out, "{\"removed\":\"alice\"}\n");
        let out = text(
            View::Remove,
            Reply::Removed {
                account: "alice".into(),
            },
            false,
        );
        assert_eq!(out, "Profile for alice removed.\n");
        let out = text(View::Disable, Reply::Profile(sample("bob")), false);
        assert_eq!(out, "Profile for bob disabled.\n");
        let out = text(View::Unlock, Reply::Profile(sample("bob")), true);
        assert_eq!(parse(&out)["account"], "bob");
        let codes = CodesReply {
            emergency_codes: vec![SecretString::from("11112222")],
            profile: sample("bob"),
        };
        let out = text(View::Codes, Reply::Codes(codes.clone()), true);
        let value = parse(&out);
        assert_eq!(value["emergency_codes"], serde_json::json!(["11112222"]));
        assert_eq!(value["profile"]["account"], "bob");
        assert!(out.starts_with("{\"emergency_codes\":"));
        let out = text(View::Codes, Reply::Codes(codes), false);
        assert!(out.contains("  11112222\n"));
    }

    #[test]
    fn a_mismatched_reply_is_internal() {
        let error = render(
            &View::Show { fields: None },
            Reply::Removed {
                account: "x".into(),
            },
            true,
            &plain(),
        )
        .err()
        .unwrap();
        assert_eq!(error.code, ErrorCode::Internal);
    }

    #[test]
    fn error_json_shape() {
        let error = ApiError::not_found("no profile for alice");
        assert_eq!(
            error_json(&error),
            "{\"error\":{\"code\":\"not_found\",\"message\":\"no profile for alice\",\"target\":null}}\n"
        );
        let error = ApiError::rate_limited(30);
        let value = parse(&error_json(&error));
        let inner = value["error"].as_object().unwrap();
        assert_eq!(inner.len(), 3);
        assert_eq!(inner["code"], "rate_limited");
        let error = ApiError::invalid("digits", "digits must be 6 to 8\nreally");
        let value = parse(&error_json(&error));
        assert_eq!(value["error"]["target"], "digits");
        assert!(!error_message(&error).contains('\n'));
    }
}
