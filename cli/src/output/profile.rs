//! Profiles: `show` (key: value lines), `list` (a table), and the one-line results of the
//! commands that change one (`verify`, `disable`, `enable`, `unlock`, `set`, `remove`).

use super::table::{table, Cell};
use super::{json_line, Human};
use crate::style::{paint, Paint};
use pam_totp_proto::text::sanitize;
use pam_totp_proto::{profile_fields, ApiError, ProfileView};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use zeroize::Zeroizing;

/// Profile fields that hold times.
const TIME_FIELDS: &[&str] = &[
    "created_at",
    "changed_at",
    "verified_at",
    "last_used_at",
    "locked_until",
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

/// `show`: the profile's fields (`fields`, else all), in order.
pub fn show(
    profile: &ProfileView,
    fields: Option<&[&'static str]>,
    json: bool,
    human: &Human<'_>,
) -> Result<Zeroizing<String>, ApiError> {
    let object = profile_object(profile)?;
    let fields = fields.map_or_else(|| present_fields(&object), <[_]>::to_vec);
    if json {
        json_line(&Picked::new(&object, &fields))
    } else {
        Ok(Zeroizing::new(key_values(&object, &fields, human)))
    }
}

/// `list`: every profile, with `fields` (else all in JSON, [`LIST_COLUMNS`] in a table).
pub fn list(
    profiles: &[ProfileView],
    fields: Option<&[&'static str]>,
    json: bool,
    human: &Human<'_>,
) -> Result<Zeroizing<String>, ApiError> {
    let objects = profiles
        .iter()
        .map(profile_object)
        .collect::<Result<Vec<_>, _>>()?;
    if json {
        let fields: Vec<Vec<&'static str>> = objects
            .iter()
            .map(|o| fields.map_or_else(|| present_fields(o), <[_]>::to_vec))
            .collect();
        let picked: Vec<Picked<'_>> = objects
            .iter()
            .zip(&fields)
            .map(|(o, fields)| Picked::new(o, fields))
            .collect();
        return json_line(&picked);
    }
    if objects.is_empty() {
        return Ok(Zeroizing::new("No profiles.\n".to_owned()));
    }
    let columns = fields.unwrap_or(LIST_COLUMNS);
    let rows: Vec<Vec<Cell>> = objects
        .iter()
        .map(|object| {
            columns
                .iter()
                .map(|field| profile_cell(object, field, human))
                .collect()
        })
        .collect();
    Ok(Zeroizing::new(table(columns, &rows, human.colour)))
}

/// A command that changed a profile: the profile in JSON, else `line(account, profile)`
/// (the account already made safe to print).
pub fn changed(
    profile: &ProfileView,
    json: bool,
    line: impl FnOnce(&str, &ProfileView) -> String,
) -> Result<Zeroizing<String>, ApiError> {
    if json {
        return json_line(profile);
    }
    let account = sanitize(&profile.account);
    Ok(Zeroizing::new(format!("{}\n", line(&account, profile))))
}

/// `remove`.
pub fn removed(account: &str, json: bool) -> Result<Zeroizing<String>, ApiError> {
    if json {
        json_line(&serde_json::json!({ "removed": account }))
    } else {
        Ok(Zeroizing::new(format!(
            "Profile for {} removed.\n",
            sanitize(account)
        )))
    }
}

/// Every field the profile has, in order: all but `counter` for a TOTP profile. (Fields named
/// with `--fields` are shown either way, null when the profile has none.)
fn present_fields(object: &Map<String, Value>) -> Vec<&'static str> {
    profile_fields()
        .iter()
        .copied()
        .filter(|field| object.contains_key(*field))
        .collect()
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
