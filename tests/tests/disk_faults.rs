//! The database's file system full: writes fail with a clear error, logins fail closed as
//! PAM_AUTHINFO_UNAVAIL (never as a wrong code), reads still answer, nothing half-done is
//! kept, and everything works again once there is space, without restarting the agent.
//!
//! The database's file system turned read-only by the kernel after an error (ext4 with
//! `errors=remount-ro`): the same failures, closed, with the agent still answering reads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::faults::{Ext4Loop, Tmpfs};
use common::*;

use std::fs;

/// An agent whose database directory is a small tmpfs. Dropping it stops the agent first,
/// then unmounts.
struct AgentOnTmpfs {
    agent: Agent,
    tmpfs: Option<Tmpfs>,
}

impl AgentOnTmpfs {
    fn start(size: &str) -> Self {
        let mut agent = Agent::start();
        // Stop it, put a tmpfs over its (0700, root) database directory, start it again on a
        // new database there.
        agent.stop();
        let state = agent
            .db
            .parent()
            .expect("the database has a directory")
            .to_path_buf();
        let tmpfs = Tmpfs::mount(&state, size);
        let mut this = Self {
            agent,
            tmpfs: Some(tmpfs),
        };
        this.agent.restart();
        this
    }

    fn tmpfs(&self) -> &Tmpfs {
        self.tmpfs.as_ref().expect("mounted")
    }
}

impl Drop for AgentOnTmpfs {
    fn drop(&mut self) {
        self.agent.stop();
        drop(self.tmpfs.take());
    }
}

/// An agent whose database directory is a small ext4 (on a loop device) mounted with
/// `errors=remount-ro`. Dropping it stops the agent first, then unmounts and detaches.
///
/// (A plain `mount -o remount,ro` is refused with EBUSY while the agent holds the database
/// open for writing; a kernel-side error is what really makes a server's disk read-only.)
struct AgentOnExt4 {
    agent: Agent,
    ext4: Option<Ext4Loop>,
}

impl AgentOnExt4 {
    fn start(size_mib: u64) -> Self {
        let mut agent = Agent::start();
        agent.stop();
        let state = agent
            .db
            .parent()
            .expect("the database has a directory")
            .to_path_buf();
        let ext4 = Ext4Loop::mount(&state, size_mib);
        let mut this = Self {
            agent,
            ext4: Some(ext4),
        };
        this.agent.restart();
        this
    }

    fn ext4(&self) -> &Ext4Loop {
        self.ext4.as_ref().expect("mounted")
    }
}

impl Drop for AgentOnExt4 {
    fn drop(&mut self) {
        self.agent.stop();
        drop(self.ext4.take());
    }
}

#[test]
fn a_full_disk_fails_closed_and_recovers_without_a_restart() {
    setup();
    let fixture = AgentOnTmpfs::start("2m");
    let agent = &fixture.agent;
    let pid = agent.pid();
    let first = TestUser::new();
    let second = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&first.name, &[]);
    pamtester(&service, &first.name, &enrolled.code(now)).assert_success();

    let filler = fixture.tmpfs().fill();
    assert!(
        fixture.tmpfs().free_bytes() < 8192,
        "the tmpfs is not full: {} bytes free",
        fixture.tmpfs().free_bytes()
    );

    // A write fails, saying why.
    let out = agent.cli(&["enroll", &second.name]);
    assert_eq!(out.code, 1, "enroll on a full disk: {out}");
    let message = out.json["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot record state"),
        "enroll on a full disk does not say it cannot record state: {out}"
    );
    // Reads still answer.
    let shown = agent.show(&first.name);
    assert_eq!(shown["verified"], true, "{shown}");

    // Logins fail closed as "cannot retrieve authentication info", with a right code ...
    let right = enrolled.code(now + 30);
    pamtester(&service, &first.name, &right).assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);
    // ... and with a wrong one (its failure cannot be counted, so it is not judged).
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    pamtester(&service, &first.name, &wrong).assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);
    // The agent's log says why.
    let log = agent.log_text();
    assert!(
        log.contains("cannot record state"),
        "the agent's log does not say it cannot record state:\n{log}"
    );

    // Nothing half-done was kept.
    agent.cli(&["show", &second.name]).err(4, "not_found");
    assert_eq!(agent.show(&first.name)["failed_attempts"], 0);

    // Space again: the refused right code (never used) works, without a restart.
    fs::remove_file(&filler).unwrap();
    pamtester(&service, &first.name, &right).assert_success();
    agent.enroll(&second.name, &[]);
    assert_eq!(agent.pid(), pid, "the agent was restarted");
    assert_eq!(
        agent.listed_accounts().len(),
        2,
        "after recovery: {:?}",
        agent.listed_accounts()
    );
}

/// No recovery part: an ext4 that aborted its journal stays read-only until it is unmounted
/// and checked with e2fsck first, which means stopping the agent; there is nothing to
/// recover "without a restart" as on the full disk.
#[test]
fn a_database_the_kernel_made_read_only_fails_closed() {
    setup();
    let fixture = AgentOnExt4::start(16);
    let agent = &fixture.agent;
    let pid = agent.pid().expect("the agent runs");
    let first = TestUser::new();
    let second = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(&first.name, &[]);
    pamtester(&service, &first.name, &enrolled.code(now)).assert_success();

    // The kernel turns the file system read-only under the running agent.
    fixture.ext4().trigger_error();

    // Reads still answer.
    let out = agent.cli(&["show", &first.name]);
    assert_eq!(out.code, 0, "show on a read-only disk: {out}");
    assert_eq!(out.json["verified"], true, "{out}");

    // A write fails, saying why.
    let out = agent.cli(&["enroll", &second.name]);
    assert_eq!(out.code, 1, "enroll on a read-only disk: {out}");
    let message = out.json["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot record state"),
        "enroll on a read-only disk does not say it cannot record state: {out}"
    );

    // Logins fail closed as "cannot retrieve authentication info", with a right code (never
    // used) ...
    let right = enrolled.code(now + 30);
    pamtester(&service, &first.name, &right).assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);
    // ... and with a wrong one (its failure cannot be counted, so it is not judged).
    let wrong = enrolled.wrong_codes(now, 1).remove(0);
    pamtester(&service, &first.name, &wrong).assert_failure(PAM_AUTHINFO_UNAVAIL_TEXT);
    // The agent's log says why.
    let log = agent.log_text();
    assert!(
        log.contains("cannot record state"),
        "the agent's log does not say it cannot record state:\n{log}"
    );

    // Still the same agent, still answering.
    assert_eq!(agent.pid(), Some(pid), "the agent was restarted");
    assert!(
        std::path::Path::new("/proc").join(pid.to_string()).exists(),
        "the agent died on a read-only disk; its log:\n{}",
        agent.log_text()
    );
    agent.cli(&["show", &second.name]).err(4, "not_found");
}
