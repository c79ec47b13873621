//! The agent as a process: file modes, refusing unsafe database locations, clean SIGTERM,
//! and state kept across restarts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn socket_is_public_database_is_private_and_sigterm_exits_zero() {
    setup();
    let mut agent = Agent::start();
    let user = TestUser::new();
    agent.enroll(&user.name, &[]);
    let socket = fs::metadata(&agent.socket).unwrap();
    assert!(socket.file_type().is_socket());
    assert_eq!(mode(&agent.socket), 0o666, "socket mode");
    assert_eq!(mode(&agent.db), 0o600, "database mode");
    assert_eq!(mode(agent.db.parent().unwrap()), 0o700, "database dir mode");

    // State survives a restart.
    let status = agent.restart();
    assert!(
        status.is_some_and(|s| s.success()),
        "pam-totp-agent did not exit 0 on SIGTERM: {status:?}\n{}",
        agent.log_text()
    );
    assert_eq!(agent.listed_accounts(), vec![user.name.clone()]);
    let status = agent.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn creates_a_missing_socket_directory() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let config = dir.path().join("agent.toml");
    fs::write(&config, DEFAULT_CONFIG).unwrap();
    let socket_dir = dir.path().join("run").join("pam-totp");
    let socket = socket_dir.join("agent.sock");
    let mut child = Command::new(agent_bin())
        .arg("--socket")
        .arg(&socket)
        .arg("--db")
        .arg(state.join("profiles.sqlite3"))
        .arg("--config")
        .arg(&config)
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut up = false;
    for _ in 0..500 {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            up = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let dir_mode = fs::metadata(&socket_dir).map(|m| m.permissions().mode() & 0o7777);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let status = child.wait().unwrap();
    assert!(up, "the agent did not listen on {}", socket.display());
    assert_eq!(dir_mode.ok(), Some(0o755), "socket directory mode");
    assert!(status.success(), "{status}");
}

/// Starts the agent on a database location others can reach; it must refuse and say why.
fn assert_refuses(dir_mode: u32, db_mode: Option<u32>) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(dir_mode)).unwrap();
    let db = state.join("profiles.sqlite3");
    if let Some(db_mode) = db_mode {
        // An empty file is a valid, empty SQLite database.
        fs::write(&db, b"").unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(db_mode)).unwrap();
    }
    let config = dir.path().join("agent.toml");
    fs::write(&config, DEFAULT_CONFIG).unwrap();
    let socket = dir.path().join("agent.sock");
    let out = run(
        Command::new(agent_bin())
            .arg("--socket")
            .arg(&socket)
            .arg("--db")
            .arg(&db)
            .arg("--config")
            .arg(&config)
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID"),
        None,
        Duration::from_secs(20),
    );
    let what = format!(
        "dir {dir_mode:o}, db {db_mode:?}: exit {}\nstderr: {}",
        out.code, out.stderr
    );
    assert_ne!(
        out.code, 0,
        "the agent started on an unsafe database ({what})"
    );
    assert!(
        out.stderr.contains(&*state.to_string_lossy()),
        "the refusal does not name the unsafe path ({what})"
    );
}

#[test]
fn refuses_a_database_directory_others_can_read() {
    setup();
    assert_refuses(0o755, None);
}

#[test]
fn refuses_a_database_directory_others_can_write() {
    setup();
    assert_refuses(0o733, None);
}

#[test]
fn refuses_a_database_file_others_can_read() {
    setup();
    assert_refuses(0o700, Some(0o644));
}
