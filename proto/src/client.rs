//! Blocking client with one deadline for the whole exchange: connect, send, receive.
//!
//! No threads and no async runtime, so the PAM module can use it inside any host program.
//! The connect is non-blocking so a stopped agent with a full backlog cannot hang a login.
//! Every send carries `MSG_NOSIGNAL`: a host program that keeps SIGPIPE at its default (most C
//! programs: su, polkit helpers, screen lockers) must not die because the agent hung up.
//!
//! What takes more than one request (every page of `list` or `log`, an import split into
//! requests that each fit in a frame) is in [`paging`].

pub mod paging;

use crate::error::{ApiError, ErrorCode};
use crate::frame::{read_frame, write_frame, FrameError, MAX_FRAME_LEN, MAX_REPLY_LEN};
use crate::message::{LogPage, Reply, Request, RequestEnvelope, Response};
use crate::profile::ProfileView;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub use paging::import_batches;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("agent not reachable at {socket}: {reason}")]
    Unavailable { socket: PathBuf, reason: String },
    #[error("agent did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("agent answered nonsense: {0}")]
    Protocol(String),
    #[error(transparent)]
    Api(ApiError),
}

impl ClientError {
    /// The contract error code: every transport failure is `unavailable`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Api(error) => error.code,
            _ => ErrorCode::Unavailable,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
    /// When set, the uid the process that listens on the socket must have.
    peer_uid: Option<u32>,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
            peer_uid: None,
        }
    }

    /// Talk only to a peer running as `uid`: right after connecting, before a byte of the
    /// request is sent, the socket's peer credentials (`SO_PEERCRED`, recorded by the kernel
    /// when the peer called listen(2)) must name that uid; otherwise the call fails as
    /// [`ClientError::Unavailable`]. The PAM module requires root, so that a socket some other
    /// account bound (whatever path led to it) never sees a code.
    pub fn require_peer_uid(mut self, uid: u32) -> Self {
        self.peer_uid = Some(uid);
        self
    }

    /// The uid [`Self::require_peer_uid`] set, if any.
    pub fn required_peer_uid(&self) -> Option<u32> {
        self.peer_uid
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and waits for its reply, all within the client's timeout.
    pub fn call(&self, request: Request) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + self.timeout;
        // The request may carry a code: it is serialized into a wiped buffer only (see
        // `encode`), before the connection, so no syscall waits on it.
        let payload = encode(&RequestEnvelope::new(request))?;
        let stream = self.connect(deadline)?;
        self.check_peer(&stream)?;
        let mut io = DeadlineIo::new(&stream, deadline);
        // One sendmsg(2) for the length prefix and the payload.
        write_frame(&mut io, &payload).map_err(|e| self.transport_error(e))?;
        // Wait for the answer first, so the reply (prefix and payload, sent together) comes in
        // with one recv(2) into a wiped buffer.
        wait_for(&stream, PollFlags::POLLIN, deadline)
            .map_err(|e| self.transport_error(e.into()))?;
        let mut reader = Prefetch::new(io);
        let reply = Zeroizing::new(
            read_frame(&mut reader, MAX_REPLY_LEN).map_err(|e| self.transport_error(e))?,
        );
        drop(reader);
        let response: Response = serde_json::from_slice(&reply)
            .map_err(|e| ClientError::Protocol(format!("undecodable reply: {e}")))?;
        Result::<Reply, ApiError>::from(response).map_err(ClientError::Api)
    }

    /// Every profile, following the agent's pages (see [`paging::list_all`]).
    pub fn list_all(&self) -> Result<Vec<ProfileView>, ClientError> {
        paging::list_all(|request| self.call(request))
    }

    /// Up to `limit` audit entries, newest first, following the agent's pages (see
    /// [`paging::log_pages`]).
    pub fn log(
        &self,
        account: Option<String>,
        since: Option<i64>,
        limit: u32,
    ) -> Result<LogPage, ClientError> {
        paging::log_pages(|request| self.call(request), account, since, limit)
    }

    fn transport_error(&self, error: FrameError) -> ClientError {
        match error {
            FrameError::TimedOut => ClientError::TimedOut(self.timeout),
            FrameError::Closed | FrameError::Truncated => {
                ClientError::Protocol("agent closed the connection without a reply".into())
            }
            FrameError::TooLarge { .. } | FrameError::Empty => {
                ClientError::Protocol(error.to_string())
            }
            FrameError::Io(e) => self.unavailable(e.to_string()),
        }
    }

    fn unavailable(&self, reason: impl Into<String>) -> ClientError {
        ClientError::Unavailable {
            socket: self.socket.clone(),
            reason: reason.into(),
        }
    }

    /// Refuses a peer whose uid is not the one [`Self::require_peer_uid`] asked for.
    fn check_peer(&self, stream: &UnixStream) -> Result<(), ClientError> {
        let Some(expected) = self.peer_uid else {
            return Ok(());
        };
        let credentials = socket::getsockopt(stream, sockopt::PeerCredentials).map_err(|e| {
            self.unavailable(format!(
                "cannot read the socket peer's credentials: {}",
                e.desc()
            ))
        })?;
        let uid = credentials.uid();
        if uid == expected {
            return Ok(());
        }
        let wanted = if expected == 0 {
            "root".to_owned()
        } else {
            format!("uid {expected}")
        };
        Err(self.unavailable(format!(
            "the socket's peer is uid {uid}, not {wanted} (pid {}): refusing to send it \
             anything",
            credentials.pid()
        )))
    }

    fn connect(&self, deadline: Instant) -> Result<UnixStream, ClientError> {
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| self.unavailable(e.desc()))?;
        let address = UnixAddr::new(&self.socket).map_err(|e| self.unavailable(e.desc()))?;
        loop {
            match socket::connect(fd.as_raw_fd(), &address) {
                Ok(()) => break,
                // A full backlog (agent stopped or overloaded): retry until the deadline.
                Err(Errno::EAGAIN | Errno::EINTR) => {
                    if Instant::now() >= deadline {
                        return Err(ClientError::TimedOut(self.timeout));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(Errno::EINPROGRESS) => {
                    wait_for(&fd, PollFlags::POLLOUT, deadline)
                        .map_err(|_| ClientError::TimedOut(self.timeout))?;
                    break;
                }
                Err(e) => return Err(self.unavailable(e.desc())),
            }
        }
        // Left non-blocking: `DeadlineIo` waits with poll(2) up to the deadline.
        Ok(UnixStream::from(fd))
    }
}

