//! Runs the built `pam-totp` binary: without an agent, with bad input, and against a tiny fake
//! agent that answers one frame with a canned response.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pam_totp_proto::frame::{read_frame, write_frame, MAX_FRAME_LEN};
use pam_totp_proto::{
    Algorithm, ApiError, EnrollReply, ErrorCode, ProfileKind, ProfileView, Reply, Response,
    SecretString,
};
use serde_json::Value;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread::JoinHandle;

const MISSING_SOCKET: &str = "/nonexistent-pam-totp-dir/agent.sock";

fn pam_totp(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pam-totp"));
    command.args(args).env_remove("PAM_TOTP_SOCKET");
    command
}

fn run(args: &[&str]) -> Output {
    pam_totp(args).output().expect("binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("utf-8 stderr")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

/// Checks the contract's error shape, exit status and one-line stderr; returns the target.
fn assert_error(output: &Output, code: ErrorCode) -> Option<String> {
    assert_eq!(
        output.status.code(),
        Some(code.exit_code()),
        "stdout: {} stderr: {}",
        stdout(output),
        stderr(output)
    );
    let value = json(output);
    let top = value.as_object().expect("object");
    assert_eq!(top.len(), 1);
    let error = top["error"].as_object().expect("error object");
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "target"]);
    assert_eq!(error["code"], code.as_str());
    let err = stderr(output);
    assert!(err.starts_with("pam-totp: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    error["target"].as_str().map(str::to_owned)
}

fn profile(account: &str) -> ProfileView {
    ProfileView {
        id: 1,
        account: account.into(),
        uid: 1000,
        kind: ProfileKind::Totp,
        counter: None,
        owner: "testhost".into(),
        scope: "host".into(),
        verified: true,
        enabled: true,
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: Some(30),
        sha_fingerprint: "0f".repeat(32),
        comment: Some("laptop".into()),
        created_at: "2024-05-01T10:00:00Z".into(),
        changed_at: "2024-05-01T10:00:00Z".into(),
        verified_at: Some("2024-05-01T10:01:00Z".into()),
        last_used_at: None,
        failed_attempts: 0,
        locked_until: None,
        blocked_sources: vec![],
        emergency_codes_remaining: 10,
        can: vec!["show".into(), "verify".into(), "remove".into()],
    }
}

/// A fake agent answering exactly one request; joining yields the request it received.
struct FakeAgent {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    thread: JoinHandle<Value>,
}

impl FakeAgent {
    fn answering(response: &Response) -> Self {
        Self::answering_raw(serde_json::to_vec(response).expect("encodes"))
    }

    fn answering_raw(payload: Vec<u8>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let request = read_frame(&mut stream, MAX_FRAME_LEN).expect("request frame");
            write_frame(&mut stream, &payload).expect("reply");
            serde_json::from_slice(&request).expect("request is JSON")
        });
        Self {
            _dir: dir,
            socket,
            thread,
        }
    }

    fn socket(&self) -> &str {
        self.socket.to_str().expect("utf-8 path")
    }

    fn request(self) -> Value {
        self.thread.join().expect("fake agent thread")
    }
}

#[test]
fn missing_agent_is_unavailable_and_named() {
    let output = run(&["--socket", MISSING_SOCKET, "show", "alice", "--json"]);
    assert_eq!(assert_error(&output, ErrorCode::Unavailable), None);
    assert!(stderr(&output).contains(MISSING_SOCKET));
    assert!(json(&output)["error"]["message"]
        .as_str()
        .unwrap()
        .contains(MISSING_SOCKET));

    // Human mode: nothing on stdout.
    let output = run(&["--socket", MISSING_SOCKET, "list"]);
    assert_eq!(output.status.code(), Some(8));
    assert!(output.stdout.is_empty());
}

