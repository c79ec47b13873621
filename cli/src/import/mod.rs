//! `pam-totp import`: profiles moved over from google-authenticator or pam_oath.
//!
//! The CLI reads the file itself, as the calling user (so a user can import only a file they
//! can read; root any), turns each importable token into an [`ImportProfile`] and sends them
//! in batches; the agent decides each profile on its own and hashes the emergency codes. The
//! file is only read, never written.
//!
//! A google-authenticator file must be the account's own, as pam_google_authenticator requires
//! at login: it is opened without following a symbolic link, and the opened file must be a
//! regular file owned by the account (or, for a FILE named on the command line, by the caller,
//! e.g. root's copy from a backup) that neither group nor others may write. Otherwise whoever
//! could plant or link the file would choose the secret of someone else's profile.
//!
//! What the agent refuses (the account already has a profile, permission) is reported per
//! account and never stops the rest; lines the CLI cannot import are reported with their line
//! numbers and skipped.

pub mod google;
pub mod oath;

use crate::args::{sanitize, GoogleAuthenticatorArgs, ImportOptions, ImportSource, OathArgs};
use crate::output::error_object;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pam_totp_proto::frame::MAX_FRAME_LEN;
use pam_totp_proto::{
    Algorithm, ApiError, ErrorCode, ImportOutcome, ImportProfile, Reply, Request, SecretString,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Secrets shorter than 80 bits are refused (RFC 4226), as the agent does.
pub const MIN_SECRET_BYTES: usize = 10;
pub const MAX_SECRET_BYTES: usize = 64;
/// Profiles in one request at most (the agent takes up to 1000).
pub const MAX_BATCH: usize = 500;
/// Bytes of a request, or of its reply, one batch may fill: a frame is at most 64 KiB, less
/// room for the envelope.
const BATCH_BYTES: usize = MAX_FRAME_LEN - 2048;
/// Largest google-authenticator file read (real ones are a few hundred bytes).
const MAX_GOOGLE_FILE: u64 = 64 * 1024;
/// Largest usersfile read.
const MAX_USERSFILE: u64 = 1 << 30;

pub const GOOGLE_COMMENT: &str = "imported from google-authenticator";
pub const OATH_COMMENT: &str = "imported from pam_oath";

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
    pub period: u32,
    pub window: u32,
    pub emergency_codes: usize,
}

/// Something to send: a profile and where it came from.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index of its entry in the report.
    pub entry: usize,
    pub profile: ImportProfile,
}

/// How the import talks to the rest of the system (a real agent, NSS and files in `main`;
/// doubles in tests).
pub trait World {
    /// One request to the agent. Transport failures come back as `unavailable`.
    fn call(&mut self, request: Request) -> Result<Reply, ApiError>;
    /// About to ask [`World::account_exists`] for up to `count` accounts.
    fn expect_lookups(&mut self, _count: usize) {}
    /// Whether NSS knows the account.
    fn account_exists(&mut self, account: &str) -> Result<bool, ApiError>;
    /// The uid and home directory of an account, `None` when NSS does not know it.
    fn passwd_of(&mut self, account: &str) -> Result<Option<Passwd>, ApiError>;
    /// The real uid of the calling process.
    fn caller_uid(&mut self) -> u32;
    /// The file's bytes, read as the calling user.
    fn read(&mut self, path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, ApiError>;
    /// The bytes of a file that holds one account's secret, read as the calling user, once
    /// [`check_secret_file`] passed on the opened file (a symbolic link is not followed).
    fn read_secret_file(
        &mut self,
        path: &Path,
        limit: u64,
        owners: &Owners,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError>;
}

/// What NSS says of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub uid: u32,
    pub home: PathBuf,
}

/// Who may own a file that holds an account's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owners {
    /// The account being imported, and its uid.
    pub account: String,
    pub uid: u32,
    /// The caller, for a file it named itself.
    pub caller: Option<u32>,
}

/// What [`check_secret_file`] looks at, from fstat(2) of the opened file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    pub regular: bool,
    pub uid: u32,
    /// The permission bits.
    pub mode: u32,
}

