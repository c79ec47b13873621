//! The workers: a fixed pool of threads that answer whole requests. A worker never waits on a
//! client: a request reaches it complete, and a reply the socket cannot take at once goes back
//! to the poll loop to finish. So a peer that trickles bytes or never reads holds a
//! connection slot (capped per uid), never a worker.

use super::frames::{Progress, ReplyWriter, RequestReader};
use super::slots::Slot;
use crate::authz::Peer;
use crate::service::Service;
use nix::sys::eventfd::{EfdFlags, EventFd};
use pam_totp_proto::{ApiError, RequestEnvelope, Response, PROTOCOL_VERSION};
use std::collections::VecDeque;
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// An accepted connection: its peer, its deadline (read the request, answer it) and its
/// place among the open connections, given back when this is dropped (closing the socket).
pub(super) struct Connection {
    pub(super) stream: UnixStream,
    pub(super) peer: Peer,
    pub(super) deadline: Instant,
    pub(super) _slot: Slot,
}

/// A connection whose request has been read whole.
pub(super) struct Job {
    pub(super) connection: Connection,
    pub(super) request: RequestReader,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Both queues are plain lists, consistent at every step: a panic elsewhere cannot break them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Requests waiting for a worker. It holds no more than the open connections (each job holds
/// its connection's slot), so it is bounded by the connection cap.
#[derive(Default)]
pub(super) struct JobQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl JobQueue {
    pub(super) fn push(&self, job: Job) {
        lock(&self.state).jobs.push_back(job);
        self.ready.notify_one();
    }

    /// The next job; `None` once the queue is closed and empty.
    fn pop(&self) -> Option<Job> {
        let mut state = lock(&self.state);
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// No more jobs: workers finish what is queued, then stop.
    pub(super) fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_all();
    }
}

/// Replies the socket could not take at once, handed back to the poll loop, which the
/// eventfd wakes.
pub(super) struct Unfinished {
    replies: Mutex<Vec<(Connection, ReplyWriter)>>,
    pub(super) wake: EventFd,
}

impl Unfinished {
    pub(super) fn new() -> io::Result<Self> {
        Ok(Self {
            replies: Mutex::new(Vec::new()),
            wake: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
        })
    }

    fn push(&self, connection: Connection, reply: ReplyWriter) {
        lock(&self.replies).push((connection, reply));
        // Cannot fail short of an overflow of the 64-bit counter, which the loop's reads reset.
        let _ = self.wake.write(1);
    }

    /// Everything handed back since the last call.
    pub(super) fn take(&self) -> Vec<(Connection, ReplyWriter)> {
        let _ = self.wake.read();
        std::mem::take(&mut *lock(&self.replies))
    }
}

/// A worker's life: answer jobs until the queue closes.
pub(super) fn work(queue: &JobQueue, service: &Service, unfinished: &Unfinished) {
    while let Some(job) = queue.pop() {
        serve(job, service, unfinished);
    }
}

fn serve(job: Job, service: &Service, unfinished: &Unfinished) {
    let Job {
        connection,
        request,
    } = job;
    if Instant::now() >= connection.deadline {
        // Its client has given up (the module waits 3 s): deciding now would change state
        // nobody hears about.
        service.log_dropped(connection.peer, "timed out waiting for a worker");
        return;
    }
    let response = answer(service, connection.peer, request.frame());
    drop(request);
    let mut reply = match ReplyWriter::encode(&response) {
        Ok(reply) => reply,
        Err(e) => {
            log::error!("cannot encode a reply: {e}");
            return;
        }
    };
    drop(response);
    match reply.write_to(&connection.stream) {
        Ok(Progress::Done) => {}
        Ok(Progress::Waiting) => unfinished.push(connection, reply),
        // Within the caller's budget: a user hanging up before every reply cannot flood the log.
        Err(e) => service.log_dropped(connection.peer, &format!("cannot send reply: {e}")),
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
