//! The socket server. One poll loop (epoll) accepts connections, applies the caps on
//! connections (in all and per non-root uid) and each connection's deadline, reads requests
//! and finishes replies the socket could not take at once; a fixed pool of workers answers
//! whole requests (`workers`). No thread is started per connection, and a peer that trickles
//! bytes or never reads costs a connection slot, never a worker. On shutdown the loop stops
//! accepting and drains what is in flight, bounded.

mod frames;
mod slots;
mod workers;

use crate::authz::Peer;
use crate::service::Service;
use frames::{Progress, ReplyWriter, RequestReader};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use pam_totp_proto::frame::FrameError;
use slots::Slots;
use std::collections::HashMap;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workers::{Connection, Job, JobQueue, Unfinished};

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
    /// this bounds how many logins one group commit can share.
    pub workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_user: 8,
            io_timeout: Duration::from_secs(5),
            workers: 64,
        }
    }
}

/// How often the loop wakes with nothing to do, to see the shutdown flag and deadlines.
const TICK_MS: u16 = 100;
const TICK: Duration = Duration::from_millis(TICK_MS as u64);
/// Connections accepted per wake-up, so a burst of new ones cannot starve the others.
const ACCEPTS_PER_WAKE: usize = 64;
const LISTENER: u64 = 0;
const WAKE: u64 = 1;

/// Serves until `shutdown` is set, then waits (bounded) for in-flight requests to finish.
pub fn serve(
    listener: UnixListener,
    service: Arc<Service>,
    shutdown: &AtomicBool,
    limits: Limits,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let queue = Arc::new(JobQueue::default());
    let unfinished = Arc::new(Unfinished::new()?);
    let mut threads = Vec::with_capacity(limits.workers);
    for _ in 0..limits.workers.max(1) {
        let (queue, service, unfinished) = (
            Arc::clone(&queue),
            Arc::clone(&service),
            Arc::clone(&unfinished),
        );
        threads.push(
            std::thread::Builder::new()
                .name("worker".into())
                .spawn(move || workers::work(&queue, &service, &unfinished))?,
        );
    }
    let mut server = Loop::new(listener, service, Arc::clone(&queue), unfinished, limits)?;
    let result = server.run(shutdown);
    queue.close();
    // Drained: every worker is idle and stops now, letting go of the store. Otherwise one is
    // still stuck in a request past the drain's bound; the process exits without it.
    if server.slots.open() == 0 {
        for thread in threads {
            let _ = thread.join();
        }
    }
    result
}

/// A connection the loop is reading a request from, or writing a reply to.
enum Phase {
    Reading(RequestReader),
    Writing(ReplyWriter),
}

struct Loop {
    epoll: Epoll,
    listener: UnixListener,
    service: Arc<Service>,
    queue: Arc<JobQueue>,
    unfinished: Arc<Unfinished>,
    slots: Arc<Slots>,
    limits: Limits,
    /// Connections waiting on their socket, by epoll token.
    waiting: HashMap<u64, (Connection, Phase)>,
    next_token: u64,
    last_refusal_logged: Option<Instant>,
}

impl Loop {
    fn new(
        listener: UnixListener,
        service: Arc<Service>,
        queue: Arc<JobQueue>,
        unfinished: Arc<Unfinished>,
        limits: Limits,
    ) -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
        epoll.add(&unfinished.wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        Ok(Self {
            epoll,
            listener,
            service,
            queue,
            unfinished,
            slots: Slots::new(limits),
            limits,
            waiting: HashMap::new(),
            next_token: WAKE + 1,
            last_refusal_logged: None,
        })
    }

    fn run(&mut self, shutdown: &AtomicBool) -> io::Result<()> {
        let mut events = vec![EpollEvent::empty(); 256];
        let mut next_sweep = Instant::now() + TICK;
        let mut drain_until = None;
        loop {
            if drain_until.is_none() && shutdown.load(Ordering::SeqCst) {
                drain_until = Some(self.stop_accepting());
            }
            if let Some(until) = drain_until {
                if self.slots.open() == 0 || Instant::now() >= until {
                    return Ok(());
                }
            }
            let ready = match self.epoll.wait(&mut events, EpollTimeout::from(TICK_MS)) {
                Ok(ready) => ready,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(e.into()),
            };
            for event in events.iter().take(ready) {
                match event.data() {
                    LISTENER => self.accept(),
                    WAKE => self.resume_unfinished(),
                    token => self.resume(token),
                }
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.drop_expired(now);
                next_sweep = now + TICK;
            }
        }
    }

    /// Stops taking connections; returns until when those already accepted may take (each
    /// within its own deadline: a request still arriving is read and answered).
    fn stop_accepting(&mut self) -> Instant {
        let _ = self.epoll.delete(&self.listener);
        Instant::now() + self.limits.io_timeout + Duration::from_secs(1)
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_WAKE {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::error!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    return;
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
            // The request usually arrived with the connection: read it now, without a
            // round through epoll.
            self.advance(connection, Phase::Reading(RequestReader::new()));
        }
    }

    /// Closed at once. Logged at most every 10 s, so a flood cannot flood the journal.
    fn refused(&mut self, peer: Peer) {
        if self
            .last_refusal_logged
            .is_none_or(|at| at.elapsed() > Duration::from_secs(10))
        {
            log::warn!(
                "refusing connections (uid {} holds too many, or {} are open)",
                peer.uid,
                self.slots.open()
            );
            self.last_refusal_logged = Some(Instant::now());
        }
    }

    fn resume_unfinished(&mut self) {
        for (connection, reply) in self.unfinished.take() {
            self.advance(connection, Phase::Writing(reply));
        }
    }

    fn resume(&mut self, token: u64) {
        if let Some((connection, phase)) = self.waiting.remove(&token) {
            let _ = self.epoll.delete(&connection.stream);
            self.advance(connection, phase);
        }
    }

    /// Moves a connection as far as its socket allows now: a whole request goes to the
    /// workers, a sent reply closes the connection, anything else waits on epoll.
    fn advance(&mut self, connection: Connection, mut phase: Phase) {
        let progress = match &mut phase {
            Phase::Reading(reader) => reader.read_from(&connection.stream),
            Phase::Writing(writer) => writer.write_to(&connection.stream),
        };
        match (progress, phase) {
            (Ok(Progress::Done), Phase::Reading(request)) => self.queue.push(Job {
                connection,
                request,
            }),
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

    fn wait_for(&mut self, connection: Connection, phase: Phase) {
        let flags = match phase {
            Phase::Reading(_) => EpollFlags::EPOLLIN,
            Phase::Writing(_) => EpollFlags::EPOLLOUT,
        };
        let token = self.next_token;
        self.next_token += 1;
        if let Err(e) = self
            .epoll
            .add(&connection.stream, EpollEvent::new(flags, token))
        {
            log::error!("cannot wait on a connection: {e}");
            return;
        }
        self.waiting.insert(token, (connection, phase));
    }

    fn drop_expired(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, (connection, _))| connection.deadline <= now)
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            if let Some((connection, phase)) = self.waiting.remove(&token) {
                let _ = self.epoll.delete(&connection.stream);
                let reason = match phase {
                    Phase::Reading(_) => "timed out",
                    Phase::Writing(_) => "cannot send reply: timed out",
                };
                self.service.log_dropped(connection.peer, reason);
            }
        }
    }
}

fn peer_of(stream: &UnixStream) -> io::Result<Peer> {
    let credentials = getsockopt(stream, PeerCredentials)?;
    Ok(Peer {
        uid: credentials.uid(),
        pid: credentials.pid(),
    })
}