/// Refuses a file that is not the account's own to hold its secret: not a regular file
/// (`invalid_argument`, as before); owned by anyone but the account (or the caller, when
/// allowed); writable by group or others (`failed_precondition`: the file must be fixed, by
/// whoever may, before it can be imported).
pub fn check_secret_file(shown: &str, facts: FileFacts, owners: &Owners) -> Result<(), ApiError> {
    if !facts.regular {
        return Err(ApiError::invalid(
            "file",
            format!("{shown} is not a regular file"),
        ));
    }
    if facts.uid != owners.uid && Some(facts.uid) != owners.caller {
        let also = match owners.caller {
            Some(caller) if caller != owners.uid => " or by you",
            _ => "",
        };
        return Err(unsafe_file(format!(
            "{shown} is owned by uid {}: it must be owned by {}{also} (uid {}), as \
             pam_google_authenticator requires",
            facts.uid,
            sanitize(&owners.account),
            owners.uid
        )));
    }
    if facts.mode & 0o022 != 0 {
        return Err(unsafe_file(format!(
            "{shown} is writable by {} (mode {:04o}): someone else may have chosen its \
             secret; make it writable by its owner only (chmod go-w)",
            if facts.mode & 0o020 != 0 && facts.mode & 0o002 != 0 {
                "group and others"
            } else if facts.mode & 0o020 != 0 {
                "its group"
            } else {
                "others"
            },
            facts.mode & 0o7777
        )));
    }
    Ok(())
}

fn unsafe_file(message: String) -> ApiError {
    ApiError::new(ErrorCode::FailedPrecondition, message).with_target("file")
}

/// Runs one `import` command.
pub fn run(
    source: ImportSource,
    world: &mut dyn World,
    progress: &ProgressBar,
) -> Result<Report, ApiError> {
    match source {
        ImportSource::GoogleAuthenticator(args) => import_google(args, world),
        ImportSource::Oath(args) => import_oath(args, world, progress),
    }
}

fn import_google(args: GoogleAuthenticatorArgs, world: &mut dyn World) -> Result<Report, ApiError> {
    pam_totp_proto::validate::account(&args.user)?;
    if args.file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
        return Err(ApiError::invalid("file", "the file path is empty"));
    }
    let Some(passwd) = world.passwd_of(&args.user)? else {
        return Err(no_such_account(&args.user));
    };
    let mut owners = Owners {
        account: args.user.clone(),
        uid: passwd.uid,
        caller: None,
    };
    let file = match args.file {
        Some(file) => {
            // Named by the caller: a file of its own (root's copy of a backup) will do too.
            owners.caller = Some(world.caller_uid());
            file
        }
        // The account's own place: only the account's own file.
        None => passwd.home.join(".google_authenticator"),
    };
    let bytes = world.read_secret_file(&file, MAX_GOOGLE_FILE, &owners)?;
    let shown = sanitize(&file.display().to_string());
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        ApiError::invalid(
            "file",
            format!("{shown} is not a google-authenticator file: it is not text"),
        )
    })?;
    let parsed = google::parse(text).map_err(|mut error| {
        error.message = format!("{shown}: {}", error.message);
        error
    })?;
    let settings = Settings {
        period: parsed.period,
        window: parsed.window,
        emergency_codes: parsed.emergency_codes.len(),
    };
    let profile = ImportProfile {
        account: args.user.clone(),
        secret: parsed.secret,
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: parsed.period,
        window: Some(parsed.window),
        emergency_codes: parsed.emergency_codes,
        comment: Some(GOOGLE_COMMENT.to_owned()),
    };
    let mut report = Report {
        source: Source::GoogleAuthenticator,
        file,
        dry_run: args.options.dry_run,
        entries: vec![Entry {
            line: None,
            account: Some(args.user),
            verdict: Verdict::Imported,
        }],
        settings: Some(settings),
    };
    let candidates = vec![Candidate { entry: 0, profile }];
    send(
        &mut report,
        candidates,
        args.options,
        world,
        &ProgressBar::hidden(),
    )?;
    Ok(report)
}

fn import_oath(
    args: OathArgs,
    world: &mut dyn World,
    progress: &ProgressBar,
) -> Result<Report, ApiError> {
    if args.file.as_os_str().is_empty() {
        return Err(ApiError::invalid("file", "the file path is empty"));
    }
    let bytes = world.read(&args.file, MAX_USERSFILE)?;
    let lines = oath::parse(&bytes);
    drop(bytes);
    let mut report = Report {
        source: Source::Oath,
        file: args.file,
        dry_run: args.options.dry_run,
        entries: Vec::with_capacity(lines.len()),
        settings: None,
    };
    let candidates = check_oath(lines, &mut report, world);
    progress.set_length(candidates.len() as u64);
    let sent = send(&mut report, candidates, args.options, world, progress);
    progress.finish_and_clear();
    sent.map(|()| report)
}

