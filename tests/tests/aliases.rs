//! Other names for an enrolled account (issue 10, item 1). Every name that resolves through
//! NSS to the uid of an enrolled account (a second passwd entry made with `useradd -o -u`) is
//! held to that account's profile: it needs that profile's code, and uses it up. A name NSS
//! does not know (a case variant on a files-backend host, a made-up name) is refused, never
//! ignored, so `nullok` does not let it through.
//!
//! Through pamtester, real sudo (sudo names its user by uid, so it authenticates as the first
//! passwd entry of that uid) and a real sshd (which authenticates the name the client sent).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::sshd::{login_mark, Sshd, KEY_THEN_CODE};
use common::sudo::{sudo, SudoRule};
use common::*;
use nix::unistd::{Uid, User};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// pam_strerror(PAM_USER_UNKNOWN), as pamtester prints it.
const PAM_USER_UNKNOWN_TEXT: &str = "User not known to the underlying authentication module";

/// A second passwd entry for an existing uid (`useradd -o -u UID`); `userdel`'d on drop.
/// Named like the harness's accounts (`ptt<pid>x<n>`, with n from 900 up so it never meets
/// a [`TestUser`] name), so a crashed run's leftovers are removed by the next one.
struct SameUid {
    name: String,
}

impl SameUid {
    fn new(uid: u32, shell: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(900);
        let name = format!(
            "ptt{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut last = String::new();
        for _ in 0..50 {
            let out = Command::new(require_tool("useradd"))
                .args(["-M", "-s", shell, "-c", "pam-totp e2e alias", "-o", "-u"])
                .arg(uid.to_string())
                .arg(&name)
                .output()
                .expect("cannot run useradd");
            if out.status.success() {
                let found = User::from_name(&name)
                    .ok()
                    .flatten()
                    .map(|u| u.uid.as_raw());
                assert_eq!(found, Some(uid), "useradd -o -u {uid} {name}: getpwnam");
                return Self { name };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.code() == Some(9) {
                delete_account("userdel", &name);
            }
            // Most likely /etc/passwd is locked by another test thread's useradd.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("useradd -o -u {uid} {name} keeps failing: {last}");
    }
}

impl Drop for SameUid {
    fn drop(&mut self) {
        delete_account("userdel", &self.name);
    }
}

fn nss_knows(name: &str) -> bool {
    User::from_name(name).ok().flatten().is_some()
}

#[test]
fn an_alias_needs_the_code_of_the_account_it_shares_a_uid_with() {
    setup();
    let agent = Agent::start();
    let zed = TestUser::new();
    let alias = SameUid::new(zed.uid, "/usr/sbin/nologin");
    let with_nullok = PamService::totp_then_permit(&agent.socket, "nullok");
    let plain = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&zed.name, &[]);
    let wrong = enrolled.wrong_codes(now, 2);

    // The alias is no unenrolled account: nullok does not wave it through, it is asked for
    // a code and a wrong one fails ...
    let out = pamtester(&with_nullok, &alias.name, &wrong[0]);
    out.assert_failure(PAM_AUTH_ERR_TEXT);
    assert!(
        out.output.contains(DEFAULT_PROMPT),
        "the alias was not asked for a code: {out}"
    );
    pamtester(&plain, &alias.name, &wrong[1]).assert_failure(PAM_AUTH_ERR_TEXT);
    // ... and the failures count against zed's profile.
    let shown = agent.show(&zed.name);
    assert_eq!(shown["failed_attempts"], 2, "{shown}");

    // zed's current code lets the alias in, and is used up by it: zed cannot replay it.
    let code = enrolled.code(now);
    pamtester(&with_nullok, &alias.name, &code).assert_success();
    pamtester(&plain, &zed.name, &code).assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester(&plain, &alias.name, &code).assert_failure(PAM_AUTH_ERR_TEXT);
    let shown = agent.show(&zed.name);
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
    assert!(
        shown["last_used_at"].as_str().is_some_and(is_rfc3339_utc),
        "the alias's login did not use zed's profile: {shown}"
    );

    // Without nullok, too: the next step's code, typed for the alias.
    let next = enrolled.code(now + enrolled.period);
    pamtester(&plain, &alias.name, &next).assert_success();
    pamtester(&with_nullok, &zed.name, &next).assert_failure(PAM_AUTH_ERR_TEXT);

    // A request naming the alias acts on the profile it is held to; no profile of its own
    // was made.
    let shown = agent.show(&alias.name);
    assert_eq!(
        shown["account"].as_str(),
        Some(zed.name.as_str()),
        "{shown}"
    );
    assert_eq!(shown["uid"], zed.uid, "{shown}");
    assert_eq!(agent.listed_accounts(), vec![zed.name.clone()]);
}

#[test]
fn names_nss_does_not_know_are_refused_even_with_nullok() {
    setup();
    let agent = Agent::start();
    let zed = TestUser::new();
    let with_nullok = PamService::totp_then_permit(&agent.socket, "nullok");
    let plain = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&zed.name, &[]);
    let code = enrolled.code(now);
    let used_before = agent.show(&zed.name)["last_used_at"].clone();

    let upper = zed.name.to_ascii_uppercase();
    assert!(
        !nss_knows(&upper),
        "precondition: this host's NSS resolves the case variant {upper}; the test expects \
         a files backend, where it resolves to nothing"
    );
    let unknown = format!("{}nosuch", zed.name);
    assert!(
        !nss_knows(&unknown),
        "precondition: {unknown} must not exist"
    );

    for name in [&upper, &unknown] {
        // Not PAM_IGNORE: the stack with pam_permit after the module must not succeed.
        pamtester(&with_nullok, name, &code).assert_failure(PAM_USER_UNKNOWN_TEXT);
        pamtester(&plain, name, &code).assert_failure(PAM_USER_UNKNOWN_TEXT);
        // The same from a local user's own pamtester (the agent does its own lookup then).
        pamtester_as(&zed.name, &with_nullok, name, &code).assert_failure(PAM_USER_UNKNOWN_TEXT);
    }

    // Nothing was checked, so zed's code was not used up, and nothing was counted.
    let shown = agent.show(&zed.name);
    assert_eq!(shown["failed_attempts"], 0, "{shown}");
    assert_eq!(shown["last_used_at"], used_before, "{shown}");
    pamtester(&plain, &zed.name, &code).assert_success();

    // The CLI refuses names that resolve to nothing, too.
    agent.cli(&["show", &upper]).err(4, "not_found");
    agent.cli(&["verify", &upper, &code]).err(4, "not_found");
}

#[test]
fn sudo_as_an_alias_needs_the_code_of_the_enrolled_account() {
    setup();
    let agent = Agent::start();
    // sudo takes its user's name from getpwuid(), i.e. the first passwd entry of the uid:
    // that is the alias here, and the enrolled account is the later entry.
    let alias = TestUser::new();
    let zed = SameUid::new(alias.uid, "/usr/sbin/nologin");
    let service = PamService::new(&[
        totp_line(&agent.socket, "nullok"),
        "auth required pam_permit.so".to_owned(),
        "account required pam_permit.so".to_owned(),
        "session required pam_permit.so".to_owned(),
    ]);
    let _rule = SudoRule::new(&alias.name, &service);
    let (enrolled, now) = agent.enroll_active(&zed.name, &[]);

    // Nothing typed: asked, and refused (PAM_IGNORE would let pam_permit decide).
    let out = sudo(&alias.name, None);
    out.assert_refused();
    assert!(
        out.prompted(),
        "sudo as the alias was not asked for a code: {out}"
    );
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    sudo(&alias.name, Some(&format!("{wrong}\n"))).assert_refused();
    assert_eq!(agent.show(&zed.name)["failed_attempts"], 1);

    // zed's code: root, once.
    let code = enrolled.code(now);
    sudo(&alias.name, Some(&format!("{code}\n"))).assert_root();
    sudo(&alias.name, Some(&format!("{code}\n"))).assert_refused();
    agent
        .cli(&["verify", &zed.name, &code])
        .err(9, "code_rejected");
}

#[test]
fn ssh_as_an_alias_needs_the_code_of_the_enrolled_account() {
    setup();
    let agent = Agent::start();
    let zed = TestUser::new();
    zed.set_shell("/bin/bash");
    let alias = SameUid::new(zed.uid, "/bin/bash");
    let server = Sshd::start(
        &[
            totp_line(&agent.socket, "nullok"),
            "auth required pam_permit.so".to_owned(),
            "account required pam_permit.so".to_owned(),
            "session required pam_permit.so".to_owned(),
        ],
        KEY_THEN_CODE,
    );
    let (enrolled, now) = agent.enroll_active(&zed.name, &[]);
    // The remote command prints `id -un`: the first passwd name of the uid, zed.
    let logged_in = |login: &common::sshd::SshOut| {
        login.dialog.code == 0
            && (login.output().contains(&login_mark(&zed.name))
                || login.output().contains(&login_mark(&alias.name)))
    };

    // The key alone does not do: a wrong code is refused.
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    let login = server.ssh(&alias.name, true, &[(DEFAULT_PROMPT, &wrong)]);
    assert!(
        !logged_in(&login),
        "the alias got in with a wrong code: {login}"
    );
    assert_eq!(
        login.dialog.answered, 1,
        "the alias was not asked for a code: {login}"
    );
    assert_eq!(agent.show(&zed.name)["failed_attempts"], 1);

    // Key and zed's code: logged in; the code is used up.
    let code = enrolled.code(now);
    let login = server.ssh(&alias.name, true, &[(DEFAULT_PROMPT, &code)]);
    assert!(
        logged_in(&login) && login.dialog.answered == 1,
        "the alias with zed's code did not log in: {login}"
    );
    let replay = server.ssh(&zed.name, true, &[(DEFAULT_PROMPT, &code)]);
    assert!(
        !logged_in(&replay),
        "zed replayed the alias's code: {replay}"
    );
}

#[test]
fn an_import_under_an_alias_cannot_give_the_account_a_second_profile() {
    setup();
    let agent = Agent::start();
    let zed = TestUser::new();
    let alias = SameUid::new(zed.uid, "/usr/sbin/nologin");
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&zed.name, &[]);

