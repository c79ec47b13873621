//! `status`: the agent's version, uptime and paths; counts for administrators.

use super::json_line;
use pam_totp_proto::text::sanitize;
use pam_totp_proto::{ApiError, MetricsReply, StatusReply};
use std::fmt::Write as _;
use zeroize::Zeroizing;

pub fn render(status: &StatusReply, json: bool) -> Result<Zeroizing<String>, ApiError> {
    if json {
        json_line(status)
    } else {
        Ok(Zeroizing::new(status_text(status)))
    }
}

/// `metrics`: the exposition text as the agent wrote it (for node_exporter's textfile
/// collector), or `{"text": ...}` with `--json`.
pub fn metrics(metrics: &MetricsReply, json: bool) -> Result<Zeroizing<String>, ApiError> {
    if json {
        json_line(metrics)
    } else {
        Ok(Zeroizing::new(metrics.text.clone()))
    }
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
    if !status.store.is_empty() {
        lines.push(("store", sanitize(&status.store)));
    }
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
