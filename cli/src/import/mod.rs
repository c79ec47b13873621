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
//!
//! This module runs an import; the parts have their own: the file formats ([`google`],
//! [`oath`]), base32 secrets ([`base32`]), reading the files ([`files`]), NSS, the agent and
//! the files behind one trait ([`world`]), sending in batches ([`send`]), the outcome
//! ([`report`]) and the progress bar ([`progress`]).

pub mod base32;
pub mod files;
pub mod google;
pub mod oath;
pub mod progress;
pub mod report;
pub mod send;
pub mod world;

pub use progress::progress_bar;
pub use report::{Entry, Report, Settings, Source, Verdict};
pub use world::{System, World};

use crate::args::{GoogleAuthenticatorArgs, ImportSource, OathArgs};
use files::Owners;
use indicatif::ProgressBar;
use pam_totp_proto::text::sanitize;
use pam_totp_proto::validate::DEFAULT_PERIOD;
use pam_totp_proto::{Algorithm, ApiError, ErrorCode, ImportProfile, ProfileKind, SecretString};
use send::send;
use std::collections::{HashMap, HashSet};

/// Largest google-authenticator file read (real ones are a few hundred bytes).
const MAX_GOOGLE_FILE: u64 = 64 * 1024;
/// Largest usersfile read.
const MAX_USERSFILE: u64 = 1 << 30;

pub const GOOGLE_COMMENT: &str = "imported from google-authenticator";
pub const OATH_COMMENT: &str = "imported from pam_oath";

/// How an imported token's codes move on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moving {
    /// TOTP: seconds per code, and the steps accepted either side of now when the file says
    /// (else the agent's window).
    Time { period: u32, window: Option<u32> },
    /// HOTP: the counter of the token's next code.
    Counter { next: u64 },
}

/// The profile to send for a token (both incumbents' tokens are SHA1).
fn import_profile(
    account: String,
    secret: SecretString,
    digits: u8,
    moving: Moving,
    emergency_codes: Vec<SecretString>,
    comment: &str,
) -> ImportProfile {
    let (kind, counter, period, window) = match moving {
        Moving::Time { period, window } => (ProfileKind::Totp, None, period, window),
        // The period means nothing to an HOTP profile; any valid one will do.
        Moving::Counter { next } => (ProfileKind::Hotp, Some(next), DEFAULT_PERIOD, None),
    };
    ImportProfile {
        account,
        kind,
        counter,
        secret,
        algorithm: Algorithm::Sha1,
        digits,
        period,
        window,
        emergency_codes,
        comment: Some(comment.to_owned()),
    }
}

/// Something to send: a profile and where it came from.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index of its entry in the report.
    pub entry: usize,
    pub profile: ImportProfile,
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
        moving: parsed.moving,
        emergency_codes: parsed.emergency_codes.len(),
    };
    // pam_google_authenticator's codes are 6 digits.
    let profile = import_profile(
        args.user.clone(),
        parsed.secret,
        6,
        parsed.moving,
        parsed.emergency_codes,
        GOOGLE_COMMENT,
    );
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

/// Whether NSS knows each account the importable lines name: one question for them all,
/// each name asked once.
fn known_accounts(
    lines: &[oath::OathLine],
    world: &mut dyn World,
) -> HashMap<String, Result<bool, ApiError>> {
    let mut names: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    for line in lines {
        if let Ok(token) = &line.token {
            if seen.insert(token.account.as_str()) {
                names.push(&token.account);
            }
        }
    }
    let answers = world.accounts_exist(&names);
    names.into_iter().map(str::to_owned).zip(answers).collect()
}

/// Turns parsed lines into report entries and candidates: unknown accounts (NSS, looked up
/// once each) and repeated accounts are skipped here.
fn check_oath(
    lines: Vec<oath::OathLine>,
    report: &mut Report,
    world: &mut dyn World,
) -> Vec<Candidate> {
    let known = known_accounts(&lines, world);
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut candidates = Vec::new();
    for line in lines {
        let entry = report.entries.len();
        let verdict = match line.token {
            Err(error) => Verdict::Skipped(error),
            Ok(token) => {
                let exists = known.get(&token.account).cloned().unwrap_or(Ok(false));
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
                            profile: import_profile(
                                token.account,
                                token.secret,
                                token.digits,
                                token.moving,
                                Vec::new(),
                                OATH_COMMENT,
                            ),
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

fn no_such_account(account: &str) -> ApiError {
    ApiError::not_found(format!("no such account: '{}'", sanitize(account))).with_target("account")
}

#[cfg(test)]
mod tests;