#[test]
fn socket_from_environment_and_flag_precedence() {
    let output = pam_totp(&["list", "--json"])
        .env("PAM_TOTP_SOCKET", "/nonexistent-env/agent.sock")
        .output()
        .unwrap();
    assert_error(&output, ErrorCode::Unavailable);
    assert!(stderr(&output).contains("/nonexistent-env/agent.sock"));

    let output = pam_totp(&["list", "--json", "--socket", MISSING_SOCKET])
        .env("PAM_TOTP_SOCKET", "/nonexistent-env/agent.sock")
        .output()
        .unwrap();
    assert_error(&output, ErrorCode::Unavailable);
    assert!(stderr(&output).contains(MISSING_SOCKET));
}

#[test]
fn bad_input_fails_without_an_agent() {
    let cases: &[(&[&str], &str)] = &[
        (&["enroll", "alice", "--digits", "9"], "digits"),
        (&["enroll", "alice", "--digits", "seven"], "digits"),
        (&["enroll", "alice", "--period", "5"], "period"),
        (&["enroll", "alice", "--algorithm", "md5"], "algorithm"),
        (&["enroll", "alice", "--issuer", "a:b"], "issuer"),
        (&["verify", "alice", "12ab56"], "code"),
        (&["verify", "alice", "123"], "code"),
        (&["verify"], "code"),
        (&["show", "bad:name"], "account"),
        (&["show", "alice", "--fields", "account,secret"], "fields"),
        (&["list", "--fields", "bogus"], "fields"),
        (&["codes", "alice"], "regenerate"),
        (&["set", "alice", "--comment", "a\tb"], "comment"),
        (&["set", "alice"], "comment"),
        (&["disable"], "account"),
        (&["show", "--bogus"], "bogus"),
    ];
    for (args, target) in cases {
        let mut full = vec!["--socket", MISSING_SOCKET, "--json"];
        full.extend_from_slice(args);
        let output = run(&full);
        assert_eq!(
            assert_error(&output, ErrorCode::InvalidArgument).as_deref(),
            Some(*target),
            "{args:?}"
        );
    }
}

#[test]
fn unknown_command_and_missing_command() {
    for args in [&["frobnicate", "--json"][..], &["--json"]] {
        let output = run(args);
        assert_eq!(
            assert_error(&output, ErrorCode::InvalidArgument),
            None,
            "{args:?}"
        );
    }
    let output = run(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert_eq!(stderr(&output).lines().count(), 1);
}

#[test]
fn codes_are_never_echoed_in_errors() {
    for args in [
        &["--json", "verify", "alice", "12345x"][..],
        &["--json", "unlock", "alice", "123456"],
        &["--json", "remove", "alice", "--code", "99999"],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2));
        let code = args
            .iter()
            .find(|a| a.starts_with(|c: char| c.is_ascii_digit()));
        let code = code.unwrap();
        assert!(!stdout(&output).contains(code), "{}", stdout(&output));
        assert!(!stderr(&output).contains(code), "{}", stderr(&output));
    }
}

#[test]
fn help_and_version_exit_zero() {
    for args in [&["--help"][..], &["show", "--help"], &["--version"]] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(!output.stdout.is_empty());
    }
}

