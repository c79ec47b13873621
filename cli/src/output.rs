//! Rendering of replies and errors: compact JSON (`--json`) or terse human text.

use crate::args::sanitize;
use crate::commands::View;
use crate::qr;
use pam_totp_proto::{ApiError, CodesReply, EnrollReply, ProfileView, Reply, PROFILE_FIELDS};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use zeroize::Zeroizing;

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
    terminal: bool,
) -> Result<Zeroizing<String>, ApiError> {
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
            let fields = fields.as_deref().unwrap_or(PROFILE_FIELDS);
            let object = profile_object(&profile)?;
            if json {
                push_json(&mut out, &Picked::new(&object, fields))?;
            } else {
                out.push_str(&key_values(&object, fields));
            }
        }
        (View::List { fields }, Reply::Profiles(profiles)) => {
            let objects = profiles
                .iter()
                .map(profile_object)
                .collect::<Result<Vec<_>, _>>()?;
            if json {
                let fields = fields.as_deref().unwrap_or(PROFILE_FIELDS);
                let picked: Vec<Picked<'_>> =
                    objects.iter().map(|o| Picked::new(o, fields)).collect();
                push_json(&mut out, &picked)?;
            } else if objects.is_empty() {
                out.push_str("No profiles.\n");
            } else {
                out.push_str(&table(&objects, fields.as_deref().unwrap_or(LIST_COLUMNS)));
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

/// `key: value` lines with the values aligned.
pub fn key_values(object: &Map<String, Value>, fields: &[&str]) -> String {
    let width = fields.iter().map(|f| f.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for field in fields {
        let key = format!("{field}:");
        let value = human_value(object.get(*field));
        let _ = writeln!(out, "{}", format!("{key:<width$} {value}").trim_end());
    }
    out
}

/// A table with a header row; columns are left-aligned and separated by two spaces.
pub fn table(objects: &[Map<String, Value>], columns: &[&str]) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(columns.iter().map(|c| c.to_string()).collect())
        .chain(objects.iter().map(|object| {
            columns
                .iter()
                .map(|c| human_value(object.get(*c)))
                .collect()
        }))
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
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
            emergency_codes_remaining: 10,
            can: vec!["show".into(), "verify".into()],
        }
    }

    fn text(view: View, reply: Reply, json: bool) -> String {
        render(&view, reply, json, false).unwrap().to_string()
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
        assert_eq!(value.as_object().unwrap().len(), PROFILE_FIELDS.len());
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
             failed_attempts  locked_until          comment"
        );
        assert_eq!(
            lines[1],
            "al          1000     true      true     SHA1       6       30      \
             0                -                     phone"
        );
        assert_eq!(
            lines[2],
            "maximilian  1000001  true      true     SHA1       6       30      \
             5                2024-01-01T00:15:00Z  -"
        );
        let column = lines[0].find("comment").unwrap();
        assert_eq!(lines[1].find("phone"), Some(column));
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
        let plain = render(
            &View::Enroll { own: true },
            Reply::Enrolled(enrolled()),
            false,
            false,
        )
        .unwrap();
        assert!(plain.contains("Secret:    JBSWY3DPEHPK3PXP\n"));
        assert!(plain.contains("  12345678\n"));
        assert!(plain.contains("pam-totp verify CODE"));
        assert!(!plain.contains('\u{2588}'));
        let tty = render(
            &View::Enroll { own: false },
            Reply::Enrolled(enrolled()),
            false,
            true,
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
            false,
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
