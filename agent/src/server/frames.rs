//! One request frame read, and one reply frame written, without ever blocking: each call
//! does what the socket allows now and says whether the frame is complete. The framing rule
//! (a 4-byte big-endian length, then that many bytes) is `pam_totp_proto::frame`'s.
//!
//! Both buffers may hold secrets (a code in a request; a new secret or emergency codes in a
//! reply), so they are `Zeroizing` and never reallocated in place: where one must grow, the
//! bytes move to a new buffer and the old one is wiped as it is dropped.

use nix::errno::Errno;
use nix::sys::socket::{recv, send, MsgFlags};
use pam_totp_proto::frame::{FrameError, MAX_FRAME_LEN, MAX_REPLY_LEN};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use zeroize::Zeroizing;

const PREFIX: usize = 4;
/// First buffer of a request: a login request is about 170 bytes (a few hundred with long
/// PAM items), so one read takes the length prefix and the whole frame; a longer request moves
/// to a buffer of its announced length. Small, because the buffer is zeroed when allocated and
/// wiped when dropped, byte by byte (and at 1 KiB and more glibc's malloc takes a slower path).
const FIRST_READ: usize = 512 - PREFIX;
/// First buffer of a reply: a login's reply is about 60 bytes; a longer one moves as it grows.
const FIRST_REPLY: usize = 256;

/// What a non-blocking step reached.
pub(super) enum Progress {
    /// The frame is complete.
    Done,
    /// The socket has nothing more for now: wait until it is ready again.
    Waiting,
}

/// A request frame being read.
pub(super) struct RequestReader {
    buffer: Zeroizing<Vec<u8>>,
    filled: usize,
}

impl RequestReader {
    pub(super) fn new() -> Self {
        Self {
            buffer: Zeroizing::new(vec![0; PREFIX + FIRST_READ]),
            filled: 0,
        }
    }

    /// The frame's length, once its prefix is in.
    fn frame_len(&self) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = self.buffer.get(..PREFIX).filter(|_| self.filled >= PREFIX) else {
            return Ok(None);
        };
        let mut bytes = [0; PREFIX];
        bytes.copy_from_slice(prefix);
        let len = usize::try_from(u32::from_be_bytes(bytes)).unwrap_or(usize::MAX);
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        Ok(Some(len))
    }

    /// Reads what the socket has, up to the end of the frame (never past it).
    pub(super) fn read_from(&mut self, stream: &UnixStream) -> Result<Progress, FrameError> {
        loop {
            let wanted = match self.frame_len()? {
                Some(len) => PREFIX + len,
                None => self.buffer.len(),
            };
            if self.filled == wanted {
                return Ok(Progress::Done);
            }
            if wanted > self.buffer.len() {
                let mut larger = Zeroizing::new(vec![0; wanted]);
                larger[..self.filled].copy_from_slice(&self.buffer[..self.filled]);
                // The smaller buffer is wiped as it is dropped here.
                self.buffer = larger;
            }
            let room = &mut self.buffer[self.filled..wanted];
            match recv(stream.as_raw_fd(), room, MsgFlags::MSG_DONTWAIT) {
                Ok(0) if self.filled == 0 => return Err(FrameError::Closed),
                Ok(0) => return Err(FrameError::Truncated),
                Ok(n) => self.filled += n,
                Err(Errno::EAGAIN) => return Ok(Progress::Waiting),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(FrameError::Io(e.into())),
            }
        }
    }

    /// The request's bytes, once [`Self::read_from`] said `Done`.
    pub(super) fn frame(&self) -> &[u8] {
        self.buffer.get(PREFIX..self.filled).unwrap_or_default()
    }
}

/// A reply frame (prefix and payload in one buffer, so one send can take it all).
pub(super) struct ReplyWriter {
    buffer: Zeroizing<Vec<u8>>,
    sent: usize,
}

impl ReplyWriter {
    /// Encodes `reply` as one frame.
    pub(super) fn encode(reply: &impl serde::Serialize) -> Result<Self, String> {
        let mut out = WipingBuffer(Zeroizing::new(Vec::with_capacity(FIRST_REPLY)));
        out.0.extend_from_slice(&[0; PREFIX]);
        serde_json::to_writer(&mut out, reply).map_err(|e| e.to_string())?;
        let mut buffer = out.0;
        let len = buffer.len() - PREFIX;
        if len > MAX_REPLY_LEN {
            return Err(format!(
                "a reply of {len} bytes exceeds the {MAX_REPLY_LEN}-byte limit"
            ));
        }
        let prefix = u32::try_from(len)
            .map_err(|_| format!("a reply of {len} bytes cannot be framed"))?
            .to_be_bytes();
        buffer[..PREFIX].copy_from_slice(&prefix);
        Ok(Self { buffer, sent: 0 })
    }