/// Turns parsed lines into report entries and candidates: unknown accounts (NSS, looked up
/// once each) and repeated accounts are skipped here.
fn check_oath(
    lines: Vec<oath::OathLine>,
    report: &mut Report,
    world: &mut dyn World,
) -> Vec<Candidate> {
    let mut known: HashMap<String, Result<bool, ApiError>> = HashMap::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut candidates = Vec::new();
    world.expect_lookups(lines.iter().filter(|line| line.token.is_ok()).count());
    for line in lines {
        let entry = report.entries.len();
        let verdict = match line.token {
            Err(error) => Verdict::Skipped(error),
            Ok(token) => {
                let exists = known
                    .entry(token.account.clone())
                    .or_insert_with(|| world.account_exists(&token.account))
                    .clone();
                match (exists, first_line.get(&token.account)) {
                    (Err(error), _) => Verdict::Skipped(error),
                    (Ok(false), _) => Verdict::Skipped(no_such_account(&token.account)),
                    (Ok(true), Some(first)) => Verdict::Skipped(
                        ApiError::new(
                            ErrorCode::AlreadyExists,
                            format!(
                                "account '{}' is on line {first} already: one profile per \
                                 account, the first line wins",
                                sanitize(&token.account)
                            ),
                        )
                        .with_target("account"),
                    ),
                    (Ok(true), None) => {
                        first_line.insert(token.account.clone(), line.line);
                        candidates.push(Candidate {
                            entry,
                            profile: ImportProfile {
                                account: token.account,
                                secret: token.secret,
                                algorithm: Algorithm::Sha1,
                                digits: token.digits,
                                period: token.period,
                                window: None,
                                emergency_codes: Vec::new(),
                                comment: Some(OATH_COMMENT.to_owned()),
                            },
                        });
                        Verdict::Imported
                    }
                }
            }
        };
        report.entries.push(Entry {
            line: Some(line.line),
            account: line.account,
            verdict,
        });
    }
    candidates
}

/// Sends the candidates in batches and records each outcome. A batch the agent refuses as a
/// whole marks its profiles failed and the next batch goes on; an unreachable agent (or one
/// that cannot record state) stops the run.
fn send(
    report: &mut Report,
    candidates: Vec<Candidate>,
    options: ImportOptions,
    world: &mut dyn World,
    progress: &ProgressBar,
) -> Result<(), ApiError> {
    if options.dry_run || candidates.is_empty() {
        return Ok(());
    }
    let total = candidates.len();
    let mut done = 0;
    let mut imported = 0;
    for batch in batches(candidates) {
        let entries: Vec<usize> = batch.iter().map(|c| c.entry).collect();
        let accounts: Vec<String> = batch.iter().map(|c| c.profile.account.clone()).collect();
        let request = Request::Import {
            profiles: batch.into_iter().map(|c| c.profile).collect(),
            replace: options.replace,
        };
        let outcomes = match world.call(request) {
            Ok(Reply::Imported(outcomes)) if outcomes.len() == entries.len() => outcomes,
            Ok(other) => {
                return Err(ApiError::internal(format!(
                    "the agent sent an unexpected reply ({}) to an import{}",
                    other.kind(),
                    progress_note(imported, total)
                )))
            }
            Err(mut error) if error.code == ErrorCode::Unavailable => {
                error.message = format!("{}{}", error.message, progress_note(imported, total));
                return Err(error);
            }
            Err(error) => accounts
                .iter()
                .map(|account| ImportOutcome {
                    account: account.clone(),
                    error: Some(error.clone()),
                })
                .collect(),
        };
        for ((entry, outcome), account) in entries.iter().zip(outcomes).zip(&accounts) {
            let verdict = match outcome.error {
                None if outcome.account == *account => {
                    imported += 1;
                    Verdict::Imported
                }
                None => Verdict::Failed(ApiError::internal(format!(
                    "the agent answered for '{}' instead",
                    sanitize(&outcome.account)
                ))),
                Some(error) => Verdict::Failed(error),
            };
            report.entries[*entry].verdict = verdict;
        }
        done += entries.len();
        progress.set_position(done as u64);
    }
    Ok(())
}

fn progress_note(imported: usize, total: usize) -> String {
    format!(" ({imported} of {total} profiles were imported before this)")
}