#[test]
fn show_json_round_trip() {
    let agent = FakeAgent::answering(&Response::Ok(Reply::Profile(profile("alice"))));
    let output = run(&["show", "alice", "--json", "--socket", agent.socket()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stderr.is_empty());
    let shown = json(&output);
    assert_eq!(shown, serde_json::to_value(profile("alice")).unwrap());
    assert_eq!(shown["type"], "totp");
    assert_eq!(
        agent.request(),
        serde_json::json!({"v": 1, "request": {"op": "show", "account": "alice"}})
    );
}

#[test]
fn show_fields_and_human_output() {
    let agent = FakeAgent::answering(&Response::Ok(Reply::Profile(profile("alice"))));
    let output = run(&[
        "--socket",
        agent.socket(),
        "show",
        "alice",
        "--fields",
        "verified,account,last_used_at",
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        "verified:     true\naccount:      alice\nlast_used_at: -\n"
    );

    let agent = FakeAgent::answering(&Response::Ok(Reply::Profiles(vec![
        profile("alice"),
        profile("bob"),
    ])));
    let output = run(&[
        "--socket",
        agent.socket(),
        "--json",
        "list",
        "--fields",
        "account,uid",
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        "[{\"account\":\"alice\",\"uid\":1000},{\"account\":\"bob\",\"uid\":1000}]\n"
    );
    assert_eq!(
        agent.request()["request"],
        serde_json::json!({"op": "list", "limit": 1000})
    );
}

#[test]
fn verify_sends_the_code_and_reports_activation() {
    let agent = FakeAgent::answering(&Response::Ok(Reply::Profile(profile("alice"))));
    let output = run(&["--socket", agent.socket(), "verify", "alice", "123456"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        "Code accepted; profile for alice is active.\n"
    );
    assert_eq!(
        agent.request()["request"],
        serde_json::json!({"op": "verify", "account": "alice", "code": "123456"})
    );
}

#[test]
fn error_replies_map_to_exit_codes() {
    let cases = [
        (
            &["show", "alice"][..],
            ApiError::not_found("no profile for alice"),
            ErrorCode::NotFound,
        ),
        (
            &["verify", "alice", "123456"],
            ApiError::code_rejected(),
            ErrorCode::CodeRejected,
        ),
        (
            &["verify", "alice", "123456"],
            ApiError::rate_limited(60),
            ErrorCode::RateLimited,
        ),
        (
            &["list"],
            ApiError::permission_denied("only administrators may list profiles"),
            ErrorCode::PermissionDenied,
        ),
    ];
    for (args, error, code) in cases {
        let agent = FakeAgent::answering(&Response::Err(error.clone()));
        let mut full = vec!["--json", "--socket", agent.socket()];
        full.extend_from_slice(args);
        let output = run(&full);
        let target = assert_error(&output, code);
        assert_eq!(target, error.target);
        assert_eq!(json(&output)["error"]["message"], error.message.as_str());
        assert_eq!(stderr(&output), format!("pam-totp: {}\n", error.message));
        agent.request();
    }

    // Human mode: the same exit code, nothing on stdout.
    let agent = FakeAgent::answering(&Response::Err(ApiError::not_found("no profile")));
    let output = run(&["--socket", agent.socket(), "show", "alice"]);
    assert_eq!(output.status.code(), Some(4));
    assert!(output.stdout.is_empty());
    assert_eq!(stderr(&output), "pam-totp: no profile\n");
}

#[test]
fn a_nonsense_reply_is_unavailable() {
    let agent = FakeAgent::answering_raw(b"{\"surprise\":true}".to_vec());
    let output = run(&["--json", "--socket", agent.socket(), "show", "alice"]);
    assert_error(&output, ErrorCode::Unavailable);
    assert!(stderr(&output).contains(agent.socket()));
}

fn enrolled() -> Response {
    Response::Ok(Reply::Enrolled(EnrollReply {
        secret: SecretString::from("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
        otpauth_uri: SecretString::from(
            "otpauth://totp/testhost:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\
             &issuer=testhost&algorithm=SHA1&digits=6&period=30",
        ),
        emergency_codes: vec![
            SecretString::from("11223344"),
            SecretString::from("55667788"),
        ],
        profile: ProfileView {
            verified: false,
            ..profile("alice")
        },
    }))
}

#[test]
fn enroll_json_and_request() {
    let agent = FakeAgent::answering(&enrolled());
    let output = run(&[
        "--socket",
        agent.socket(),
        "enroll",
        "alice",
        "--json",
        "--algorithm",
        "SHA256",
        "--digits",
        "8",
        "--comment",
        "phone",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("{\"secret\":\"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\",\"otpauth_uri\":"));
    let value = json(&output);
    assert_eq!(
        value["emergency_codes"],
        serde_json::json!(["11223344", "55667788"])
    );
    assert_eq!(value["profile"]["verified"], false);
    assert_eq!(
        agent.request()["request"],
        serde_json::json!({
            "op": "enroll", "account": "alice", "algorithm": "SHA256", "digits": 8,
            "period": 30, "issuer": null, "comment": "phone", "replace": false, "code": null
        })
    );
}

#[test]
fn an_hotp_enrollment_sends_its_type_and_counter() {
    let agent = FakeAgent::answering(&enrolled());
    let output = run(&[
        "--socket",
        agent.socket(),
        "enroll",
        "alice",
        "--json",
        "--type",
        "hotp",
        "--counter",
        "5",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        agent.request()["request"],
        serde_json::json!({
            "op": "enroll", "account": "alice", "type": "hotp", "counter": 5,
            "algorithm": "SHA1", "digits": 6, "period": 30, "issuer": null, "comment": null,
            "replace": false, "code": null
        })
    );
}

#[test]
fn enroll_text_without_a_terminal_has_no_qr_code() {
    let agent = FakeAgent::answering(&enrolled());
    let output = run(&["--socket", agent.socket(), "enroll", "alice"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    assert!(text.contains("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"));
    assert!(text.contains("otpauth://totp/testhost:alice?"));
    assert!(text.contains("  11223344\n  55667788\n"));
    assert!(text.contains("pam-totp verify alice CODE"));
    assert!(!text.contains('\u{2588}') && !text.contains('\u{2580}'));
    agent.request();
}

#[test]
fn remove_json_shape() {
    let agent = FakeAgent::answering(&Response::Ok(Reply::Removed {
        account: "alice".into(),
    }));
    let output = run(&["--socket", agent.socket(), "--json", "remove", "alice"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), "{\"removed\":\"alice\"}\n");
    assert_eq!(
        agent.request()["request"],
        serde_json::json!({"op": "remove", "account": "alice", "code": null})
    );
}

#[test]
fn log_and_status_requests() {
    let agent = FakeAgent::answering(&Response::Ok(
        Reply::Log(pam_totp_proto::LogPage::default()),
    ));
    let output = run(&[
        "--socket",
        agent.socket(),
        "log",
        "bob",
        "--since",
        "2026-11-22T10:00:00Z",
        "--limit",
        "5",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "[]\n");
    assert_eq!(
        agent.request()["request"],
        serde_json::json!({"op": "log", "account": "bob", "since": 1_795_341_600, "limit": 5})
    );
    let agent = FakeAgent::answering(&Response::Ok(
        Reply::Log(pam_totp_proto::LogPage::default()),
    ));
    let output = run(&["--socket", agent.socket(), "log"]);
    assert_eq!(stdout(&output), "No entries.\n");
    assert_eq!(
        agent.request()["request"],
        serde_json::json!({"op": "log", "account": null, "since": null, "limit": 100})
    );
    let agent = FakeAgent::answering(&Response::Err(ApiError::permission_denied("no")));
    let output = run(&["--socket", agent.socket(), "status", "--json"]);
    assert_error(&output, ErrorCode::PermissionDenied);
    assert_eq!(
        agent.request()["request"],
        serde_json::json!({"op": "status"})
    );
    for (args, target) in [
        (&["log", "--since", "soon"][..], "since"),
        (&["log", "--limit", "0"], "limit"),
        (&["import", "oath"], "file"),
        (&["import", "oath", "/nonexistent/users.oath"], "file"),
        (&["import", "google-authenticator", "a:b", "/x"], "account"),
    ] {
        let mut full = vec!["--socket", MISSING_SOCKET, "--json"];
        full.extend_from_slice(args);
        let output = run(&full);
        assert_eq!(
            assert_error(&output, ErrorCode::InvalidArgument).as_deref(),
            Some(target),
            "{args:?}"
        );
    }
}

#[test]
fn import_dry_run_needs_no_agent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.oath");
    std::fs::write(
        &file,
        "HOTP root - 3132333435363738393031323334353637383930\n\
         HOTP/T30 root - 3132333435363738393031323334353637383930\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let output = run(&[
        "--socket",
        MISSING_SOCKET,
        "import",
        "oath",
        path,
        "--dry-run",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // The counter-based line is the one imported; the time-based one repeats its account.
    assert!(stdout(&output).starts_with("line 2 (root): skipped: account 'root' is on line 1"));
    assert!(stdout(&output).contains("\nDry run: 1 to import, 1 skipped; nothing was sent ("));
    // Without --dry-run the profile is sent: no agent, exit 8.
    let output = run(&["--socket", MISSING_SOCKET, "--json", "import", "oath", path]);
    assert_error(&output, ErrorCode::Unavailable);
}

/// `pam-totp ARGS...` with `input` on its standard input (a pipe).
fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = pam_totp(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    if let Some(mut stdin) = child.stdin.take() {
        // The CLI may stop reading early (an over-long line): that is its answer.
        let _ = stdin.write_all(input);
    }
    child.wait_with_output().expect("binary runs")
}

#[test]
fn codes_from_standard_input_reach_the_agent() {
    let codes_reply = Reply::Codes(pam_totp_proto::CodesReply {
        emergency_codes: vec![SecretString::from("87651234")],
        profile: profile("alice"),
    });
    let cases: &[(&[&str], &[u8], Reply, Value)] = &[
        (
            &["verify"],
            b"654321\n",
            Reply::Profile(profile("alice")),
            serde_json::json!({"op": "verify", "account": "alice", "code": "654321"}),
        ),
        (
            &["verify", "alice", "-"],
            b"654321\r\n",
            Reply::Profile(profile("alice")),
            serde_json::json!({"op": "verify", "account": "alice", "code": "654321"}),
        ),
        (
            &["remove", "alice", "--code", "-"],
            b"654321\nmore\n",
            Reply::Removed {
                account: "alice".into(),
            },
            serde_json::json!({"op": "remove", "account": "alice", "code": "654321"}),
        ),
        (
            &["codes", "alice", "--regenerate", "--code", "-"],
            b"12345678\n",
            codes_reply,
            serde_json::json!({"op": "regenerate_codes", "account": "alice", "code": "12345678"}),
        ),
    ];
    for (args, input, reply, request) in cases {
        let agent = FakeAgent::answering(&Response::Ok(reply.clone()));
        let mut full = vec!["--json", "--socket", agent.socket()];
        full.extend_from_slice(args);
        let output = run_with_stdin(&full, input);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        let sent = agent.request()["request"].clone();
        let wanted = match request["account"].as_str() {
            // `verify` without USER: the caller's own account, whatever its name.
            Some("alice") if args.len() == 1 => {
                let mut wanted = request.clone();
                wanted["account"] = sent["account"].clone();
                wanted
            }
            _ => request.clone(),
        };
        assert_eq!(sent, wanted, "{args:?}");
        let shown = format!("{}{}", stdout(&output), stderr(&output));
        let code = request["code"].as_str().unwrap();
        assert!(!shown.contains(code), "{args:?}: {shown}");
    }
}

#[test]
fn bad_codes_from_standard_input_fail_before_the_agent() {
    let long = format!("{}\n", "1".repeat(100_000));
    for (args, input) in [
        (&["verify"][..], &b""[..]),
        (&["verify"], b"\n"),
        (&["verify", "-"], b"\r\n"),
        (&["verify", "alice", "-"], b"12a456\n"),
        // One argument is the CODE (here "alice"): refused before anything is read.
        (&["verify", "alice"], b"654321\n"),
        (&["verify", "alice", "-"], b"1234567890\n"),
        (&["verify", "alice", "-"], b"12\xff456\n"),
        (&["verify", "alice", "-"], long.as_bytes()),
        (&["remove", "alice", "--code", "-"], b""),
        (&["codes", "alice", "--regenerate", "--code", "-"], b"x\n"),
        (&["enroll", "alice", "--replace", "--code", "-"], b"\n"),
    ] {
        let mut full = vec!["--json", "--socket", MISSING_SOCKET];
        full.extend_from_slice(args);
        let output = run_with_stdin(&full, input);
        assert_eq!(
            assert_error(&output, ErrorCode::InvalidArgument).as_deref(),
            Some("code"),
            "{args:?} {:?}",
            String::from_utf8_lossy(&input[..input.len().min(20)])
        );
        let message = json(&output)["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        for typed in ["12a456", "1234567890", "1111111111"] {
            assert!(!message.contains(typed), "{args:?}: {message}");
        }
    }
}
