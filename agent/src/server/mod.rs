//! The socket server: a fixed pool of workers, each of which waits on one shared epoll
//! instance and serves what it wakes for. A worker accepts connections (applying the caps on
//! connections, in all and per non-root uid), reads a request as far as the socket allows, and
//! answers a whole request itself; a request or reply the socket cannot move at once waits on
//! epoll, under the connection's deadline, for whichever worker is free next. No thread is
//! started per connection, a peer that trickles bytes or never reads costs a connection slot,
//! never a worker, and a login is answered by the thread its connection woke (no handoff
//! between threads). On shutdown the pool stops accepting and drains what is in flight,
//! bounded.

mod frames;
mod slots;
mod workers;

use crate::authz::Peer;
use crate::service::Service;
use frames::{Progress, ReplyWriter, RequestReader};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use pam_totp_proto::frame::FrameError;
use slots::Slots;
use std::collections::HashMap;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use workers::Connection;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed at once rather than queued.
    pub max_connections: usize,
    /// Connections one non-root uid may hold at once. Logins come from root (sshd, sudo), so
    /// a local user holding connections open (slowloris) cannot starve them.
    pub max_per_user: usize,
    /// Whole-connection deadline: read the request, answer it.
    pub io_timeout: Duration,
    /// Threads answering requests. A worker waits while its request's batch commits, so
    /// this bounds how many logins one group commit can share. Fewer workers than the
    /// logins in flight at peak is the point: a worker done with one finds the next socket
    /// already ready instead of sleeping on epoll until a client wakes it (BENCHMARKS.md,
    /// issue 13's fourth session: 3.3 -> 2.1 context switches per login at 64 clients).
    pub workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_user: 8,
            io_timeout: Duration::from_secs(5),
            workers: 32,
        }
    }
}

/// How often an idle worker wakes with nothing to do, to see the shutdown flag and deadlines.
const TICK_MS: u16 = 100;
const TICK: Duration = Duration::from_millis(TICK_MS as u64);
/// Connections one wake-up may accept and refuse (over a cap, or unidentifiable) before it
/// re-arms the listener; the first one admitted ends the wake-up, and this worker serves it.
const ACCEPTS_PER_WAKE: usize = 64;
const LISTENER: u64 = 0;
const STOP: u64 = 1;

/// Serves until `shutdown` is set, then waits (bounded) for in-flight requests to finish.
/// The calling thread is one of the workers; it alone watches `shutdown`.
pub fn serve(
    listener: UnixListener,
    service: Arc<Service>,
    shutdown: &AtomicBool,
    limits: Limits,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let server = Arc::new(Server::new(listener, service, limits)?);
    let mut threads = Vec::with_capacity(limits.workers);
    for _ in 1..limits.workers.max(1) {
        let server = Arc::clone(&server);
        threads.push(
            std::thread::Builder::new()
                .name("worker".into())
                .spawn(move || server.work(false, || false))?,
        );
    }
    let mut drain_until = None;
    let result = server.work(true, || {
        if drain_until.is_none() && shutdown.load(Ordering::SeqCst) {
            drain_until = Some(server.stop_accepting());
        }
        drain_until.is_some_and(|until| server.slots.open() == 0 || Instant::now() >= until)
    });
    server.stop();
    // Drained: every other worker is idle and stops within a tick, letting go of the store.
    // Otherwise one is still stuck in a request past the drain's bound; the process exits
    // without it.
    if server.slots.open() == 0 {
        for thread in threads {
            let _ = thread.join();
        }
    }
    result
}

