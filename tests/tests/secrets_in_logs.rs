//! No secret, code or emergency code is ever written to a log: a whole profile's life with the
//! module's `debug` option, collecting the agent's log, every CLI message, pamtester's output
//! and the module's syslog lines (captured through a private /dev/log), then searching all of
//! it for the base32 secret (and its bytes in hex) and every code typed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::faults::SyslogCapture;
use common::*;

/// Whether `needle` (digits) occurs in `text` as a number of its own, not inside a longer one.
fn contains_number(text: &str, needle: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(needle).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + needle.len()).copied();
        !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit())
    })
}

/// What the scenario wrote where an operator (or an attacker reading logs) could see it.
#[derive(Default)]
struct Collected {
    text: String,
    /// Everything that must not appear in it.
    secrets: Vec<String>,
    logins: usize,
}

impl Collected {
    /// A CLI run: stderr always, stdout unless the command's job is to show secrets.
    fn cli(&mut self, out: CliOut, shows_secrets: bool) -> CliOut {
        // Headers name the command, not its arguments (which hold the codes).
        let words: Vec<&str> = out.command.split_whitespace().collect();
        let socket_end = words
            .iter()
            .position(|w| *w == "--socket")
            .map_or(0, |i| (i + 2).min(words.len()));
        let subcommand = words[socket_end..].iter().find(|w| **w != "--json");
        let what = format!(
            "{} {}",
            words[..socket_end].join(" "),
            subcommand.unwrap_or(&"")
        );
        self.text
            .push_str(&format!("\n--- {what} ... (stderr) ---\n{}", out.stderr));
        if !shows_secrets {
            self.text
                .push_str(&format!("\n--- {what} ... (stdout) ---\n{}", out.stdout));
        }
        out
    }

    fn login(&mut self, out: PamOut) -> PamOut {
        self.logins += 1;
        self.text
            .push_str(&format!("\n--- login #{} ---\n{}", self.logins, out.output));
        out
    }

    fn code(&mut self, code: &str) -> String {
        self.secrets.push(code.to_owned());
        code.to_owned()
    }
}

#[test]
fn no_secret_or_code_reaches_any_log() {
    setup();
    let agent = Agent::start();
    let capture = SyslogCapture::start();
    let user = TestUser::new();
    let name = user.name.as_str();
    let service = PamService::totp(&agent.socket, "debug");
    let mut seen = Collected::default();

    // Enroll (8 digits, so no code can be mistaken for a pid or a uid in a log).
    let reply = seen.cli(agent.cli(&["enroll", name, "--digits", "8"]), true);
    let enrolled = Enrolled::from_reply(name, &reply);
    assert_eq!(enrolled.digits, 8);
    let secret = enrolled.secret.trim_end_matches('=').to_owned();
    let bytes = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &secret)
        .expect("the secret is base32");
    for code in &enrolled.emergency_codes {
        seen.code(code);
    }

    // Verify, then log in: right, replayed, wrong, malformed, emergency (twice).
    let now = wait_for_fresh_step(enrolled.period);
    let first = seen.code(&enrolled.code(now - 30));
    seen.cli(agent.cli(&["verify", name, &first]), false).ok();
    let current = seen.code(&enrolled.code(now));
    seen.login(capture.pamtester(&service, name, &current))
        .assert_success();
    seen.login(capture.pamtester(&service, name, &current))
        .assert_failure(PAM_AUTH_ERR_TEXT);
    let wrong = enrolled.wrong_codes(now, 3);
    for code in &wrong {
        seen.code(code);
    }
    seen.login(capture.pamtester(&service, name, &wrong[0]))
        .assert_failure(PAM_AUTH_ERR_TEXT);
    let malformed = seen.code("84x1r9q27");
    seen.login(capture.pamtester(&service, name, &malformed))
        .assert_failure(PAM_AUTH_ERR_TEXT);
    let emergency = enrolled.emergency_codes[0].clone();
    seen.login(capture.pamtester(&service, name, &emergency))
        .assert_success();
    seen.login(capture.pamtester(&service, name, &emergency))
        .assert_failure(PAM_AUTH_ERR_TEXT);

    // The CLI refusing codes, as root and as the account itself, in both output modes.
    seen.cli(agent.cli(&["verify", name, &wrong[1]]), false)
        .err(9, "code_rejected");
    let human = seen.cli(agent.cli_human(&["verify", name, &wrong[1]]), false);
    assert_eq!(human.code, 9, "{human}");
    // (Four failures so far: unlock before the lock's threshold.)
    seen.cli(agent.cli(&["unlock", name]), false).ok();
    seen.cli(agent.cli_as(name, &["verify", &wrong[2]]), false)
        .err(9, "code_rejected");
    seen.cli(agent.cli(&["verify", name, &emergency]), false)
        .err(9, "code_rejected");
    seen.cli(agent.cli(&["unlock", name]), false).ok();

    // New emergency codes; one of them logs in.
    let regenerated = seen.cli(agent.cli(&["codes", name, "--regenerate"]), true);
    let codes: Vec<String> = regenerated.ok()["emergency_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no emergency_codes: {regenerated}"))
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    for code in &codes {
        seen.code(code);
    }
    seen.login(capture.pamtester(&service, name, &codes[0]))
        .assert_success();
    seen.cli(agent.cli(&["set", name, "--comment", "phone"]), false)
        .ok();
    seen.cli(agent.cli(&["show", name]), false).ok();
    seen.cli(agent.cli_human(&["show", name]), false);
    seen.cli(agent.cli(&["list"]), false).ok();

    // The account removes itself with a code; then nothing is enrolled.
    let last = seen.code(&enrolled.code(now + 30));
    seen.cli(agent.cli_as(name, &["remove", "--code", &last]), false)
        .ok();
    seen.login(capture.pamtester(&service, name, &codes[1]))
        .assert_failure(PAM_AUTH_ERR_TEXT);

    // The module logged through syslog: at least one line per login.
    let syslog = capture.lines();
    assert!(
        syslog.len() >= seen.logins,
        "{} syslog lines for {} logins:\n{}",
        syslog.len(),
        seen.logins,
        syslog.join("\n")
    );
    assert!(
        syslog
            .iter()
            .any(|l| l.contains("pam_totp") && l.contains(name)),
        "no pam_totp line about {name} in the syslog capture:\n{}",
        syslog.join("\n")
    );

    let everything = format!(
        "{}\n--- agent log ---\n{}\n--- syslog ---\n{}",
        seen.text,
        agent.log_text(),
        syslog.join("\n")
    );
    let mut leaks = Vec::new();
    for (what, needle) in [
        ("the base32 secret", secret.clone()),
        (
            "the base32 secret (lower case)",
            secret.to_ascii_lowercase(),
        ),
        ("the secret in hex", hex::encode(&bytes)),
        ("the secret in hex (upper case)", hex::encode_upper(&bytes)),
    ] {
        if everything.contains(&needle) {
            leaks.push(format!("{what} {needle}"));
        }
    }
    for code in &seen.secrets {
        let leaked = if code.bytes().all(|b| b.is_ascii_digit()) {
            contains_number(&everything, code)
        } else {
            everything.contains(code.as_str())
        };
        if leaked {
            leaks.push(format!("code {code}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets in the logs: {leaks:?}\n--- everything collected ---\n{everything}"
    );
}
