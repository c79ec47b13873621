//! `fake-agent MODE SOCKET`: a stand-in for pam-totp-agent in the module host-safety tests.
//!
//! Binds SOCKET (mode 0666), prints `ready uid=N` (the uid it runs as), then serves every
//! connection until killed:
//! - `yes`: reads one request frame, prints `request bytes=N`, and answers it with a
//!   successful authentication, whatever it asked: an impostor that says yes to every code;
//! - `hangup`: closes each connection as soon as it is accepted, without reading anything, so
//!   the client's request meets a closed connection (EPIPE). Run it with a real-time priority
//!   on the client's CPU (`taskset`, `chrt`) so it always closes before the client writes.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;
use std::time::Duration;

/// Largest request frame read (the agent's own limit).
const MAX_REQUEST: usize = 64 * 1024;

fn usage() -> ExitCode {
    eprintln!("usage: fake-agent yes|hangup SOCKET");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, socket] = args.as_slice() else {
        return usage();
    };
    let serve: fn(UnixStream) = match mode.as_str() {
        "yes" => say_yes,
        "hangup" => drop,
        _ => return usage(),
    };
    let listener = match UnixListener::bind(socket) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("fake-agent: cannot bind {socket}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)) {
        eprintln!("fake-agent: cannot chmod {socket}: {e}");
        return ExitCode::FAILURE;
    }
    // The owner of /proc/self is the process's uid (no libc binding needed).
    let uid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    println!("ready uid={uid}");
    let _ = std::io::stdout().flush();
    loop {
        match listener.accept() {
            Ok((stream, _)) => serve(stream),
            Err(e) => {
                eprintln!("fake-agent: accept: {e}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Reads one frame (whatever it holds) and answers "authenticated".
fn say_yes(mut stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut length = [0u8; 4];
    if stream.read_exact(&mut length).is_err() {
        return;
    }
    let length = usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
    let mut request = vec![0u8; length.min(MAX_REQUEST)];
    if stream.read_exact(&mut request).is_err() {
        return;
    }
    println!("request bytes={}", request.len());
    let reply = br#"{"ok":{"kind":"authenticated","body":{"method":"totp"}}}"#;
    let mut frame = u32::try_from(reply.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(reply);
    let _ = stream.write_all(&frame);
}
