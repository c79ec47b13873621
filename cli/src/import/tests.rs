#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::files::{check_secret_file, FileFacts, Owners};
use super::world::Passwd;
use super::*;
use crate::args::Cli;
use clap::Parser;
use pam_totp_proto::{ImportOutcome, Reply, Request};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const HEX: &str = "3132333435363738393031323334353637383930";

/// NSS, files and an agent in memory. The agent refuses accounts in `existing` (as
/// `already_exists`) and records every request.
#[derive(Default)]
struct Fake {
    files: HashMap<PathBuf, Vec<u8>>,
    accounts: HashSet<String>,
    existing: HashSet<String>,
    homes: HashMap<String, PathBuf>,
    /// Owner and mode of a file; files not here are the account's own, mode 0600.
    facts: HashMap<PathBuf, FileFacts>,
    /// The calling user's uid (root unless set).
    caller: u32,
    /// The owners each secret file was checked against.
    checked: Vec<Owners>,
    requests: Vec<(Vec<ImportProfile>, bool)>,
    lookups: usize,
    /// Answer every request with this error instead.
    fail_with: Option<ApiError>,
}

impl Fake {
    fn with_accounts(names: &[&str]) -> Self {
        Self {
            accounts: names.iter().map(|n| n.to_string()).collect(),
            ..Self::default()
        }
    }

    fn file(mut self, path: &str, text: &str) -> Self {
        self.files
            .insert(PathBuf::from(path), text.as_bytes().to_vec());
        self
    }

    fn owned(mut self, path: &str, uid: u32, mode: u32) -> Self {
        self.facts.insert(
            PathBuf::from(path),
            FileFacts {
                regular: true,
                uid,
                mode,
            },
        );
        self
    }

    /// The uid NSS gives `account`: 1000 and up, in name order.
    fn uid_of(&self, account: &str) -> u32 {
        let mut names: Vec<&String> = self.accounts.iter().collect();
        names.sort();
        let index = names.iter().position(|n| *n == account).unwrap();
        1000 + u32::try_from(index).unwrap()
    }

    fn sent(&self) -> Vec<String> {
        self.requests
            .iter()
            .flat_map(|(profiles, _)| profiles.iter().map(|p| p.account.clone()))
            .collect()
    }
}

impl World for Fake {
    fn call(&mut self, request: Request) -> Result<Reply, ApiError> {
        let Request::Import { profiles, replace } = request else {
            panic!("not an import: {request:?}");
        };
        self.requests.push((profiles.clone(), replace));
        if let Some(error) = &self.fail_with {
            return Err(error.clone());
        }
        Ok(Reply::Imported(
            profiles
                .into_iter()
                .map(|p| ImportOutcome {
                    error: (self.existing.contains(&p.account) && !replace).then(|| {
                        ApiError::new(
                            ErrorCode::AlreadyExists,
                            format!("account '{}' already has a TOTP profile", p.account),
                        )
                        .with_target("account")
                    }),
                    account: p.account,
                })
                .collect(),
        ))
    }

    fn accounts_exist(&mut self, accounts: &[&str]) -> Vec<Result<bool, ApiError>> {
        self.lookups += accounts.len();
        accounts
            .iter()
            .map(|account| Ok(self.accounts.contains(*account)))
            .collect()
    }

    fn passwd_of(&mut self, account: &str) -> Result<Option<Passwd>, ApiError> {
        Ok(self.accounts.contains(account).then(|| Passwd {
            uid: self.uid_of(account),
            home: self
                .homes
                .get(account)
                .cloned()
                .unwrap_or_else(|| PathBuf::from(format!("/home/{account}"))),
        }))
    }

    fn caller_uid(&mut self) -> u32 {
        self.caller
    }

    fn read_secret_file(
        &mut self,
        path: &Path,
        limit: u64,
        owners: &Owners,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        self.checked.push(owners.clone());
        if self.files.contains_key(path) {
            let facts = self.facts.get(path).copied().unwrap_or(FileFacts {
                regular: true,
                uid: owners.uid,
                mode: 0o600,
            });
            check_secret_file(&path.display().to_string(), facts, owners)?;
        }
        self.read(path, limit)
    }

    fn read(&mut self, path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        match self.files.get(path) {
            Some(bytes) if bytes.len() as u64 <= limit => Ok(Zeroizing::new(bytes.clone())),
            Some(_) => Err(ApiError::invalid("file", "too large")),
            None => Err(ApiError::invalid("file", "no such file")),
        }
    }
}