/// Splits the candidates so that each request, and its reply even if every profile is
/// refused with a message, fits in one frame.
pub fn batches(candidates: Vec<Candidate>) -> Vec<Vec<Candidate>> {
    let mut batches = Vec::new();
    let mut current: Vec<Candidate> = Vec::new();
    let (mut request_bytes, mut reply_bytes) = (0, 0);
    for candidate in candidates {
        let request = serde_json::to_vec(&candidate.profile)
            .map(|bytes| Zeroizing::new(bytes).len())
            .unwrap_or(BATCH_BYTES)
            + 1;
        // An outcome with an error: the account twice (once in the message), code, target,
        // and a message of up to ~200 bytes.
        let account = serde_json::to_string(&candidate.profile.account)
            .map(|a| a.len())
            .unwrap_or(BATCH_BYTES);
        let reply = 3 * account + 256;
        if !current.is_empty()
            && (current.len() == MAX_BATCH
                || request_bytes + request > BATCH_BYTES
                || reply_bytes + reply > BATCH_BYTES)
        {
            batches.push(std::mem::take(&mut current));
            (request_bytes, reply_bytes) = (0, 0);
        }
        request_bytes += request;
        reply_bytes += reply;
        current.push(candidate);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

fn no_such_account(account: &str) -> ApiError {
    ApiError::not_found(format!("no such account: '{}'", sanitize(account))).with_target("account")
}

/// A base32 secret as apps and google-authenticator write it, canonical: white space and
/// `-` dropped, upper case, no padding; with `google_quirks`, 0, 1 and 8 read as O, L and B
/// as pam_google_authenticator does. `None` when anything else is left.
pub fn normalize_base32(text: &str, google_quirks: bool) -> Option<SecretString> {
    let cleaned: Zeroizing<String> = Zeroizing::new(
        text.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| match c.to_ascii_uppercase() {
                '0' if google_quirks => 'O',
                '1' if google_quirks => 'L',
                '8' if google_quirks => 'B',
                other => other,
            })
            .collect(),
    );
    let trimmed = cleaned.trim_end_matches('=');
    if trimmed.is_empty()
        || !trimmed
            .bytes()
            .all(|b| matches!(b, b'A'..=b'Z' | b'2'..=b'7'))
    {
        return None;
    }
    Some(SecretString::from(trimmed))
}

/// Whether a canonical base32 secret decodes to an acceptable number of bytes.
pub fn secret_bytes_ok(secret: &SecretString) -> bool {
    base32::decode(
        base32::Alphabet::Rfc4648 { padding: false },
        secret.expose(),
    )
    .map(Zeroizing::new)
    .is_some_and(|bytes| (MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()))
}

/// Reads a regular file of at most `limit` bytes as the calling user. A FIFO or device is
/// refused without blocking on it.
pub fn read_file(path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let shown = sanitize(&path.display().to_string());
    let file = open_file(path, &shown, nix::fcntl::OFlag::empty())?;
    let meta = file.metadata().map_err(|e| file_error(&shown, &e))?;
    if !meta.is_file() {
        return Err(ApiError::invalid(
            "file",
            format!("{shown} is not a regular file"),
        ));
    }
    read_opened(file, &meta, &shown, limit)
}

/// [`read_file`] for a file that holds an account's secret: a symbolic link is refused, not
/// followed, and [`check_secret_file`] looks at the file that was opened (fstat), so nothing
/// can be swapped in between the check and the read.
pub fn read_secret_file(
    path: &Path,
    limit: u64,
    owners: &Owners,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let shown = sanitize(&path.display().to_string());
    let file = open_file(path, &shown, nix::fcntl::OFlag::O_NOFOLLOW)?;
    let meta = file.metadata().map_err(|e| file_error(&shown, &e))?;
    let facts = FileFacts {
        regular: meta.is_file(),
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
    };
    check_secret_file(&shown, facts, owners)?;
    read_opened(file, &meta, &shown, limit)
}

/// Opens for reading without blocking (a FIFO) or taking a controlling terminal (a tty).
fn open_file(
    path: &Path,
    shown: &str,
    extra: nix::fcntl::OFlag,
) -> Result<std::fs::File, ApiError> {
    let flags = nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOCTTY | extra;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
        .map_err(|e| {
            if extra.contains(nix::fcntl::OFlag::O_NOFOLLOW)
                && e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32)
            {
                unsafe_file(format!(
                    "{shown} is a symbolic link, which is not followed: the file must be the \
                     account's own regular file (name the file itself if it is)"
                ))
            } else {
                file_error(shown, &e)
            }
        })
}

