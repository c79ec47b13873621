//! The socket server: one short-lived thread per connection, caps on connections (in all and
//! per non-root uid), one deadline per connection, and a clean drain on shutdown.

use crate::authz::Peer;
use crate::service::Service;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use pam_totp_proto::frame::{read_frame, write_frame, FrameError, MAX_FRAME_LEN};
use pam_totp_proto::{ApiError, DeadlineIo, RequestEnvelope, Response, PROTOCOL_VERSION};
use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed at once rather than queued.
    pub max_connections: usize,
    /// Connections one non-root uid may hold at once. Logins come from root (sshd, sudo), so
    /// a local user holding connections open (slowloris) cannot starve them.
    pub max_per_user: usize,
    /// Whole-connection deadline: read the request, answer it.
    pub io_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_user: 8,
            io_timeout: Duration::from_secs(5),
        }
    }
}

/// Counts open connections, in all and per non-root uid.
struct Slots {
    limits: Limits,
    total: AtomicUsize,
    per_user: Mutex<HashMap<u32, usize>>,
}

/// One connection's place in [`Slots`], given back when the connection ends, however it ends.
struct Slot {
    slots: Arc<Slots>,
    uid: u32,
}

impl Slots {
    fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            total: AtomicUsize::new(0),
            per_user: Mutex::new(HashMap::new()),
        })
    }

    fn open(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    fn take(self: &Arc<Self>, uid: u32) -> Option<Slot> {
        let mut per_user = self.per_user.lock().unwrap_or_else(PoisonError::into_inner);
        if self.open() >= self.limits.max_connections {
            return None;
        }
        if uid != 0 {
            let held = per_user.entry(uid).or_insert(0);
            if *held >= self.limits.max_per_user {
                return None;
            }
            *held += 1;
        }
        self.total.fetch_add(1, Ordering::SeqCst);
        Some(Slot {
            slots: Arc::clone(self),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_user = self
            .slots
            .per_user
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = per_user.get_mut(&self.uid) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                per_user.remove(&self.uid);
            }
        }
        self.slots.total.fetch_sub(1, Ordering::SeqCst);
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
    let slots = Slots::new(limits);
    let mut last_refusal_logged: Option<Instant> = None;
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
                log::error!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer = match peer_of(&stream) {
            Ok(peer) => peer,
            Err(e) => {
                log::error!("cannot identify peer: {e}");
                continue;
            }
        };
        let Some(slot) = slots.take(peer.uid) else {
            // Closed at once. Logged at most every 10 s, so a flood cannot flood the journal.
            if last_refusal_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                log::warn!(
                    "refusing connections (uid {} holds too many, or {} are open)",
                    peer.uid,
                    slots.open()
                );
                last_refusal_logged = Some(Instant::now());
            }
            continue;
        };
        let service = Arc::clone(&service);
        let spawned = std::thread::Builder::new()
            .name("connection".into())
            .spawn(move || {
                let _slot = slot;
                serve_connection(&stream, peer, &service, limits.io_timeout);
            });
        if let Err(e) = spawned {
            log::error!("cannot start a connection thread: {e}");
        }
    }
    let drain_until = Instant::now() + limits.io_timeout + Duration::from_secs(1);
    while slots.open() > 0 && Instant::now() < drain_until {
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
fn serve_connection(stream: &UnixStream, peer: Peer, service: &Service, timeout: Duration) {
    if let Err(e) = stream.set_nonblocking(false) {
        log::error!("cannot set up a connection: {e}");
        return;
    }
    let mut io = DeadlineIo::new(stream, Instant::now() + timeout);
    let frame = match read_frame(&mut io, MAX_FRAME_LEN) {
        Ok(frame) => Zeroizing::new(frame),
        Err(FrameError::Closed) => return,
        Err(e) => {
            service.log_dropped(peer, &e.to_string());
            return;
        }
    };
    let response = answer(service, peer, &frame);
    // The reply may carry a new secret and emergency codes: wipe the buffer afterwards.
    let mut payload = Zeroizing::new(Vec::with_capacity(1024));
    if let Err(e) = serde_json::to_writer(&mut *payload, &response) {
        log::error!("cannot encode a reply: {e}");
        return;
    }
    if let Err(e) = write_frame(&mut io, &payload) {
        // Within the caller's budget: a user hanging up before every reply cannot flood the log.
        service.log_dropped(peer, &format!("cannot send reply: {e}"));
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
    // The service logs the request (one line) as it answers it.
    service.handle(peer, envelope.request).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_per_user: usize) -> Limits {
        Limits {
            max_connections,
            max_per_user,
            io_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_non_root_uid_gets_only_its_share() {
        let slots = Slots::new(limits(10, 2));
        let held: Vec<_> = (0..2).filter_map(|_| slots.take(1000)).collect();
        assert_eq!(held.len(), 2);
        assert!(slots.take(1000).is_none(), "third connection of uid 1000");
        // Other users and root are not affected.
        assert!(slots.take(1001).is_some());
        let root: Vec<_> = (0..5).filter_map(|_| slots.take(0)).collect();
        assert_eq!(root.len(), 5);
        // A closed connection gives its place back.
        drop(held);
        assert!(slots.take(1000).is_some());
    }

    #[test]
    fn the_total_is_capped_for_everyone() {
        let slots = Slots::new(limits(3, 8));
        let held: Vec<_> = (0..5).filter_map(|_| slots.take(0)).collect();
        assert_eq!((held.len(), slots.open()), (3, 3));
        assert!(slots.take(1000).is_none());
        drop(held);
        assert_eq!(slots.open(), 0);
    }
}
