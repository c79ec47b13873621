//! `log`: the audit trail, newest first.

use super::table::{table, Cell};
use super::{json_line, Human};
use crate::style::result_paint;
use pam_totp_proto::text::sanitize;
use pam_totp_proto::{ApiError, AuditEntry, LogPage};
use std::collections::HashMap;
use zeroize::Zeroizing;

/// Columns of `log`, in order.
pub const LOG_COLUMNS: &[&str] = &[
    "time", "host", "account", "op", "service", "rhost", "tty", "caller", "result",
];

pub fn render(
    page: &LogPage,
    json: bool,
    human: &Human<'_>,
) -> Result<Zeroizing<String>, ApiError> {
    let entries = &page.entries;
    if json {
        json_line(entries)
    } else if entries.is_empty() {
        Ok(Zeroizing::new("No entries.\n".to_owned()))
    } else {
        Ok(Zeroizing::new(log_table(entries, human)))
    }
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
                (optional(&entry.host), None),
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
