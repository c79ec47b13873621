//! Blocking client with one deadline for the whole exchange: connect, send, receive.
//!
//! No threads and no async runtime, so the PAM module can use it inside any host program.
//! The connect is non-blocking so a stopped agent with a full backlog cannot hang a login.

use crate::error::{ApiError, ErrorCode};
use crate::frame::{read_frame, write_frame, FrameError, MAX_FRAME_LEN, MAX_REPLY_LEN};
use crate::message::{Reply, Request, RequestEnvelope, Response};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

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
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and waits for its reply, all within the client's timeout.
    pub fn call(&self, request: Request) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let stream = self.connect(deadline)?;
        let mut io = DeadlineIo::new(&stream, deadline);
        // The request may carry a code: build it in a buffer that is wiped afterwards.
        let mut payload = Zeroizing::new(Vec::with_capacity(512));
        serde_json::to_writer(&mut *payload, &RequestEnvelope::new(request))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if payload.len() > MAX_FRAME_LEN {
            return Err(ClientError::Protocol(format!(
                "request of {} bytes exceeds the agent's {MAX_FRAME_LEN}-byte limit",
                payload.len()
            )));
        }
        write_frame(&mut io, &payload).map_err(|e| self.transport_error(e))?;
        let reply = Zeroizing::new(
            read_frame(&mut io, MAX_REPLY_LEN).map_err(|e| self.transport_error(e))?,
        );
        let response: Response = serde_json::from_slice(&reply)
            .map_err(|e| ClientError::Protocol(format!("undecodable reply: {e}")))?;
        Result::<Reply, ApiError>::from(response).map_err(ClientError::Api)
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
            match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &address) {
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
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream
            .set_write_timeout(Some(remaining(self.deadline)?))?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn temp_socket(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pam-totp-proto-{}-{name}.sock", std::process::id()))
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
}