/// Room for the request on the first try: every request the PAM module sends (an account,
/// a code and four login items of at most 256 bytes each) fits, so the buffer to wipe stays
/// small. A larger request (an import batch, a long comment) is measured and built again in a
/// buffer of exactly its size.
const FIRST_REQUEST_CAPACITY: usize = 2048;

/// Serializes a request into a buffer that is wiped when dropped and never reallocates (which
/// would leave an unwiped copy in freed memory): the request may carry a code.
fn encode(envelope: &RequestEnvelope) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    let too_large = || {
        ClientError::Protocol(format!(
            "request exceeds the agent's {MAX_FRAME_LEN}-byte limit"
        ))
    };
    let fill = |capacity: usize| {
        let mut payload = Zeroizing::new(Vec::with_capacity(capacity));
        serde_json::to_writer(NoRealloc(&mut payload), envelope).map(|()| payload)
    };
    let payload = match fill(FIRST_REQUEST_CAPACITY) {
        Ok(payload) => payload,
        Err(e) if e.is_io() => {
            // Only counted, never stored: no copy of the request is made to learn its size.
            let mut counter = Counter(0);
            serde_json::to_writer(&mut counter, envelope)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            if counter.0 > MAX_FRAME_LEN {
                return Err(too_large());
            }
            fill(counter.0).map_err(|e| ClientError::Protocol(e.to_string()))?
        }
        Err(e) => return Err(ClientError::Protocol(e.to_string())),
    };
    if payload.len() > MAX_FRAME_LEN {
        return Err(too_large());
    }
    Ok(payload)
}

/// Appends to a buffer only within the capacity it already has: growing a `Vec` moves its
/// bytes and frees the old allocation unwiped, so a buffer that must be wiped (it holds a code)
/// is given all the room it may use up front, and a write beyond it fails instead.
struct NoRealloc<'a>(&'a mut Vec<u8>);