    /// Sends what the socket takes now. `MSG_NOSIGNAL`: a peer that hung up is an error
    /// for this connection, never a SIGPIPE for the agent.
    pub(super) fn write_to(&mut self, stream: &UnixStream) -> Result<Progress, FrameError> {
        while self.sent < self.buffer.len() {
            let rest = &self.buffer[self.sent..];
            match send(
                stream.as_raw_fd(),
                rest,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(0) => return Err(FrameError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.sent += n,
                Err(Errno::EAGAIN) => return Ok(Progress::Waiting),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(FrameError::Io(e.into())),
            }
        }
        Ok(Progress::Done)
    }
}

/// A `Vec` writer that grows by moving its bytes to a new buffer and wiping the old one,
/// where `Vec`'s own growth would free the old allocation unwiped.
struct WipingBuffer(Zeroizing<Vec<u8>>);

impl Write for WipingBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let needed = self.0.len() + bytes.len();
        if needed > self.0.capacity() {
            let mut larger = Zeroizing::new(Vec::with_capacity(needed.max(2 * self.0.capacity())));
            larger.extend_from_slice(&self.0);
            self.0 = larger;
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use pam_totp_proto::frame::{read_frame, write_frame};

    fn read_all(reader: &mut RequestReader, stream: &UnixStream) -> Result<Progress, FrameError> {
        reader.read_from(stream)
    }

    #[test]
    fn a_request_in_pieces_is_read_up_to_its_end_and_no_further() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut reader = RequestReader::new();
        assert!(matches!(
            read_all(&mut reader, &server),
            Ok(Progress::Waiting)
        ));
        let payload = vec![b'x'; 5000];
        let mut framed = Vec::new();
        write_frame(&mut framed, &payload).unwrap();
        client.write_all(&framed[..2]).unwrap();
        assert!(matches!(
            read_all(&mut reader, &server),
            Ok(Progress::Waiting)
        ));
        client.write_all(&framed[2..3000]).unwrap();
        assert!(matches!(
            read_all(&mut reader, &server),
            Ok(Progress::Waiting)
        ));
        // The rest, and bytes after the frame that must stay unread.
        client.write_all(&framed[3000..]).unwrap();
        client.write_all(b"after").unwrap();
        assert!(matches!(read_all(&mut reader, &server), Ok(Progress::Done)));
        assert_eq!(reader.frame(), &payload[..]);
        let mut rest = [0; 5];
        assert_eq!(
            recv(server.as_raw_fd(), &mut rest, MsgFlags::empty()).unwrap(),
            5
        );
        assert_eq!(&rest, b"after");
    }

    #[test]
    fn hostile_prefixes_and_hang_ups_are_errors() {
        for (bytes, expected) in [
            (vec![0, 0, 0, 0], "empty frame"),
            ((u32::MAX).to_be_bytes().to_vec(), "exceeds"),
            (vec![0, 0, 0, 9, b'{'], "inside a frame"),
            (vec![], "closed"),
        ] {
            let (mut client, server) = UnixStream::pair().unwrap();
            client.write_all(&bytes).unwrap();
            drop(client);
            let error = RequestReader::new().read_from(&server).err().unwrap();
            assert!(error.to_string().contains(expected), "{bytes:?}: {error}");
        }
    }

    #[test]
    fn a_reply_larger_than_the_socket_buffer_goes_out_over_several_calls() {
        let (client, server) = UnixStream::pair().unwrap();
        let big = "y".repeat(3 * 1024 * 1024);
        let mut writer = ReplyWriter::encode(&big).unwrap();
        assert!(matches!(writer.write_to(&server), Ok(Progress::Waiting)));
        let reading = std::thread::spawn(move || read_frame(&mut &client, MAX_REPLY_LEN));
        while let Progress::Waiting = writer.write_to(&server).unwrap() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let frame = reading.join().unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<String>(&frame).unwrap(), big);
    }

    #[test]
    fn a_reply_to_a_peer_that_hung_up_is_an_error_not_a_signal() {
        let (client, server) = UnixStream::pair().unwrap();
        drop(client);
        let mut writer = ReplyWriter::encode(&"reply").unwrap();
        assert!(writer.write_to(&server).is_err());
    }

    #[test]
    fn the_wiping_buffer_keeps_every_byte_as_it_grows() {
        let mut buffer = WipingBuffer(Zeroizing::new(Vec::with_capacity(4)));
        for chunk in [&b"abc"[..], b"defgh", &[b'z'; 100]] {
            buffer.write_all(chunk).unwrap();
        }
        assert_eq!(&buffer.0[..8], b"abcdefgh");
        assert_eq!(buffer.0.len(), 108);
    }
}