fn source(args: &[&str]) -> ImportSource {
    let cli = Cli::try_parse_from(
        ["pam-totp", "import"]
            .into_iter()
            .chain(args.iter().copied()),
    )
    .expect("arguments parse");
    match cli.command {
        crate::args::Command::Import(source) => source,
        other => panic!("not import: {other:?}"),
    }
}

fn import(fake: &mut Fake, args: &[&str]) -> Result<Report, ApiError> {
    run(source(args), fake, &ProgressBar::hidden())
}

const GA_FILE: &str = "J5RKYJBDUSAT4VW7J37BVIVX74\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 17\n\
                       \" DISALLOW_REUSE\n\" TOTP_AUTH\n19032125\n92788794\n";

#[test]
fn google_file_from_the_home_directory() {
    let mut fake =
        Fake::with_accounts(&["alice"]).file("/home/alice/.google_authenticator", GA_FILE);
    let report = import(&mut fake, &["google-authenticator", "alice"]).unwrap();
    assert_eq!(report.counts(), (1, 0, 0));
    assert_eq!(report.exit_error(), None);
    let (profiles, replace) = &fake.requests[0];
    assert!(!replace);
    let profile = &profiles[0];
    assert_eq!(profile.account, "alice");
    assert_eq!(profile.secret.expose(), "J5RKYJBDUSAT4VW7J37BVIVX74");
    assert_eq!(
        (
            profile.algorithm,
            profile.digits,
            profile.period,
            profile.window
        ),
        (Algorithm::Sha1, 6, 30, Some(8))
    );
    let codes: Vec<&str> = profile.emergency_codes.iter().map(|c| c.expose()).collect();
    assert_eq!(codes, ["19032125", "92788794"]);
    assert_eq!(profile.comment.as_deref(), Some(GOOGLE_COMMENT));
    assert_eq!(
        report.human(),
        "Imported alice from /home/alice/.google_authenticator (SHA1, 6 digits, 30 s period, \
         window 8, 2 emergency codes); the profile is active.\n"
    );
    let value = serde_json::from_str::<Value>(&report.to_json()).unwrap();
    assert_eq!(value["imported"], json!(["alice"]));
    assert_eq!(value["skipped"], json!([]));
    assert_eq!(value["failed"], json!([]));
    assert_eq!(value["dry_run"], json!(false));
    assert_eq!(value["source"], json!("google-authenticator"));
    assert!(value.get("error").is_none());
    // Never a secret or a scratch code in the report.
    let text = value.to_string() + &report.human();
    assert!(
        !text.contains("J5RKYJ") && !text.contains("19032125"),
        "{text}"
    );
}

#[test]
fn google_file_given_replace_and_dry_run() {
    let mut fake = Fake::with_accounts(&["bob"]).file("/tmp/ga", GA_FILE);
    import(
        &mut fake,
        &["google-authenticator", "bob", "/tmp/ga", "--replace"],
    )
    .unwrap();
    assert!(fake.requests[0].1);
    let report = import(
        &mut fake,
        &["google-authenticator", "bob", "/tmp/ga", "--dry-run"],
    )
    .unwrap();
    assert_eq!(fake.requests.len(), 1, "a dry run sends nothing");
    assert!(report
        .human()
        .starts_with("Dry run: bob can be imported from /tmp/ga"));
    assert_eq!(
        serde_json::from_str::<Value>(&report.to_json()).unwrap()["dry_run"],
        json!(true)
    );
}

#[test]
fn google_hotp_file_goes_on_from_its_counter() {
    let mut fake = Fake::with_accounts(&["alice"]).file(
        "/hotp",
        "ZO365TAXHDSLDJ6TMKRFVGE2II\n\" WINDOW_SIZE 3\n\" HOTP_COUNTER 7\n73635704\n",
    );
    let report = import(&mut fake, &["google-authenticator", "alice", "/hotp"]).unwrap();
    assert_eq!(report.counts(), (1, 0, 0));
    let profile = &fake.requests[0].0[0];
    assert_eq!(
        (
            profile.kind,
            profile.counter,
            profile.digits,
            profile.window
        ),
        (ProfileKind::Hotp, Some(7), 6, None)
    );
    assert_eq!(profile.emergency_codes.len(), 1);
    assert_eq!(
        report.human(),
        "Imported alice from /hotp (HOTP, SHA1, 6 digits, next counter 7, 1 emergency code); \
         the profile is active.\n"
    );
}