/// A connection waiting on its socket: for the rest of a request, or for room for its reply.
enum Phase {
    Reading(RequestReader),
    Writing(ReplyWriter),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps and timestamps, consistent at every step: a panic elsewhere cannot break them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the workers share.
struct Server {
    epoll: Epoll,
    listener: UnixListener,
    service: Arc<Service>,
    slots: Arc<Slots>,
    limits: Limits,
    /// Connections waiting on their socket, by epoll token. Each is registered one-shot, so
    /// exactly one worker takes it when it is ready.
    waiting: Mutex<HashMap<u64, (Connection, Phase)>>,
    next_token: AtomicU64,
    next_sweep: Mutex<Instant>,
    last_refusal_logged: Mutex<Option<Instant>>,
    /// Readable once the pool has drained: wakes every worker, and each returns.
    stop: EventFd,
}

impl Server {
    fn new(listener: UnixListener, service: Arc<Service>, limits: Limits) -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&listener, EpollEvent::new(listening(), LISTENER))?;
        // Level-triggered and never read: once written, every wait returns at once.
        let stop = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        epoll.add(&stop, EpollEvent::new(EpollFlags::EPOLLIN, STOP))?;
        Ok(Self {
            epoll,
            listener,
            service,
            slots: Slots::new(limits),
            limits,
            waiting: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(STOP + 1),
            next_sweep: Mutex::new(Instant::now() + TICK),
            last_refusal_logged: Mutex::new(None),
            stop,
        })
    }

    /// A worker's life: wait for one ready socket (epoll wakes one waiter per event) and serve
    /// it, until the pool stops. Only the ticking worker wakes when idle (to sweep deadlines
    /// and ask `done`), so an idle agent costs one wake-up per tick, not one per worker.
    fn work(&self, ticking: bool, mut done: impl FnMut() -> bool) -> io::Result<()> {
        // One event per wake-up: the others stay for the other workers.
        let mut events = [EpollEvent::empty()];
        let timeout = if ticking {
            EpollTimeout::from(TICK_MS)
        } else {
            EpollTimeout::NONE
        };
        loop {
            if done() {
                return Ok(());
            }
            let ready = match self.epoll.wait(&mut events, timeout) {
                Ok(ready) => ready,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(e.into()),
            };
            if ready > 0 {
                match events[0].data() {
                    LISTENER => self.accept(),
                    STOP => return Ok(()),
                    token => self.resume(token),
                }
            }
            self.sweep_if_due();
        }
    }

    /// Wakes every worker to return.
    fn stop(&self) {
        // Cannot fail short of an overflow of the 64-bit counter.
        let _ = self.stop.write(1);
    }

    /// Stops taking connections; returns until when those already accepted may take (each
    /// within its own deadline: a request still arriving is read and answered).
    fn stop_accepting(&self) -> Instant {
        let _ = self.epoll.delete(&self.listener);
        Instant::now() + self.limits.io_timeout + Duration::from_secs(1)
    }

    fn accept(&self) {
        for _ in 0..ACCEPTS_PER_WAKE {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::error!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    break;
                }
            };
            let peer = match peer_of(&stream) {
                Ok(peer) => peer,
                Err(e) => {
                    log::error!("cannot identify peer: {e}");
                    continue;
                }
            };
            let Some(slot) = self.slots.take(peer.uid) else {
                self.refused(peer);
                continue;
            };
            let connection = Connection {
                stream,
                peer,
                deadline: Instant::now() + self.limits.io_timeout,
                _slot: slot,
            };
            // Another worker takes the next connection while this one serves its own. (A
            // listener no longer registered, after shutdown, refuses the re-arm: fine.)
            self.rearm_listener();
            // The request usually arrived with the connection: read it now, without a
            // round through epoll.
            self.advance(connection, Phase::Reading(RequestReader::new()));
            return;
        }
        self.rearm_listener();
    }

    fn rearm_listener(&self) {
        let _ = self
            .epoll
            .modify(&self.listener, &mut EpollEvent::new(listening(), LISTENER));
    }

    /// Closed at once. Logged at most every 10 s, so a flood cannot flood the journal.
    fn refused(&self, peer: Peer) {
        let mut last = lock(&self.last_refusal_logged);
        if last.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
            log::warn!(
                "refusing connections (uid {} holds too many, or {} are open)",
                peer.uid,
                self.slots.open()
            );
            *last = Some(Instant::now());
        }
    }

    fn resume(&self, token: u64) {
        let taken = lock(&self.waiting).remove(&token);
        if let Some((connection, phase)) = taken {
            let _ = self.epoll.delete(&connection.stream);
            self.advance(connection, phase);
        }
    }

    /// Moves a connection as far as its socket allows now: a whole request is answered here,
    /// a sent reply closes the connection, anything else waits on epoll.
    fn advance(&self, connection: Connection, mut phase: Phase) {
        let progress = match &mut phase {
            Phase::Reading(reader) => reader.read_from(&connection.stream),
            Phase::Writing(writer) => writer.write_to(&connection.stream),
        };
        match (progress, phase) {
            (Ok(Progress::Done), Phase::Reading(request)) => {
                if let Some((connection, reply)) =
                    workers::serve(connection, request, &self.service)
                {
                    self.wait_for(connection, Phase::Writing(reply));
                }
            }
            (Ok(Progress::Done), Phase::Writing(_)) => {}
            (Ok(Progress::Waiting), phase) => self.wait_for(connection, phase),
            (Err(FrameError::Closed), Phase::Reading(_)) => {}
            (Err(e), Phase::Reading(_)) => {
                self.service.log_dropped(connection.peer, &e.to_string())
            }
            (Err(e), Phase::Writing(_)) => self
                .service
                .log_dropped(connection.peer, &format!("cannot send reply: {e}")),
        }
    }

    fn wait_for(&self, connection: Connection, phase: Phase) {
        let flags = match phase {
            Phase::Reading(_) => EpollFlags::EPOLLIN,
            Phase::Writing(_) => EpollFlags::EPOLLOUT,
        } | EpollFlags::EPOLLONESHOT;
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        // In the map before epoll may report it (the worker it wakes waits for this lock), so
        // that worker finds it.
        let mut waiting = lock(&self.waiting);
        let (connection, _) = waiting.entry(token).or_insert((connection, phase));
        if let Err(e) = self
            .epoll
            .add(&connection.stream, EpollEvent::new(flags, token))
        {
            log::error!("cannot wait on a connection: {e}");
            waiting.remove(&token);
        }
    }

    /// Drops the waiting connections past their deadline, at most once per tick.
    fn sweep_if_due(&self) {
        let now = Instant::now();
        {
            let Ok(mut next) = self.next_sweep.try_lock() else {
                return;
            };
            if now < *next {
                return;
            }
            *next = now + TICK;
        }
        let expired: Vec<(Connection, Phase)> = {
            let mut waiting = lock(&self.waiting);
            let tokens: Vec<u64> = waiting
                .iter()
                .filter(|(_, (connection, _))| connection.deadline <= now)
                .map(|(token, _)| *token)
                .collect();
            tokens
                .iter()
                .filter_map(|token| waiting.remove(token))
                .collect()
        };
        for (connection, phase) in expired {
            let _ = self.epoll.delete(&connection.stream);
            let reason = match phase {
                Phase::Reading(_) => "timed out",
                Phase::Writing(_) => "cannot send reply: timed out",
            };
            self.service.log_dropped(connection.peer, reason);
        }
    }
}

/// The listener is one-shot too: one worker accepts, then re-arms it.
fn listening() -> EpollFlags {
    EpollFlags::EPOLLIN | EpollFlags::EPOLLONESHOT
}

fn peer_of(stream: &UnixStream) -> io::Result<Peer> {
    let credentials = getsockopt(stream, PeerCredentials)?;
    Ok(Peer {
        uid: credentials.uid(),
        pid: credentials.pid(),
    })
}