impl Write for NoRealloc<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.0.capacity() - self.0.len() {
            return Err(io::Error::other("the buffer is full"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts the bytes written to it and keeps none (a request may hold a code).
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes read ahead from the agent, kept in a small buffer that is wiped when dropped (a reply
/// may carry a secret or emergency codes), so a reply's length prefix and its payload come in
/// with one recv(2). Reads as large as the buffer go straight to the caller's buffer.
struct Prefetch<'a> {
    io: DeadlineIo<'a>,
    buffer: Zeroizing<Vec<u8>>,
    start: usize,
    end: usize,
}

/// Enough for any reply to a PAM login; larger replies (pages of profiles) mostly bypass it.
const PREFETCH_BYTES: usize = 1024;

impl<'a> Prefetch<'a> {
    fn new(io: DeadlineIo<'a>) -> Self {
        Self {
            io,
            buffer: Zeroizing::new(vec![0u8; PREFETCH_BYTES]),
            start: 0,
            end: 0,
        }
    }
}

impl Read for Prefetch<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            if out.len() >= self.buffer.len() {
                return self.io.read(out);
            }
            self.end = self.io.read(&mut self.buffer[..])?;
            self.start = 0;
        }
        let ahead = self.buffer.get(self.start..self.end).unwrap_or_default();
        let n = ahead.len().min(out.len());
        out[..n].copy_from_slice(&ahead[..n]);
        self.start += n;
        Ok(n)
    }
}

