//! `pam-totp-agent backup --to FILE`: an online copy (0600, never over an existing file), and
//! no replay after a restore: a code used after the backup is refused once the backup is put
//! back, and the next code works.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

const PERIOD: u64 = 10;

#[test]
fn a_code_used_after_the_backup_is_refused_after_a_restore() {
    setup();
    let mut agent = Agent::start();
    let user = TestUser::new();
    let name = user.name.as_str();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(name, &["--period", &PERIOD.to_string()]);

    // An online backup while the agent runs.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("profiles.backup");
    let out = agent.backup(&copy);
    assert_eq!(out.code, 0, "backup failed: {}", out.output());
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup is readable by others");
    // Never over an existing file.
    let before = std::fs::read(&copy).unwrap();
    let again = agent.backup(&copy);
    assert_ne!(
        again.code,
        0,
        "a backup overwrote a file: {}",
        again.output()
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before);

    // A login after the backup uses this step's code.
    let used = enrolled.code(now);
    pamtester(&service, name, &used).assert_success();

    // Restore: stop, put the backup in place, start.
    agent.stop();
    std::fs::copy(&copy, &agent.db).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", agent.db.display()));
    }
    agent.restart();
    let restored_at = unix_now();
    // The restored file knows nothing of that login; the agent must not accept its code.
    pamtester(&service, name, &used).assert_failure(PAM_AUTH_ERR_TEXT);
    assert!(
        agent.log_text().contains("is a restored backup"),
        "{}",
        agent.log_text()
    );
    // Past now + the window at the restore, codes work again.
    let next = loop {
        let fresh = wait_for_fresh_step(PERIOD);
        if fresh / PERIOD > restored_at / PERIOD + 1 {
            break fresh;
        }
    };
    pamtester(&service, name, &enrolled.code(next)).assert_success();
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
