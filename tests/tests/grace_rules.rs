//! Which code logins earn `grace=SECONDS` (issue 10, item 6). Grace rests on PAM items, and
//! only a root caller (sshd, sudo, su) vouches for those: a login by a local user's own
//! pamtester, whatever service, remote host and tty it claims, earns nothing for a root-run
//! login. The remote user is part of the place (grace earned for ruser alice does not pass
//! ruser bob), and a login with neither a tty nor a remote host never gets grace (nothing
//! tells one such login from another).
//!
//! Every "needs a code" check types a wrong code: with grace the module does not even read
//! it (success), without grace it is checked and refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

const HOST: &str = "198.51.100.44";
const TTY: &str = "pts/37";

/// What every test here starts from: an agent, an active account, a PAM service with the
/// module's `options`, and `wrong` wrong codes.
struct Fixture {
    _agent: Agent,
    user: TestUser,
    service: PamService,
    enrolled: Enrolled,
    now: u64,
    wrong: Vec<String>,
}

impl Fixture {
    fn with(options: &str, wrong: usize) -> Self {
        setup();
        let agent = Agent::start();
        let user = TestUser::new();
        let service = PamService::totp(&agent.socket, options);
        let (enrolled, now) = agent.enroll_active(&user.name, &[]);
        let wrong = enrolled.wrong_codes(now, wrong);
        Self {
            _agent: agent,
            user,
            service,
            enrolled,
            now,
            wrong,
        }
    }
}

/// A root-run login (sshd's or sudo's view) with these PAM items.
fn as_root(service: &PamService, user: &str, code: &str, items: &[(&str, &str)]) -> PamOut {
    pamtester_with(None, service, user, code, items)
}

/// The login asked for a code and refused the wrong one typed.
#[track_caller]
fn assert_needs_code(out: &PamOut) {
    out.assert_failure(PAM_AUTH_ERR_TEXT);
    assert!(
        out.output.contains(DEFAULT_PROMPT),
        "expected a prompt (no grace): {out}"
    );
}

/// The login passed on grace: no prompt, the wrong code typed was never read.
#[track_caller]
fn assert_grace(out: &PamOut) {
    out.assert_success();
    assert!(
        !out.output.contains(DEFAULT_PROMPT),
        "a grace pass still prompted: {out}"
    );
}

#[test]
fn root_logins_at_the_same_place_pass_on_grace() {
    let Fixture {
        _agent,
        user,
        service,
        enrolled,
        now,
        wrong,
    } = Fixture::with("grace=60", 4);
    let name = user.name.as_str();
    let place = [("rhost", HOST), ("tty", TTY), ("ruser", "alice")];

    // Nothing earned yet: a code is needed.
    assert_needs_code(&as_root(&service, name, &wrong[0], &place));
    as_root(&service, name, &enrolled.code(now), &place).assert_success();
    // Within the grace period, at the same place: no code.
    assert_grace(&as_root(&service, name, &wrong[1], &place));
    assert_grace(&as_root(&service, name, &wrong[2], &place));
    // Another tty is another place.
    let other_tty = [("rhost", HOST), ("tty", "pts/38"), ("ruser", "alice")];
    assert_needs_code(&as_root(&service, name, &wrong[3], &other_tty));
    // A tty alone (a local console login) is enough to tell the place.
    let tty_only = [("tty", "tty3")];
    as_root(&service, name, &enrolled.code(now + 30), &tty_only).assert_success();
    assert_grace(&as_root(&service, name, &wrong[0], &tty_only));
}

#[test]
fn a_users_own_login_with_forged_items_earns_no_grace_for_root_logins() {
    let Fixture {
        _agent,
        user,
        service,
        enrolled,
        now,
        wrong,
    } = Fixture::with("grace=60", 3);
    let name = user.name.as_str();
    // What sshd would set for a login from HOST; the user's pamtester claims the same.
    let place = [("rhost", HOST), ("tty", TTY), ("ruser", name)];

    // The account's own pamtester (e.g. while it holds a stolen current code, or just its
    // own phone) logs in with forged items ...
    pamtester_with(Some(name), &service, name, &enrolled.code(now), &place).assert_success();
    // ... which must not pre-approve a root-run login from that claimed place.
    assert_needs_code(&as_root(&service, name, &wrong[0], &place));
    // Nor the user's own next login (grace is for root callers' logins only).
    let own = pamtester_with(Some(name), &service, name, &wrong[1], &place);
    assert!(!own.success, "the user's own login passed on grace: {own}");

    // Positive control: a root-run code login at that place does earn grace.
    as_root(&service, name, &enrolled.code(now + 30), &place).assert_success();
    assert_grace(&as_root(&service, name, &wrong[2], &place));
}

#[test]
fn grace_earned_for_one_remote_user_does_not_pass_another() {
    let Fixture {
        _agent,
        user,
        service,
        enrolled,
        now,
        wrong,
    } = Fixture::with("grace=60", 3);
    let name = user.name.as_str();
    let alice = [("rhost", HOST), ("tty", TTY), ("ruser", "alice")];
    let bob = [("rhost", HOST), ("tty", TTY), ("ruser", "bob")];
    let nobody = [("rhost", HOST), ("tty", TTY)];

    as_root(&service, name, &enrolled.code(now), &alice).assert_success();
    assert_needs_code(&as_root(&service, name, &wrong[0], &bob));
    assert_needs_code(&as_root(&service, name, &wrong[1], &nobody));
    // Control: alice herself still passes.
    assert_grace(&as_root(&service, name, &wrong[2], &alice));
}

#[test]
fn without_a_tty_or_a_remote_host_every_login_needs_a_code() {
    let Fixture {
        _agent,
        user,
        service,
        enrolled,
        now,
        wrong,
    } = Fixture::with("grace=60", 4);
    let name = user.name.as_str();

    // No items at all (only the service).
    pamtester(&service, name, &enrolled.code(now)).assert_success();
    assert_needs_code(&pamtester(&service, name, &wrong[0]));

    // A remote user alone does not tell the place either.
    let ruser_only = [("ruser", "alice")];
    as_root(&service, name, &enrolled.code(now + 30), &ruser_only).assert_success();
    assert_needs_code(&as_root(&service, name, &wrong[1], &ruser_only));

    // Empty tty and remote host are no tty and no remote host (an emergency code: the
    // window's TOTP steps are used up).
    let empty = [("rhost", ""), ("tty", ""), ("ruser", "alice")];
    let emergency = &enrolled.emergency_codes;
    as_root(&service, name, &emergency[0], &empty).assert_success();
    assert_needs_code(&as_root(&service, name, &wrong[2], &empty));

    // Control: the same service with a tty does get grace (an emergency code login earns it
    // like a TOTP one; the time steps of this test's window are used up).
    let with_tty = [("tty", TTY), ("ruser", "alice")];
    as_root(&service, name, &emergency[1], &with_tty).assert_success();
    assert_grace(&as_root(&service, name, &wrong[3], &with_tty));
}

#[test]
fn grace_passes_do_not_renew_the_grace_period() {
    let Fixture {
        _agent,
        user,
        service,
        enrolled,
        now,
        wrong,
    } = Fixture::with("grace=3", 2);
    let name = user.name.as_str();
    let place = [("rhost", HOST), ("tty", TTY)];

    as_root(&service, name, &enrolled.code(now), &place).assert_success();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_grace(&as_root(&service, name, &wrong[0], &place));
    // 3.6 s after the code login (2.1 s after the grace pass): the code login's grace is
    // over, and the grace pass earned none of its own.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_needs_code(&as_root(&service, name, &wrong[1], &place));
}
