//! The module among others in real PAM stacks (libpam through pamtester): a screen locker
//! running as the user, fail-open chosen by the admin, codes handed over in PAM_AUTHTOK by
//! pam_unix (`try_first_pass`, `use_first_pass`), "password+code" (`forward_pass`), and the
//! lock message.
//!
//! Answers are typed on a terminal (`expect`) where a stack prompts more than once, since
//! libpam's text conversation reads a pipe in one gulp.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::dialog::pamtester_dialog;
use common::*;

const PASSWORD: &str = "Corr3ct-horse";
const PASSWORD_PROMPT: &str = "Password:";

/// `auth CONTROL <module> socket=SOCKET OPTIONS`.
fn module_line(control: &str, socket: &std::path::Path, options: &str) -> String {
    format!(
        "auth {control} {} socket={} {options}",
        module_path().display(),
        socket.display()
    )
    .trim_end()
    .to_owned()
}

#[test]
fn a_screen_locker_running_as_the_user_checks_only_that_account() {
    setup();
    let agent = Agent::start();
    let alice = TestUser::new();
    let bob = TestUser::new();
    let locker = PamService::totp(&agent.socket, "");
    let (a, now) = agent.enroll_active(&alice.name, &[]);
    let (b, _) = agent.enroll_active(&bob.name, &[]);

    // alice's own session: unlocked with her code; a wrong code is refused and counted.
    let wrong = a.wrong_codes(now, 1).remove(0);
    pamtester_as(&alice.name, &locker, &alice.name, &wrong).assert_failure(PAM_AUTH_ERR_TEXT);
    assert_eq!(agent.show(&alice.name)["failed_attempts"], 1);
    pamtester_as(&alice.name, &locker, &alice.name, &a.code(now)).assert_success();
    assert_eq!(agent.show(&alice.name)["failed_attempts"], 0);

    // From alice's process, bob's account fails even with bob's right code ...
    let out = pamtester_as(&alice.name, &locker, &bob.name, &b.code(now));
    out.assert_failure(PAM_AUTH_ERR_TEXT);
    // ... which was neither used up nor counted against bob.
    let shown = agent.show(&bob.name);
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
    pamtester(&locker, &bob.name, &b.code(now)).assert_success();
}

#[test]
fn fail_open_is_the_admins_choice_in_the_stack() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    let gone = agent.dir().join("no-agent-here.sock");
    let fail_open = "[success=ok authinfo_unavail=ignore default=die]";
    let permit = "auth required pam_permit.so".to_owned();

    // Agent unreachable: the fail-open stack lets the login through ...
    let open_down = PamService::new(&[module_line(fail_open, &gone, ""), permit.clone()]);
    pamtester(&open_down, &user.name, &enrolled.code(now)).assert_success();
    // ... a plain `required` fails closed, saying why.
    let closed_down = PamService::new(&[module_line("required", &gone, ""), permit.clone()]);
    pamtester(&closed_down, &user.name, &enrolled.code(now))
        .assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);

    // With the agent up, fail-open is not "anything goes": a wrong code still fails.
    let open_up = PamService::new(&[module_line(fail_open, &agent.socket, ""), permit]);
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    pamtester(&open_up, &user.name, &wrong).assert_failure(PAM_AUTH_ERR_TEXT);
    let stranger = TestUser::new();
    pamtester(&open_up, &stranger.name, "123456").assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester(&open_up, &user.name, &enrolled.code(now)).assert_success();
}

#[test]
fn try_first_pass_prompts_when_the_stacked_token_is_a_password() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    user.set_password(PASSWORD);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    let service = PamService::new(&[
        "auth required pam_unix.so nodelay".to_owned(),
        module_line("required", &agent.socket, "try_first_pass"),
    ]);

    // pam_unix's password is stacked, is not a code, so the module asks for one.
    let out = pamtester_dialog(
        &service.name,
        &user.name,
        &[
            (PASSWORD_PROMPT, PASSWORD),
            (DEFAULT_PROMPT, &enrolled.code(now)),
        ],
    );
    out.assert_pam_success();
    assert_eq!(out.answered, 2, "{out}");
    // The password never reached the agent as a code (it would count as a failure).
    assert_eq!(agent.show(&user.name)["failed_attempts"], 0);

    // A right password and a wrong code: refused.
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    pamtester_dialog(
        &service.name,
        &user.name,
        &[(PASSWORD_PROMPT, PASSWORD), (DEFAULT_PROMPT, &wrong)],
    )
    .assert_pam_failure(PAM_AUTH_ERR_TEXT);
    assert_eq!(agent.show(&user.name)["failed_attempts"], 1);
}