/// Waits until `fd` is ready for `events` (POLLIN, POLLOUT), at most until `deadline`. Ready
/// includes hang-ups and errors, which the following recv or send then reports.
fn wait_for(fd: &impl AsFd, events: PollFlags, deadline: Instant) -> io::Result<()> {
    loop {
        let left = remaining(deadline)?;
        // Rounded up, so a wait never ends just before the deadline and spins; at most
        // about 65 s per poll, polled again while time remains.
        let millis = left.as_micros().div_ceil(1000);
        let timeout = PollTimeout::from(u16::try_from(millis).unwrap_or(u16::MAX));
        let mut fds = [PollFd::new(fd.as_fd(), events)];
        match poll(&mut fds, timeout) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

/// A stream view that holds every read and write to one deadline, so a peer trickling bytes
/// cannot stretch an exchange past it. Used by the agent as well; the stream may be blocking
/// or not.
///
/// Each read and write is first tried without blocking (`MSG_DONTWAIT`); only when the socket
/// is not ready does it wait, with poll(2), for what is left of the deadline. So no socket
/// option is set per call, and no call blocks past the deadline.
///
/// Writes go out with `sendmsg(2)` and `MSG_NOSIGNAL`, never `write(2)`/`writev(2)`: a peer
/// that closed the connection is an `EPIPE` error, not a SIGPIPE for the whole process (the
/// PAM module runs inside host programs that keep SIGPIPE's default action, death). This does
/// not rest on how the standard library writes to a `UnixStream` (which changed between
/// releases). A vectored write (a frame's length prefix and its payload) is one `sendmsg(2)`
/// straight from the caller's buffers: nothing is copied.
pub struct DeadlineIo<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl<'a> DeadlineIo<'a> {
    pub fn new(stream: &'a UnixStream, deadline: Instant) -> Self {
        Self { stream, deadline }
    }

    /// Runs `op` (one non-blocking socket call) until it does not report "would block",
    /// waiting for `events` in between; a deadline already past is a timeout before `op` runs.
    fn retry(
        &self,
        events: PollFlags,
        mut op: impl FnMut() -> nix::Result<usize>,
    ) -> io::Result<usize> {
        remaining(self.deadline)?;
        loop {
            match op() {
                Ok(n) => return Ok(n),
                Err(Errno::EAGAIN) => wait_for(self.stream, events, self.deadline)?,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }
}

impl Read for DeadlineIo<'_> {
    /// One recv(2), after waiting (up to the deadline) for something to read.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.stream.as_raw_fd();
        self.retry(PollFlags::POLLIN, || {
            socket::recv(fd, buf, MsgFlags::MSG_DONTWAIT)
        })
    }
}

impl Write for DeadlineIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// One sendmsg(2) with `MSG_NOSIGNAL` for all the slices, after waiting (up to the
    /// deadline) for room when the socket's buffer is full.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let fd = self.stream.as_raw_fd();
        self.retry(PollFlags::POLLOUT, || {
            socket::sendmsg::<UnixAddr>(
                fd,
                bufs,
                &[],
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
                None,
            )
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::write_frame;
    use std::os::unix::net::UnixListener;
    use std::thread::JoinHandle;

    fn list() -> Request {
        Request::List {
            after: None,
            limit: None,
        }
    }

    /// Accepts one connection on `listener` and hands back every byte the client sent, after
    /// answering its frame (if one arrives) with an empty list of profiles.
    fn one_shot_agent(listener: UnixListener) -> JoinHandle<Option<Vec<u8>>> {
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            let mut received = Vec::new();
            let mut prefix = [0u8; 4];
            let mut filled = 0;
            while filled < prefix.len() {
                match stream.read(&mut prefix[filled..]) {
                    Ok(0) | Err(_) => return Some(received),
                    Ok(n) => {
                        received.extend_from_slice(&prefix[filled..filled + n]);
                        filled += n;
                    }
                }
            }
            let mut payload = vec![0u8; u32::from_be_bytes(prefix) as usize];
            stream.read_exact(&mut payload).ok()?;
            received.extend_from_slice(&payload);
            let reply = serde_json::to_vec(&Response::Ok(Reply::Profiles(Vec::new()))).ok()?;
            write_frame(&mut stream, &reply).ok()?;
            Some(received)
        })
    }

    fn temp_socket(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pam-totp-proto-{}-{name}.sock", std::process::id()))
    }

    /// A socket this process listens on, at a fresh temp path (asserted to bind).
    fn listening(name: &str) -> Option<(PathBuf, UnixListener)> {
        let path = temp_socket(name);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path);
        assert!(listener.is_ok(), "bind {}: {listener:?}", path.display());
        Some((path, listener.ok()?))
    }

    #[test]
    fn missing_socket_is_unavailable() {
        let client = Client::new("/nonexistent/pam-totp.sock", Duration::from_secs(1));
        let error = client
            .call(Request::List {
                after: None,
                limit: None,
            })
            .err();
        assert_eq!(error.map(|e| e.code()), Some(ErrorCode::Unavailable));
    }

    #[test]
    fn silent_agent_times_out_near_the_deadline() {
        let path = temp_socket("silent");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path);
        assert!(listener.is_ok());
        let client = Client::new(&path, Duration::from_millis(200));
        let error = client
            .call(Request::List {
                after: None,
                limit: None,
            })
            .err();
        assert!(matches!(error, Some(ClientError::TimedOut(_))), "{error:?}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_peer_of_another_uid_is_refused_before_a_byte_is_sent() {
        let Some((path, listener)) = listening("peer-other") else {
            return;
        };
        let agent = one_shot_agent(listener);
        // This process listens, so the peer has our uid; demand another one.
        let ours = nix::unistd::getuid().as_raw();
        let other = ours.wrapping_add(1);
        let client = Client::new(&path, Duration::from_secs(2)).require_peer_uid(other);
        let error = client.call(list()).err();
        drop(client);
        let received = agent.join().ok().flatten();
        let _ = std::fs::remove_file(&path);
        let reason = match &error {
            Some(ClientError::Unavailable { reason, .. }) => reason.clone(),
            unexpected => format!("not Unavailable: {unexpected:?}"),
        };
        assert!(
            reason.contains(&format!("peer is uid {ours}, not uid {other}")),
            "{reason}"
        );
        assert_eq!(error.map(|e| e.code()), Some(ErrorCode::Unavailable));
        assert_eq!(received.as_deref(), Some(&[][..]), "the client sent bytes");
    }

    #[test]
    fn root_is_named_when_root_is_required() {
        let Some((path, listener)) = listening("peer-root") else {
            return;
        };
        let agent = one_shot_agent(listener);
        let ours = nix::unistd::getuid().as_raw();
        let result = Client::new(&path, Duration::from_secs(2))
            .require_peer_uid(0)
            .call(list());
        let _ = agent.join();
        let _ = std::fs::remove_file(&path);
        if ours == 0 {
            assert!(result.is_ok(), "{result:?}");
        } else {
            let reason = match result {
                Err(ClientError::Unavailable { reason, .. }) => reason,
                unexpected => format!("not Unavailable: {unexpected:?}"),
            };
            assert!(
                reason.contains(&format!("peer is uid {ours}, not root")),
                "{reason}"
            );
        }
    }

    #[test]
    fn a_peer_of_the_required_uid_is_talked_to() {
        let Some((path, listener)) = listening("peer-same") else {
            return;
        };
        let agent = one_shot_agent(listener);
        let ours = nix::unistd::getuid().as_raw();
        let result = Client::new(&path, Duration::from_secs(2))
            .require_peer_uid(ours)
            .call(list());
        let received = agent.join().ok().flatten();
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(&result, Ok(Reply::Profiles(p)) if p.is_empty()),
            "{result:?}"
        );
        assert!(received.is_some_and(|r| r.len() > 4));
    }

    #[test]
    fn without_a_required_uid_any_peer_is_talked_to() {
        let Some((path, listener)) = listening("peer-any") else {
            return;
        };
        let agent = one_shot_agent(listener);
        let result = Client::new(&path, Duration::from_secs(2)).call(list());
        let _ = agent.join();
        let _ = std::fs::remove_file(&path);
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn the_request_buffer_never_reallocates() {
        let mut buffer = Vec::with_capacity(8);
        let start = buffer.as_ptr();
        let capacity = buffer.capacity();
        let mut writer = NoRealloc(&mut buffer);
        assert!(writer.write_all(b"1234").is_ok());
        assert!(writer.write_all(&vec![b'x'; capacity]).is_err());
        assert_eq!(buffer, b"1234");
        assert_eq!((buffer.as_ptr(), buffer.capacity()), (start, capacity));
    }

    /// A connected pair of SOCK_SEQPACKET sockets: every sendmsg(2) arrives as one message, so
    /// the receiver sees how many sends a frame took.
    fn packet_pair() -> Option<(UnixStream, UnixStream)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ok()?;
        Some((UnixStream::from(a), UnixStream::from(b)))
    }

    #[test]
    fn a_frame_goes_out_in_one_send() {
        let pair = packet_pair();
        assert!(pair.is_some(), "socketpair");
        let Some((ours, theirs)) = pair else { return };
        let payload = b"{\"v\":1,\"request\":{\"op\":\"authenticate\",\"code\":\"123456\"}}";
        let deadline = Instant::now() + Duration::from_secs(2);
        let written = write_frame(&mut DeadlineIo::new(&ours, deadline), payload);
        assert!(written.is_ok(), "{written:?}");
        let mut message = vec![0u8; 4096];
        let first = socket::recv(theirs.as_raw_fd(), &mut message, MsgFlags::MSG_DONTWAIT);
        // One message holds the whole frame: prefix and payload were one sendmsg(2).
        assert_eq!(first, Ok(4 + payload.len()));
        assert_eq!(&message[..4], &(payload.len() as u32).to_be_bytes());
        assert_eq!(&message[4..4 + payload.len()], &payload[..]);
        let second = socket::recv(theirs.as_raw_fd(), &mut message, MsgFlags::MSG_DONTWAIT);
        assert_eq!(second, Err(Errno::EAGAIN), "a second message was sent");
    }

    #[test]
    fn a_write_to_a_closed_peer_is_an_error_not_a_signal() {
        let pair = UnixStream::pair();
        assert!(pair.is_ok(), "socketpair: {pair:?}");
        let Ok((ours, theirs)) = pair else { return };
        drop(theirs);
        let deadline = Instant::now() + Duration::from_secs(2);
        // Without MSG_NOSIGNAL this would raise SIGPIPE and end the test process.
        let result = write_frame(&mut DeadlineIo::new(&ours, deadline), b"{}");
        assert!(
            matches!(&result, Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe),
            "{result:?}"
        );
    }

    #[test]
    fn a_full_socket_times_out_at_the_deadline() {
        let pair = UnixStream::pair();
        assert!(pair.is_ok(), "socketpair: {pair:?}");
        let Ok((ours, _theirs)) = pair else { return };
        // Blocking, as the agent's accepted streams are: the wait must still end in time.
        assert!(ours.set_nonblocking(false).is_ok());
        let start = Instant::now();
        let deadline = start + Duration::from_millis(200);
        let mut io = DeadlineIo::new(&ours, deadline);
        let chunk = vec![b'x'; 64 * 1024];
        let result = loop {
            match io.write(&chunk) {
                Ok(_) if start.elapsed() < Duration::from_secs(5) => {}
                other => break other,
            }
        };
        let waited = start.elapsed();
        assert!(
            matches!(&result, Err(e) if e.kind() == io::ErrorKind::TimedOut),
            "{result:?}"
        );
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        // A read with nothing to read times out the same way, on a blocking stream too.
        let mut buf = [0u8; 4];
        let read =
            DeadlineIo::new(&ours, Instant::now() + Duration::from_millis(50)).read(&mut buf);
        assert!(
            matches!(&read, Err(e) if e.kind() == io::ErrorKind::TimedOut),
            "{read:?}"
        );
        // A deadline already past fails before any syscall waits.
        let past = DeadlineIo::new(&ours, Instant::now()).read(&mut buf);
        assert!(
            matches!(&past, Err(e) if e.kind() == io::ErrorKind::TimedOut),
            "{past:?}"
        );
    }

    #[test]
    fn replies_of_any_size_read_back_through_the_prefetch_buffer() {
        let pair = UnixStream::pair();
        assert!(pair.is_ok(), "socketpair: {pair:?}");
        let Ok((ours, theirs)) = pair else { return };
        let deadline = Instant::now() + Duration::from_secs(5);
        let sizes = [
            1,
            60,
            PREFETCH_BYTES - 4,
            PREFETCH_BYTES,
            3 * PREFETCH_BYTES + 7,
        ];
        let frames: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| (0..n).map(|i| (i % 251) as u8).collect())
            .collect();
        let sender = {
            let frames = frames.clone();
            std::thread::spawn(move || {
                let mut io = DeadlineIo::new(&theirs, Instant::now() + Duration::from_secs(5));
                frames.iter().all(|f| write_frame(&mut io, f).is_ok())
            })
        };
        let mut reader = Prefetch::new(DeadlineIo::new(&ours, deadline));
        for frame in &frames {
            let got = read_frame(&mut reader, MAX_REPLY_LEN);
            assert_eq!(got.ok().as_ref(), Some(frame), "{} bytes", frame.len());
        }
        assert!(sender.join().unwrap_or(false));
    }

    #[test]
    fn a_request_is_built_in_a_buffer_of_the_right_size() {
        let small = encode(&RequestEnvelope::new(Request::Authenticate {
            account: "alice".into(),
            uid: Some(1000),
            code: crate::SecretString::new("123456".into()),
            context: crate::LoginContext::default(),
        }));
        let small = small.ok().unwrap_or_default();
        assert!(small.len() < FIRST_REQUEST_CAPACITY, "{}", small.len());
        assert_eq!(small.capacity(), FIRST_REQUEST_CAPACITY);
        // Larger than the first guess: measured, then built once more in a buffer of exactly
        // its size (never grown, which would leave an unwiped copy behind).
        let comment = "c".repeat(10_000);
        let large = encode(&RequestEnvelope::new(Request::SetComment {
            account: "alice".into(),
            comment: comment.clone(),
        }));
        let large = large.ok().unwrap_or_default();
        assert!(large.len() > 10_000);
        assert_eq!(large.capacity(), large.len());
        let text = String::from_utf8_lossy(&large);
        assert!(text.contains(&comment), "{text}");
    }

    #[test]
    fn an_oversize_request_is_refused_unsent() {
        let Some((path, listener)) = listening("oversize") else {
            return;
        };
        let client = Client::new(&path, Duration::from_secs(2));
        let error = client
            .call(Request::SetComment {
                account: "alice".into(),
                comment: "x".repeat(MAX_FRAME_LEN),
            })
            .err();
        // Refused before connecting: the agent never even sees a connection.
        assert!(listener.set_nonblocking(true).is_ok());
        let accepted = listener.accept();
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(&error, Some(ClientError::Protocol(m)) if m.contains("exceeds")),
            "{error:?}"
        );
        assert!(
            matches!(&accepted, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "the client connected: {accepted:?}"
        );
    }
}
