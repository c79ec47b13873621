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
use std::io::{self, Read, Write};
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
        let stream = self.connect(deadline)?;
        self.check_peer(&stream)?;
        let mut io = DeadlineIo::new(&stream, deadline);
        // The request may carry a code: build it in a buffer that is wiped afterwards, and
        // that never reallocates (which would leave an unwiped copy in freed memory).
        let mut payload = Zeroizing::new(Vec::with_capacity(MAX_FRAME_LEN));
        let too_large = || {
            ClientError::Protocol(format!(
                "request exceeds the agent's {MAX_FRAME_LEN}-byte limit"
            ))
        };
        serde_json::to_writer(NoRealloc(&mut payload), &RequestEnvelope::new(request)).map_err(
            |e| {
                if e.is_io() {
                    too_large()
                } else {
                    ClientError::Protocol(e.to_string())
                }
            },
        )?;
        if payload.len() > MAX_FRAME_LEN {
            return Err(too_large());
        }
        write_frame(&mut io, &payload).map_err(|e| self.transport_error(e))?;
        let reply = Zeroizing::new(
            read_frame(&mut io, MAX_REPLY_LEN).map_err(|e| self.transport_error(e))?,
        );
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
                    wait_writable(&fd, deadline)
                        .map_err(|_| ClientError::TimedOut(self.timeout))?;
                    break;
                }
                Err(e) => return Err(self.unavailable(e.desc())),
            }
        }
        let stream = UnixStream::from(fd);
        stream
            .set_nonblocking(false)
            .map_err(|e| self.unavailable(e.to_string()))?;
        Ok(stream)
    }
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

fn wait_writable(fd: &impl AsFd, deadline: Instant) -> io::Result<()> {
    let remaining = remaining(deadline)?;
    let millis = u16::try_from(remaining.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
    match poll(&mut fds, PollTimeout::from(millis)) {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err(io::ErrorKind::TimedOut.into()),
        Err(e) => Err(io::Error::from(e)),
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

/// A stream view that applies what is left of one deadline to every read and write, so a
/// peer trickling bytes cannot stretch an exchange past it. Used by the agent as well.
///
/// Writes go out with `send(2)` and `MSG_NOSIGNAL`, never `write(2)`/`writev(2)`: a peer that
/// closed the connection is an `EPIPE` error, not a SIGPIPE for the whole process (the PAM
/// module runs inside host programs that keep SIGPIPE's default action, death). This does not
/// rest on how the standard library writes to a `UnixStream` (which changed between releases).
pub struct DeadlineIo<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl<'a> DeadlineIo<'a> {
    pub fn new(stream: &'a UnixStream, deadline: Instant) -> Self {
        Self { stream, deadline }
    }
}

impl Read for DeadlineIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream
            .set_read_timeout(Some(remaining(self.deadline)?))?;
        (&mut &*self.stream).read(buf)
    }
}

impl Write for DeadlineIo<'_> {
    /// One `send(2)` with `MSG_NOSIGNAL`. (`write_vectored` is the default: the first
    /// non-empty slice, through this; `write_frame` resumes with the rest, so a frame's length
    /// prefix and its payload go out as two sends, without being copied into one buffer.)
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SO_SNDTIMEO bounds a blocking send(2) like a write(2): it fails with EAGAIN
        // (WouldBlock, a timeout to the frame layer) when the deadline passes.
        self.stream
            .set_write_timeout(Some(remaining(self.deadline)?))?;
        socket::send(self.stream.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL).map_err(io::Error::from)
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

    #[test]
    fn an_oversize_request_is_refused_unsent() {
        let Some((path, listener)) = listening("oversize") else {
            return;
        };
        let agent = one_shot_agent(listener);
        let client = Client::new(&path, Duration::from_secs(2));
        let error = client
            .call(Request::SetComment {
                account: "alice".into(),
                comment: "x".repeat(MAX_FRAME_LEN),
            })
            .err();
        drop(client);
        let received = agent.join().ok().flatten();
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(&error, Some(ClientError::Protocol(m)) if m.contains("exceeds")),
            "{error:?}"
        );
        assert_eq!(received.as_deref(), Some(&[][..]), "the client sent bytes");
    }
}