#[test]
fn a_stacked_code_is_taken_without_a_prompt() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    user.set_password(PASSWORD);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);

    // The code is typed at pam_unix's prompt (an `optional` pam_unix keeps what was typed
    // as PAM_AUTHTOK even though it is not the password).
    for (option, step) in [("try_first_pass", now), ("use_first_pass", now + 30)] {
        let service = PamService::new(&[
            "auth optional pam_unix.so nodelay".to_owned(),
            module_line("required", &agent.socket, option),
        ]);
        let out = pamtester_dialog(
            &service.name,
            &user.name,
            &[(PASSWORD_PROMPT, &enrolled.code(step))],
        );
        out.assert_pam_success();
        assert_eq!(out.count(DEFAULT_PROMPT), 0, "{option} prompted: {out}");
    }
}

#[test]
fn use_first_pass_never_prompts_and_never_sends_a_password() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    user.set_password(PASSWORD);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);

    // The stacked token is the password: refused without a prompt, and not sent.
    let after_unix = PamService::new(&[
        "auth optional pam_unix.so nodelay".to_owned(),
        module_line("required", &agent.socket, "use_first_pass"),
    ]);
    let out = pamtester_dialog(&after_unix.name, &user.name, &[(PASSWORD_PROMPT, PASSWORD)]);
    out.assert_pam_failure(PAM_AUTH_ERR_TEXT);
    assert_eq!(out.count(DEFAULT_PROMPT), 0, "{out}");
    assert_eq!(agent.show(&user.name)["failed_attempts"], 0);

    // Nothing stacked at all: refused without a prompt.
    let alone = PamService::new(&[
        "auth required pam_permit.so".to_owned(),
        module_line("required", &agent.socket, "use_first_pass"),
    ]);
    let out = pamtester(&alone, &user.name, &enrolled.code(now));
    out.assert_failure(PAM_AUTH_ERR_TEXT);
    assert!(!out.output.contains(DEFAULT_PROMPT), "{out}");

    // try_first_pass with nothing stacked falls back to its prompt.
    let try_alone = PamService::new(&[
        "auth required pam_permit.so".to_owned(),
        module_line("required", &agent.socket, "try_first_pass"),
    ]);
    let out = pamtester(&try_alone, &user.name, &enrolled.code(now));
    out.assert_success();
    assert!(out.output.contains(DEFAULT_PROMPT), "{out}");
}

#[test]
fn forward_pass_hands_the_password_to_pam_unix() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let other = TestUser::new();
    user.set_password(PASSWORD);
    other.set_password(PASSWORD);
    let service = PamService::new(&[
        module_line("requisite", &agent.socket, "forward_pass"),
        "auth required pam_unix.so try_first_pass nodelay".to_owned(),
    ]);
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);

    // "password+code" in one answer: both checked, one prompt.
    let out = pamtester_dialog(
        &service.name,
        &user.name,
        &[(DEFAULT_PROMPT, &format!("{PASSWORD}{}", enrolled.code(now)))],
    );
    out.assert_pam_success();
    assert_eq!(out.count(PASSWORD_PROMPT), 0, "{out}");

    // Only the code typed: nothing is handed on, so pam_unix asks for the password itself.
    let out = pamtester_dialog(
        &service.name,
        &user.name,
        &[
            (DEFAULT_PROMPT, &enrolled.code(now + 30)),
            (PASSWORD_PROMPT, PASSWORD),
        ],
    );
    out.assert_pam_success();
    assert_eq!(out.answered, 2, "{out}");

    // A wrong password with a right code: the code passes, pam_unix refuses.
    let (other_enrolled, now) = agent.enroll_active(&other.name, &[]);
    let out = pamtester_dialog(
        &service.name,
        &other.name,
        &[(
            DEFAULT_PROMPT,
            &format!("Wr0ng-horse{}", other_enrolled.code(now)),
        )],
    );
    out.assert_pam_failure(PAM_AUTH_ERR_TEXT);
    assert_eq!(out.count(PASSWORD_PROMPT), 0, "{out}");
    agent
        .cli(&["verify", &other.name, &other_enrolled.code(now)])
        .err(9, "code_rejected");
}

/// Lockout defaults with a long first lock, so it cannot expire during the test.
const LONG_LOCK: &str = "\
self_enroll = true
window = 1

[lockout]
threshold = 5
base_seconds = 600
max_seconds = 900
";

#[test]
fn a_locked_account_is_told_when_to_try_again() {
    setup();
    let agent = Agent::with_config(LONG_LOCK);
    let user = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&user.name, &[]);
    for code in enrolled.wrong_codes(now, 5) {
        let out = pamtester(&service, &user.name, &code);
        assert!(!out.success, "a wrong code succeeded: {out}");
    }

    for out in [
        pamtester(&service, &user.name, &enrolled.code(now)),
        pamtester_as(&user.name, &service, &user.name, &enrolled.code(now)),
    ] {
        out.assert_failure(PAM_MAXTRIES_TEXT);
        assert!(
            out.output.contains("Too many failed attempts") && out.output.contains("try again in"),
            "the lock message is missing: {out}"
        );
    }
}
