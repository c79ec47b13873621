//! The socket server: one short-lived thread per connection, a cap on connections, one
//! deadline per connection, and a clean drain on shutdown.

use crate::authz::Peer;
use crate::service::Service;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use pam_totp_proto::frame::{read_frame, write_frame, FrameError, MAX_FRAME_LEN};
use pam_totp_proto::{ApiError, DeadlineIo, RequestEnvelope, Response, PROTOCOL_VERSION};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed at once rather than queued.
    pub max_connections: usize,
    /// Whole-connection deadline: read the request, answer it.
    pub io_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 128,
            io_timeout: Duration::from_secs(5),
        }
    }
}

/// Decrements the active-connection count when a connection thread ends, however it ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves until `shutdown` is set, then waits (bounded) for in-flight requests to finish.
pub fn serve(
    listener: UnixListener,
    service: Arc<Service>,
    shutdown: &AtomicBool,
    limits: Limits,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let active = Arc::new(AtomicUsize::new(0));
    while !shutdown.load(Ordering::SeqCst) {
        // Wake up regularly to notice the shutdown flag set by the signal handler.
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("pam-totp-agent: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= limits.max_connections {
            eprintln!(
                "pam-totp-agent: warning: {} connections open, refusing another",
                limits.max_connections
            );
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let guard = ActiveGuard(Arc::clone(&active));
        let service = Arc::clone(&service);
        let spawned = std::thread::Builder::new()
            .name("connection".into())
            .spawn(move || {
                let _guard = guard;
                serve_connection(&stream, &service, limits.io_timeout);
            });
        if let Err(e) = spawned {
            eprintln!("pam-totp-agent: cannot start a connection thread: {e}");
        }
    }
    let drain_until = Instant::now() + limits.io_timeout + Duration::from_secs(1);
    while active.load(Ordering::SeqCst) > 0 && Instant::now() < drain_until {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn peer_of(stream: &UnixStream) -> io::Result<Peer> {
    let credentials = getsockopt(stream, PeerCredentials)?;
    Ok(Peer {
        uid: credentials.uid(),
        pid: credentials.pid(),
    })
}

/// Reads one request, answers it, closes. Garbage ends this connection and nothing else.
fn serve_connection(stream: &UnixStream, service: &Service, timeout: Duration) {
    let peer = match stream.set_nonblocking(false).and_then(|()| peer_of(stream)) {
        Ok(peer) => peer,
        Err(e) => {
            eprintln!("pam-totp-agent: cannot identify peer: {e}");
            return;
        }
    };
    let mut io = DeadlineIo::new(stream, Instant::now() + timeout);
    let frame = match read_frame(&mut io, MAX_FRAME_LEN) {
        Ok(frame) => Zeroizing::new(frame),
        Err(FrameError::Closed) => return,
        Err(e) => {
            eprintln!(
                "pam-totp-agent: uid={} pid={}: dropped connection: {e}",
                peer.uid, peer.pid
            );
            return;
        }
    };
    let response = answer(service, peer, &frame);
    // The reply may carry a new secret and emergency codes: wipe the buffer afterwards.
    let mut payload = Zeroizing::new(Vec::with_capacity(1024));
    if let Err(e) = serde_json::to_writer(&mut *payload, &response) {
        eprintln!("pam-totp-agent: cannot encode a reply: {e}");
        return;
    }
    if let Err(e) = write_frame(&mut io, &payload) {
        eprintln!(
            "pam-totp-agent: uid={} pid={}: cannot send reply: {e}",
            peer.uid, peer.pid
        );
    }
}

fn answer(service: &Service, peer: Peer, frame: &[u8]) -> Response {
    let envelope: RequestEnvelope = match serde_json::from_slice(frame) {
        Ok(envelope) => envelope,
        // Only the position: serde's message can quote the input, which may hold a code.
        Err(e) => {
            return Response::Err(ApiError::invalid(
                "request",
                format!(
                    "malformed request ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            ))
        }
    };
    if envelope.v != PROTOCOL_VERSION {
        return Response::Err(ApiError::invalid(
            "v",
            format!(
                "protocol version {} is not supported (this agent speaks {PROTOCOL_VERSION})",
                envelope.v
            ),
        ));
    }
    let op = envelope.request.op();
    // `{:?}` escapes control characters, so an account name cannot forge log lines.
    let account = envelope
        .request
        .account()
        .map(|a| format!(" account={a:?}"))
        .unwrap_or_default();
    let result = service.handle(peer, envelope.request);
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) => error.code.as_str(),
    };
    eprintln!(
        "pam-totp-agent: uid={} pid={} op={op}{account} result={outcome}",
        peer.uid, peer.pid
    );
    result.into()
}