    // Someone running as zed's uid (no second factor needed for that: a cron job, a web
    // app, a console without the module) writes a google-authenticator file with a secret
    // of their own, and imports it for the alias. For zed's own name that needs
    // `enroll --replace --code`; the alias is held to zed's profile, so the same applies.
    let dir = tempfile::Builder::new()
        .prefix("pamtotp-e2e-alias-import-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.path().join("google_authenticator");
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    fs::write(&file, format!("{secret}\n\" TOTP_AUTH\n12345678\n")).unwrap();
    nix::unistd::chown(&file, Some(Uid::from_raw(zed.uid)), None).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let file_arg = file.to_str().unwrap();
    for extra in [&[][..], &["--replace"][..]] {
        let mut args = vec!["import", "google-authenticator", &alias.name, file_arg];
        args.extend_from_slice(extra);
        let out = agent.cli_as(&zed.name, &args);
        let imported = out.json["imported"]
            .as_array()
            .is_some_and(|names| !names.is_empty());
        assert!(
            out.code != 0 && !imported,
            "zed's uid imported a second profile under the alias: {out}"
        );
    }
    assert_eq!(agent.listed_accounts(), vec![zed.name.clone()]);

    // The alias still needs zed's code, not one of the planted secret.
    let planted = totp(secret, "sha1", 6, 30, now);
    if planted != enrolled.code(now) {
        pamtester(&service, &alias.name, &planted).assert_failure(PAM_AUTH_ERR_TEXT);
    }
    pamtester(&service, &alias.name, "12345678").assert_failure(PAM_AUTH_ERR_TEXT);
    pamtester(&service, &alias.name, &enrolled.code(now)).assert_success();
}
