//! What an import did, line by line or profile by profile: the report, as JSON or human text,
//! and the error that decides the exit status.

use super::Moving;
use crate::output::error_object;
use pam_totp_proto::text::sanitize;
use pam_totp_proto::ApiError;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Which tool a file comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    GoogleAuthenticator,
    Oath,
}

/// What became of one line or profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Imported (or, with `--dry-run`, importable).
    Imported,
    /// Not sent: the CLI found it cannot be imported.
    Skipped(ApiError),
    /// Sent, and refused by the agent.
    Failed(ApiError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Line number in the file (usersfiles; `None` for a google-authenticator file).
    pub line: Option<usize>,
    pub account: Option<String>,
    pub verdict: Verdict,
}

/// The outcome of one import run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub source: Source,
    pub file: PathBuf,
    pub dry_run: bool,
    pub entries: Vec<Entry>,
    /// Settings of a google-authenticator profile, for the one-line human result.
    pub settings: Option<Settings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub moving: Moving,
    pub emergency_codes: usize,
}

impl Report {
    /// (imported, skipped, failed).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for entry in &self.entries {
            match entry.verdict {
                Verdict::Imported => counts.0 += 1,
                Verdict::Skipped(_) => counts.1 += 1,
                Verdict::Failed(_) => counts.2 += 1,
            }
        }
        counts
    }

    /// Why the run did not fully succeed, as the error that decides the exit status: the
    /// first profile the agent refused; or, when no line at all could be imported, the first
    /// skipped line. Lines skipped beside imported ones do not fail the run.
    pub fn exit_error(&self) -> Option<ApiError> {
        let (imported, skipped, failed) = self.counts();
        let first = |failed: bool| {
            self.entries.iter().find_map(|entry| match &entry.verdict {
                Verdict::Failed(error) if failed => Some((entry, error)),
                Verdict::Skipped(error) if !failed => Some((entry, error)),
                _ => None,
            })
        };
        let (entry, error, summary) = if failed > 0 {
            let (entry, error) = first(true)?;
            let summary = format!(
                "the agent refused {failed} of {} profile{}",
                imported + failed,
                plural(imported + failed)
            );
            (entry, error, summary)
        } else if imported == 0 && skipped > 0 {
            let (entry, error) = first(false)?;
            (entry, error, "no line could be imported".to_owned())
        } else {
            return None;
        };
        if self.source == Source::GoogleAuthenticator {
            return Some(error.clone());
        }
        let mut message = format!("{summary}; first: {}: {}", where_of(entry), error.message);
        if skipped > 0 && failed > 0 {
            message.push_str(&format!(" ({skipped} line{} skipped)", plural(skipped)));
        }
        Some(ApiError {
            message,
            ..error.clone()
        })
    }

    /// `{"source","file","dry_run","imported":[accounts],"skipped":[..],"failed":[..]}`, with
    /// `error` (the contract's error object) when the run did not fully succeed.
    pub fn to_json(&self) -> String {
        let mut json = ReportJson {
            source: match self.source {
                Source::GoogleAuthenticator => "google-authenticator",
                Source::Oath => "oath",
            },
            file: self.file.display().to_string(),
            dry_run: self.dry_run,
            imported: Vec::new(),
            skipped: Vec::new(),
            failed: Vec::new(),
            error: self.exit_error().map(|error| error_object(&error)),
        };
        for entry in &self.entries {
            let detail = |error: &ApiError| DetailJson {
                line: entry.line,
                account: entry.account.as_deref(),
                error: error_object(error),
            };
            match &entry.verdict {
                Verdict::Imported => json.imported.extend(entry.account.as_deref()),
                Verdict::Skipped(error) => json.skipped.push(detail(error)),
                Verdict::Failed(error) => json.failed.push(detail(error)),
            }
        }
        serde_json::to_string(&json).unwrap_or_else(|e| {
            format!(
                "{{\"error\":{{\"code\":\"internal\",\"message\":\"cannot encode the report: {}\",\"target\":null}}}}",
                e.to_string().replace(['"', '\\'], "'")
            )
        })
    }

    /// Human text: one line per skipped or refused line, then a summary (usersfiles); one
    /// line for a google-authenticator file (nothing when it failed: the error says why).
    pub fn human(&self) -> String {
        let mut out = String::new();
        let file = sanitize(&self.file.display().to_string());
        if self.source == Source::GoogleAuthenticator {
            let (Some(entry), Some(settings)) = (self.entries.first(), self.settings) else {
                return out;
            };
            if entry.verdict != Verdict::Imported {
                return out;
            }
            let account = sanitize(entry.account.as_deref().unwrap_or_default());
            let moving = match settings.moving {
                Moving::Time { period, window } => format!(
                    "SHA1, 6 digits, {period} s period, window {}",
                    window.map_or_else(|| "as configured".to_owned(), |w| w.to_string())
                ),
                Moving::Counter { next } => format!("HOTP, SHA1, 6 digits, next counter {next}"),
            };
            let what = format!(
                "{moving}, {} emergency code{}",
                settings.emergency_codes,
                plural(settings.emergency_codes)
            );
            if self.dry_run {
                let _ = writeln!(
                    out,
                    "Dry run: {account} can be imported from {file} ({what}); nothing was sent."
                );
            } else {
                let _ = writeln!(
                    out,
                    "Imported {account} from {file} ({what}); the profile is active."
                );
            }
            return out;
        }
        for entry in &self.entries {
            let (what, error) = match &entry.verdict {
                Verdict::Imported => continue,
                Verdict::Skipped(error) => ("skipped", error),
                Verdict::Failed(error) => ("failed", error),
            };
            let _ = writeln!(
                out,
                "{}: {what}: {}",
                where_of(entry),
                sanitize(&error.message)
            );
        }
        let (imported, skipped, failed) = self.counts();
        if self.dry_run {
            let _ = writeln!(
                out,
                "Dry run: {imported} to import, {skipped} skipped; nothing was sent ({file})."
            );
        } else {
            let _ = writeln!(
                out,
                "Imported {imported}, skipped {skipped}, failed {failed} ({file})."
            );
        }
        out
    }
}

/// The JSON report, keys in this order.
#[derive(serde::Serialize)]
struct ReportJson<'a> {
    source: &'static str,
    file: String,
    dry_run: bool,
    imported: Vec<&'a str>,
    skipped: Vec<DetailJson<'a>>,
    failed: Vec<DetailJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

#[derive(serde::Serialize)]
struct DetailJson<'a> {
    line: Option<usize>,
    account: Option<&'a str>,
    error: Value,
}

/// `line 3 (alice)`, `line 3`, or `alice`.
fn where_of(entry: &Entry) -> String {
    let account = entry.account.as_deref().map(sanitize);
    match (entry.line, account) {
        (Some(line), Some(account)) => format!("line {line} ({account})"),
        (Some(line), None) => format!("line {line}"),
        (None, Some(account)) => account,
        (None, None) => "the file".to_owned(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