#[test]
fn google_errors_name_the_field() {
    let mut fake = Fake::with_accounts(&["alice"])
        .file("/hotp", "ZO365TAXHDSLDJ6TMKRFVGE2II\n\" HOTP_COUNTER 0\n")
        .file(
            "/wide",
            "ZO365TAXHDSLDJ6TMKRFVGE2II\n\" WINDOW_SIZE 25\n\" TOTP_AUTH\n",
        );
    let error = import(&mut fake, &["google-authenticator", "alice", "/hotp"]).unwrap_err();
    assert_eq!(
        (error.code, error.target.as_deref()),
        (ErrorCode::InvalidArgument, Some("counter"))
    );
    assert!(error.message.starts_with("/hotp: "), "{}", error.message);
    let error = import(&mut fake, &["google-authenticator", "alice", "/wide"]).unwrap_err();
    assert_eq!(error.target.as_deref(), Some("window"));
    let error = import(&mut fake, &["google-authenticator", "nobody", "/wide"]).unwrap_err();
    assert_eq!(
        (error.code, error.target.as_deref()),
        (ErrorCode::NotFound, Some("account"))
    );
    let error = import(&mut fake, &["google-authenticator", "nobody"]).unwrap_err();
    assert_eq!(error.code, ErrorCode::NotFound);
    let error = import(&mut fake, &["google-authenticator", "alice", "/missing"]).unwrap_err();
    assert_eq!(error.target.as_deref(), Some("file"));
    let error = import(&mut fake, &["google-authenticator", "a:b", "/hotp"]).unwrap_err();
    assert_eq!(error.target.as_deref(), Some("account"));
    assert!(fake.requests.is_empty());
}

#[test]
fn google_file_must_be_the_accounts_own() {
    // alice is uid 1000, bob 1001; the caller is root unless set.
    let base = || {
        Fake::with_accounts(&["alice", "bob"])
            .file("/home/alice/.google_authenticator", GA_FILE)
            .file("/tmp/ga", GA_FILE)
    };
    let refused = |fake: &mut Fake, args: &[&str]| {
        let error = import(fake, args).unwrap_err();
        assert_eq!(
            (error.code, error.target.as_deref()),
            (ErrorCode::FailedPrecondition, Some("file")),
            "{args:?}: {}",
            error.message
        );
        assert_eq!(error.code.exit_code(), 6);
        assert!(fake.requests.is_empty(), "{args:?}");
        error.message
    };

    // From the home directory: only the account's own file, checked against alice alone.
    let mut fake = base().owned("/home/alice/.google_authenticator", 1001, 0o400);
    let message = refused(&mut fake, &["google-authenticator", "alice"]);
    assert_eq!(
        message,
        "/home/alice/.google_authenticator is owned by uid 1001: it must be owned by alice \
         (uid 1000), as pam_google_authenticator requires"
    );
    assert_eq!(
        fake.checked,
        [Owners {
            account: "alice".into(),
            uid: 1000,
            caller: None
        }]
    );
    // Not even root's own file there.
    let mut fake = base().owned("/home/alice/.google_authenticator", 0, 0o600);
    refused(&mut fake, &["google-authenticator", "alice", "--dry-run"]);

    // A named file: alice's, or the caller's own (root's copy from a backup).
    let mut fake = base().owned("/tmp/ga", 0, 0o600);
    import(&mut fake, &["google-authenticator", "alice", "/tmp/ga"]).unwrap();
    assert_eq!(fake.checked[0].caller, Some(0));
    let mut fake = base().owned("/tmp/ga", 1000, 0o644);
    import(&mut fake, &["google-authenticator", "alice", "/tmp/ga"]).unwrap();
    // Someone else's: refused, for root as for alice.
    let mut fake = base().owned("/tmp/ga", 1001, 0o644);
    let message = refused(&mut fake, &["google-authenticator", "alice", "/tmp/ga"]);
    assert!(message.contains("owned by alice or by you"), "{message}");
    let mut fake = base().owned("/tmp/ga", 1001, 0o644);
    fake.caller = 1000;
    let message = refused(&mut fake, &["google-authenticator", "alice", "/tmp/ga"]);
    assert!(message.ends_with("owned by alice (uid 1000), as pam_google_authenticator requires"));

    // Writable by group or others, even when alice's own.
    for (mode, whom) in [
        (0o620, "its group"),
        (0o602, "others"),
        (0o666, "group and others"),
    ] {
        let mut fake = base().owned("/home/alice/.google_authenticator", 1000, mode);
        let message = refused(&mut fake, &["google-authenticator", "alice"]);
        assert!(
            message.contains(&format!("writable by {whom}")),
            "{message}"
        );
        assert!(message.contains(&format!("mode {mode:04o}")), "{message}");
    }
    // Readable by others is the owner's business (as is any mode without group/other write).
    let mut fake = base().owned("/home/alice/.google_authenticator", 1000, 0o644);
    import(&mut fake, &["google-authenticator", "alice"]).unwrap();
}