/// The contents of an opened regular file, at most `limit` bytes.
fn read_opened(
    file: std::fs::File,
    meta: &std::fs::Metadata,
    shown: &str,
    limit: u64,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    if meta.len() > limit {
        return Err(ApiError::invalid(
            "file",
            format!("{shown} is larger than {limit} bytes"),
        ));
    }
    let capacity = usize::try_from(meta.len()).unwrap_or(0).saturating_add(1);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| file_error(shown, &e))?;
    if bytes.len() as u64 > limit {
        return Err(ApiError::invalid(
            "file",
            format!("{shown} is larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

fn file_error(shown: &str, error: &std::io::Error) -> ApiError {
    match error.kind() {
        std::io::ErrorKind::NotFound => {
            ApiError::invalid("file", format!("cannot read {shown}: no such file"))
        }
        std::io::ErrorKind::PermissionDenied => ApiError::permission_denied(format!(
            "cannot read {shown}: permission denied (the file is read as the calling user)"
        ))
        .with_target("file"),
        _ => ApiError::invalid("file", format!("cannot read {shown}: {error}")),
    }
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
            let what = format!(
                "SHA1, 6 digits, {} s period, window {}, {} emergency code{}",
                settings.period,
                settings.window,
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

/// A progress bar on stderr for `count` profiles, drawn only on a terminal.
pub fn progress_bar(visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("importing {bar:40} {pos}/{len} profiles ({eta} left)")
    {
        bar.set_style(style);
    }
    bar
}

/// Above this many lookups, NSS is enumerated once instead of asked per name: with
/// `files`, each getpwnam reads /etc/passwd from the top.
const ENUMERATE_ABOVE: usize = 64;

/// The agent, NSS and the file system.
pub struct System<'a> {
    pub call: &'a mut dyn FnMut(Request) -> Result<Reply, ApiError>,
    /// Every account NSS enumerated, when many lookups are coming.
    enumerated: Option<HashSet<String>>,
}

impl<'a> System<'a> {
    pub fn new(call: &'a mut dyn FnMut(Request) -> Result<Reply, ApiError>) -> Self {
        Self {
            call,
            enumerated: None,
        }
    }
}

/// Every account NSS enumerates, from `getent passwd` (sources that do not enumerate, e.g.
/// LDAP or SSSD without `enumerate`, contribute nothing: names not found here are asked for
/// one by one). Empty when getent cannot run.
fn enumerate_accounts() -> HashSet<String> {
    let output = std::process::Command::new("getent")
        .arg("passwd")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(output) = output else {
        return HashSet::new();
    };
    // Only the name column is kept; nothing else of the output is looked at.
    output
        .stdout
        .split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b':').next())
        .filter(|name| !name.is_empty())
        .filter_map(|name| std::str::from_utf8(name).ok())
        .map(str::to_owned)
        .collect()
}

impl World for System<'_> {
    fn call(&mut self, request: Request) -> Result<Reply, ApiError> {
        (self.call)(request)
    }

    fn expect_lookups(&mut self, count: usize) {
        if count > ENUMERATE_ABOVE && self.enumerated.is_none() {
            self.enumerated = Some(enumerate_accounts());
        }
    }

    fn account_exists(&mut self, account: &str) -> Result<bool, ApiError> {
        if self
            .enumerated
            .as_ref()
            .is_some_and(|names| names.contains(account))
        {
            return Ok(true);
        }
        match nix::unistd::User::from_name(account) {
            Ok(user) => Ok(user.is_some()),
            Err(error) => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "cannot look up account '{}': {}",
                    sanitize(account),
                    error.desc()
                ),
            )
            .with_target("account")),
        }
    }

    fn passwd_of(&mut self, account: &str) -> Result<Option<Passwd>, ApiError> {
        match nix::unistd::User::from_name(account) {
            Ok(user) => Ok(user.map(|u| Passwd {
                uid: u.uid.as_raw(),
                home: u.dir,
            })),
            Err(error) => Err(ApiError::internal(format!(
                "cannot look up account '{}': {}",
                sanitize(account),
                error.desc()
            ))),
        }
    }

    fn caller_uid(&mut self) -> u32 {
        nix::unistd::getuid().as_raw()
    }

    fn read(&mut self, path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        read_file(path, limit)
    }

    fn read_secret_file(
        &mut self,
        path: &Path,
        limit: u64,
        owners: &Owners,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        read_secret_file(path, limit, owners)
    }
}

#[cfg(test)]
mod tests;