#[test]
fn google_refused_by_the_agent_is_the_agent_error() {
    let mut fake = Fake::with_accounts(&["alice"]).file("/ga", GA_FILE);
    fake.existing.insert("alice".into());
    let report = import(&mut fake, &["google-authenticator", "alice", "/ga"]).unwrap();
    assert_eq!(report.counts(), (0, 0, 1));
    let error = report.exit_error().unwrap();
    assert_eq!(error.code, ErrorCode::AlreadyExists);
    assert_eq!(error.message, "account 'alice' already has a TOTP profile");
    assert_eq!(report.human(), "");
    let value = serde_json::from_str::<Value>(&report.to_json()).unwrap();
    assert_eq!(value["error"]["code"], "already_exists");
    assert_eq!(value["failed"][0]["account"], "alice");
    assert_eq!(value["failed"][0]["line"], Value::Null);
}

fn usersfile() -> String {
    format!(
        "# pam_oath users\n\
         HOTP/T30 alice - {HEX}\n\
         HOTP bob - {HEX} 5\n\
         HOTP/T30 carol secret {HEX}\n\
         HOTP/T30 ghost - {HEX}\n\
         HOTP/T30 dave - 31zz\n\
         HOTP/T30/8 erin - {HEX}\n\
         \n\
         HOTP/T60 frank - {HEX} 0 123456 2024-01-01T00:00:00L\n\
         HOTP/T30 alice - {HEX}\n\
         HOTP/T60/7 gina - {HEX}\n\
         HOTP/E/8 hank - {HEX} 5 12345678 2024-01-01T00:00:00L\n"
    )
}

fn oath_fake() -> Fake {
    let mut fake = Fake::with_accounts(&[
        "alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank",
    ])
    .file("/etc/users.oath", &usersfile());
    fake.existing.insert("gina".into());
    fake
}

#[test]
fn usersfile_report_per_line() {
    let mut fake = oath_fake();
    let report = import(&mut fake, &["oath", "/etc/users.oath"]).unwrap();
    assert_eq!(
        fake.sent(),
        ["alice", "bob", "erin", "frank", "gina", "hank"]
    );
    let profiles = &fake.requests[0].0;
    assert_eq!((profiles[2].digits, profiles[2].period), (8, 30));
    assert_eq!((profiles[3].digits, profiles[3].period), (6, 60));
    assert_eq!((profiles[4].digits, profiles[4].period), (7, 60));
    assert!(profiles
        .iter()
        .all(|p| p.window.is_none() && p.emergency_codes.is_empty()));
    // Counter-based lines: bob's counter 5 is unused (no LASTOTP); hank's was used.
    let kinds: Vec<(ProfileKind, Option<u64>, u8)> = profiles
        .iter()
        .map(|p| (p.kind, p.counter, p.digits))
        .collect();
    assert_eq!(kinds[1], (ProfileKind::Hotp, Some(5), 6));
    assert_eq!(kinds[5], (ProfileKind::Hotp, Some(6), 8));
    assert!(kinds[0].0 == ProfileKind::Totp && kinds[0].1.is_none());
    assert_eq!(
        profiles[0].secret.expose(),
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    );
    assert_eq!(report.counts(), (5, 4, 1));
    let human = report.human();
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(lines.len(), 6, "{human}");
    assert!(
        lines[0].starts_with("line 4 (carol): skipped: the line has a password"),
        "{human}"
    );
    assert_eq!(
        lines[1],
        "line 5 (ghost): skipped: no such account: 'ghost'"
    );
    assert_eq!(
        lines[2],
        "line 6 (dave): skipped: the secret is not hexadecimal"
    );
    assert!(
        lines[3].starts_with("line 10 (alice): skipped: account 'alice' is on line 2"),
        "{human}"
    );
    assert_eq!(
        lines[4],
        "line 11 (gina): failed: account 'gina' already has a TOTP profile"
    );
    assert_eq!(
        lines[5],
        "Imported 5, skipped 4, failed 1 (/etc/users.oath)."
    );
    assert!(!human.contains("secret ") || !human.contains(HEX));

    // The first refusal decides the exit status; the rest still went in.
    let error = report.exit_error().unwrap();
    assert_eq!(error.code, ErrorCode::AlreadyExists);
    assert_eq!(error.target.as_deref(), Some("account"));
    assert!(
        error
            .message
            .starts_with("the agent refused 1 of 6 profiles; first: line 11 (gina)"),
        "{}",
        error.message
    );

    let text = report.to_json();
    assert!(
        text.starts_with(
            "{\"source\":\"oath\",\"file\":\"/etc/users.oath\",\"dry_run\":false,\
             \"imported\":[\"alice\",\"bob\",\"erin\",\"frank\",\"hank\"],\"skipped\":[{\"line\":4,\
             \"account\":\"carol\",\"error\":{\"code\":\"failed_precondition\","
        ),
        "{text}"
    );
    assert!(text.ends_with(",\"target\":\"account\"}}"), "{text}");
    let value = serde_json::from_str::<Value>(&text).unwrap();
    assert_eq!(
        value["imported"],
        json!(["alice", "bob", "erin", "frank", "hank"])
    );
    assert_eq!(value["skipped"].as_array().unwrap().len(), 4);
    assert_eq!(value["skipped"][0]["line"], 4);
    assert_eq!(value["skipped"][0]["account"], "carol");
    assert_eq!(value["skipped"][0]["error"]["code"], "failed_precondition");
    assert_eq!(value["skipped"][0]["error"]["target"], "password");
    assert_eq!(value["skipped"][1]["error"]["code"], "not_found");
    assert_eq!(value["skipped"][2]["error"]["target"], "secret");
    assert_eq!(value["failed"][0]["line"], 11);
    assert_eq!(value["error"]["code"], "already_exists");
    let mut keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["dry_run", "error", "failed", "file", "imported", "skipped", "source"]
    );
    assert!(!value.to_string().contains(HEX));
}

#[test]
fn usersfile_dry_run_sends_nothing() {
    let mut fake = oath_fake();
    let report = import(&mut fake, &["oath", "/etc/users.oath", "--dry-run"]).unwrap();
    assert!(fake.requests.is_empty());
    assert_eq!(report.counts(), (6, 4, 0));
    assert_eq!(report.exit_error(), None);
    assert!(report
        .human()
        .ends_with("Dry run: 6 to import, 4 skipped; nothing was sent (/etc/users.oath).\n"));
}

#[test]
fn usersfile_all_skipped_fails_with_the_first_reason() {
    let mut fake =
        Fake::with_accounts(&["bob"]).file("/f", &format!("HOTP/T30 bob pw {HEX}\nnonsense\n"));
    let report = import(&mut fake, &["oath", "/f"]).unwrap();
    assert!(fake.requests.is_empty());
    let error = report.exit_error().unwrap();
    assert_eq!(error.code, ErrorCode::FailedPrecondition);
    assert!(error
        .message
        .starts_with("no line could be imported; first: line 1 (bob)"));
    // An empty file is nothing to do, not a failure.
    let mut fake = Fake::default().file("/empty", "# nothing\n");
    let report = import(&mut fake, &["oath", "/empty"]).unwrap();
    assert_eq!(report.counts(), (0, 0, 0));
    assert_eq!(report.exit_error(), None);
}

#[test]
fn usersfile_nss_is_asked_once_per_account() {
    let text: String = (0..50)
        .map(|i| format!("HOTP/T30 user{} - {HEX}\n", i % 5))
        .collect();
    let mut fake =
        Fake::with_accounts(&["user0", "user1", "user2", "user3", "user4"]).file("/f", &text);
    let report = import(&mut fake, &["oath", "/f"]).unwrap();
    assert_eq!(fake.lookups, 5);
    assert_eq!(report.counts(), (5, 45, 0));
}

#[test]
fn a_batch_refused_as_a_whole_goes_on_an_unreachable_agent_stops() {
    let mut fake = oath_fake();
    fake.fail_with = Some(ApiError::internal("boom"));
    let report = import(&mut fake, &["oath", "/etc/users.oath"]).unwrap();
    assert_eq!(report.counts(), (0, 4, 6));
    assert_eq!(report.exit_error().unwrap().code, ErrorCode::Internal);

    let mut fake = oath_fake();
    fake.fail_with = Some(ApiError::new(ErrorCode::Unavailable, "agent not reachable"));
    let error = import(&mut fake, &["oath", "/etc/users.oath"]).unwrap_err();
    assert_eq!(error.code, ErrorCode::Unavailable);
    assert!(
        error.message.contains("0 of 6 profiles were imported"),
        "{}",
        error.message
    );
}
