//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes of JSON.
//!
//! The length is checked against the maximum before anything is allocated, so a hostile
//! prefix cannot make the reader reserve memory.

use std::io::{self, IoSlice, Read, Write};

/// Largest request the agent reads: every request is far smaller, and anyone can send one.
pub const MAX_FRAME_LEN: usize = 64 * 1024;
/// Largest reply a client reads. Replies come from the agent (a path only root controls) and
/// may carry a page of profiles or audit rows; still bounded, so memory stays bounded.
pub const MAX_REPLY_LEN: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("peer closed the connection")]
    Closed,
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("empty frame")]
    Empty,
    #[error("connection ended inside a frame")]
    Truncated,
    #[error("timed out")]
    TimedOut,
    #[error("i/o error: {0}")]
    Io(#[source] io::Error),
}

impl From<io::Error> for FrameError {
    fn from(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Self::TimedOut,
            io::ErrorKind::UnexpectedEof => Self::Truncated,
            _ => Self::Io(error),
        }
    }
}

/// Writes one frame of at most [`MAX_REPLY_LEN`] bytes (the reader applies its own limit).
///
/// The payload goes to the writer straight from the caller's buffer, after the 4-byte length
/// prefix, as two slices of a vectored write: it is never copied, so a request holding a code
/// stays only in the caller's (zeroizing) buffer. Partial and interrupted writes are resumed
/// where they stopped.
pub fn write_frame(writer: &mut impl Write, payload: &[u8]) -> Result<(), FrameError> {
    if payload.is_empty() {
        return Err(FrameError::Empty);
    }
    let too_large = || FrameError::TooLarge {
        len: payload.len(),
        max: MAX_REPLY_LEN,
    };
    if payload.len() > MAX_REPLY_LEN {
        return Err(too_large());
    }
    let len = u32::try_from(payload.len()).map_err(|_| too_large())?;
    let prefix = len.to_be_bytes();
    let total = prefix.len() + payload.len();
    let mut written = 0;
    while written < total {
        // What is left of the prefix (possibly nothing), then what is left of the payload.
        let rest_of_prefix = prefix.get(written..).unwrap_or_default();
        let rest_of_payload = payload
            .get(written.saturating_sub(prefix.len())..)
            .unwrap_or_default();
        let result = if rest_of_prefix.is_empty() {
            writer.write_vectored(&[IoSlice::new(rest_of_payload)])
        } else {
            writer.write_vectored(&[IoSlice::new(rest_of_prefix), IoSlice::new(rest_of_payload)])
        };
        match result {
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) if n > total - written => {
                return Err(FrameError::Io(io::Error::other(
                    "the writer reported more bytes than it was given",
                )))
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    writer.flush()?;
    Ok(())
}

/// Reads one frame of at most `max` bytes. A clean end of stream before the first byte is
/// `Closed`; an end anywhere later is `Truncated`.
pub fn read_frame(reader: &mut impl Read, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        match reader.read(&mut prefix[filled..]) {
            Ok(0) if filled == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    /// A reader that hands out at most one byte per call, like a slow socket.
    struct Trickle(Cursor<Vec<u8>>);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let end = buf.len().min(1);
            self.0.read(&mut buf[..end])
        }
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(write_frame(&mut out, payload).is_ok());
        out
    }

    #[test]
    fn round_trip() {
        let bytes = framed(b"{\"v\":1}");
        assert_eq!(&bytes[..4], &[0, 0, 0, 7]);
        let got = read_frame(&mut Cursor::new(bytes), MAX_FRAME_LEN);
        assert_eq!(got.ok().as_deref(), Some(&b"{\"v\":1}"[..]));
    }

    #[test]
    fn partial_reads_reassemble() {
        let mut reader = Trickle(Cursor::new(framed(b"hello world")));
        let got = read_frame(&mut reader, MAX_FRAME_LEN);
        assert_eq!(got.ok().as_deref(), Some(&b"hello world"[..]));
        assert!(matches!(
            read_frame(&mut reader, MAX_FRAME_LEN),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn concatenated_frames_split_exactly() {
        let mut bytes = framed(b"first");
        bytes.extend(framed(b"second"));
        let mut reader = Cursor::new(bytes);
        assert_eq!(
            read_frame(&mut reader, MAX_FRAME_LEN).ok().as_deref(),
            Some(&b"first"[..])
        );
        assert_eq!(
            read_frame(&mut reader, MAX_FRAME_LEN).ok().as_deref(),
            Some(&b"second"[..])
        );
    }

    #[test]
    fn oversize_prefix_is_refused_before_allocation() {
        let mut reader = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            read_frame(&mut reader, MAX_FRAME_LEN),
            Err(FrameError::TooLarge {
                len: 0xffff_ffff,
                ..
            })
        ));
    }

    #[test]
    fn oversize_payload_is_not_written() {
        let mut out = Vec::new();
        let big = vec![b'x'; MAX_REPLY_LEN + 1];
        assert!(matches!(
            write_frame(&mut out, &big),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn truncation_is_distinguished_from_a_clean_close() {
        let mut bytes = framed(b"abcdef");
        bytes.truncate(7);
        assert!(matches!(
            read_frame(&mut Cursor::new(bytes), MAX_FRAME_LEN),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_frame(&mut Cursor::new(vec![0, 0]), MAX_FRAME_LEN),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_frame(&mut Cursor::new(vec![0, 0, 0, 0]), MAX_FRAME_LEN),
            Err(FrameError::Empty)
        ));
    }

    /// A writer that takes 1-3 bytes per call (cycling through `sizes`), across the slices of
    /// a vectored write, like a socket with a nearly full buffer; with `interrupt`, every
    /// fourth call fails with EINTR. Notes when it is handed more than a length prefix's worth
    /// of bytes from anywhere but the caller's payload buffer, i.e. a copy of the payload.
    struct Stingy<'p> {
        out: Vec<u8>,
        sizes: Vec<usize>,
        calls: usize,
        interrupt: bool,
        payload: &'p [u8],
        copied: bool,
    }

    impl<'p> Stingy<'p> {
        fn new(payload: &'p [u8], sizes: Vec<usize>, interrupt: bool) -> Self {
            Self {
                out: Vec::new(),
                sizes,
                calls: 0,
                interrupt,
                payload,
                copied: false,
            }
        }

        fn is_in_callers_buffer(&self, buf: &[u8]) -> bool {
            let start = self.payload.as_ptr() as usize;
            let end = start + self.payload.len();
            let at = buf.as_ptr() as usize;
            at >= start && at + buf.len() <= end
        }
    }

    impl Write for Stingy<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.interrupt && self.calls % 4 == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            for buf in bufs {
                if buf.len() > 4 && !self.is_in_callers_buffer(buf) {
                    self.copied = true;
                }
            }
            let mut budget = self
                .sizes
                .get(self.calls % self.sizes.len().max(1))
                .map_or(1, |&size| size.clamp(1, 3));
            let mut taken = 0;
            for buf in bufs {
                let n = budget.min(buf.len());
                self.out.extend_from_slice(&buf[..n]);
                taken += n;
                budget -= n;
                if budget == 0 {
                    break;
                }
            }
            Ok(taken)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_vectored_writes_resume_where_they_stopped() {
        let payload =
            b"{\"v\":1,\"request\":{\"op\":\"authenticate\",\"code\":\"123456\"}}".to_vec();
        for sizes in [vec![1], vec![2], vec![3], vec![1, 2, 3], vec![3, 1]] {
            for interrupt in [false, true] {
                let mut writer = Stingy::new(&payload, sizes.clone(), interrupt);
                let result = write_frame(&mut writer, &payload);
                assert!(result.is_ok(), "{sizes:?} {interrupt}: {result:?}");
                assert_eq!(writer.out, framed(&payload), "{sizes:?} {interrupt}");
                assert!(
                    writer.calls > payload.len() / 3,
                    "{sizes:?}: {}",
                    writer.calls
                );
            }
        }
    }

    #[test]
    fn the_payload_is_written_from_the_callers_buffer_not_a_copy() {
        let payload = vec![b'7'; 300];
        for sizes in [vec![3], vec![1000]] {
            let mut writer = Stingy::new(&payload, sizes, false);
            assert!(write_frame(&mut writer, &payload).is_ok());
            assert_eq!(writer.out, framed(&payload));
            assert!(
                !writer.copied,
                "the payload reached the writer from a buffer of write_frame's own"
            );
        }
    }

    #[test]
    fn a_writer_that_takes_nothing_is_an_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert!(matches!(
            write_frame(&mut Full, b"x"),
            Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::WriteZero
        ));
    }

    proptest! {
        #[test]
        fn any_payload_round_trips(payload in proptest::collection::vec(any::<u8>(), 1..2048)) {
            let mut reader = Trickle(Cursor::new(framed(&payload)));
            prop_assert_eq!(read_frame(&mut reader, MAX_FRAME_LEN).ok(), Some(payload));
        }

        #[test]
        fn any_payload_survives_any_partial_vectored_writes(
            payload in proptest::collection::vec(any::<u8>(), 1..600),
            sizes in proptest::collection::vec(1usize..=3, 1..8),
            interrupt in any::<bool>(),
        ) {
            let mut writer = Stingy::new(&payload, sizes, interrupt);
            prop_assert!(write_frame(&mut writer, &payload).is_ok());
            prop_assert!(!writer.copied);
            let mut reader = Cursor::new(writer.out);
            prop_assert_eq!(read_frame(&mut reader, MAX_FRAME_LEN).ok(), Some(payload));
            prop_assert!(matches!(read_frame(&mut reader, MAX_FRAME_LEN), Err(FrameError::Closed)));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = read_frame(&mut Cursor::new(bytes), 16);
        }
    }

    /// Hands out a stream in chunks of the given sizes (cycled), like a socket that delivers
    /// whatever has arrived; counts what was consumed.
    struct Chunked {
        bytes: Vec<u8>,
        position: usize,
        sizes: Vec<usize>,
        calls: usize,
    }

    impl Chunked {
        fn new(bytes: Vec<u8>, sizes: Vec<usize>) -> Self {
            Self {
                bytes,
                position: 0,
                sizes,
                calls: 0,
            }
        }
    }

    impl Read for Chunked {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let size = match self.sizes.get(self.calls % self.sizes.len().max(1)) {
                Some(&size) => size.max(1),
                None => 1,
            };
            self.calls += 1;
            let rest = self.bytes.get(self.position..).unwrap_or_default();
            let n = size.min(buf.len()).min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.position += n;
            Ok(n)
        }
    }

    /// Reads frames until the first error.
    fn read_all(reader: &mut impl Read) -> (Vec<Vec<u8>>, FrameError) {
        let mut frames = Vec::new();
        loop {
            match read_frame(reader, MAX_FRAME_LEN) {
                Ok(frame) => frames.push(frame),
                Err(error) => return (frames, error),
            }
        }
    }

    fn payloads(most: usize, longest: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..longest), 0..most)
    }

    fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(1usize..70, 1..12)
    }

    proptest! {
        #[test]
        fn concatenated_frames_read_back_through_any_chunking(
            sent in payloads(8, 300),
            sizes in chunk_sizes(),
        ) {
            let stream: Vec<u8> = sent.iter().flat_map(|p| framed(p)).collect();
            let mut reader = Chunked::new(stream, sizes);
            let (received, end) = read_all(&mut reader);
            prop_assert_eq!(received, sent);
            prop_assert!(matches!(end, FrameError::Closed), "{:?}", end);
        }

        #[test]
        fn truncated_streams_never_yield_a_wrong_payload(
            sent in payloads(6, 100).prop_filter("needs a frame", |p| !p.is_empty()),
            cut in any::<proptest::sample::Index>(),
            sizes in chunk_sizes(),
        ) {
            let stream: Vec<u8> = sent.iter().flat_map(|p| framed(p)).collect();
            // Strictly shorter than the whole stream, possibly empty.
            let cut = cut.index(stream.len());
            // The frames that lie wholly before the cut, and whether it falls between frames.
            let mut whole = 0;
            let mut boundary = 0;
            for payload in &sent {
                if boundary + 4 + payload.len() > cut {
                    break;
                }
                boundary += 4 + payload.len();
                whole += 1;
            }
            let mut reader = Chunked::new(stream[..cut].to_vec(), sizes);
            let (received, end) = read_all(&mut reader);
            prop_assert_eq!(&received[..], &sent[..whole]);
            if cut == boundary {
                prop_assert!(matches!(end, FrameError::Closed), "cut {}: {:?}", cut, end);
            } else {
                prop_assert!(matches!(end, FrameError::Truncated), "cut {}: {:?}", cut, end);
            }
        }

        #[test]
        fn oversize_prefix_is_refused_without_reading_on(
            (max, len) in (0..=MAX_FRAME_LEN).prop_flat_map(|max| {
                let over = max as u64 + 1;
                // Often just over the limit, where an off-by-one would show.
                let len = prop_oneof![over..over + 16, over..=u64::from(u32::MAX)];
                (Just(max), len)
            }),
            rest in proptest::collection::vec(any::<u8>(), 0..64),
            sizes in chunk_sizes(),
        ) {
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            let mut stream = len.to_be_bytes().to_vec();
            stream.extend_from_slice(&rest);
            let mut reader = Chunked::new(stream, sizes);
            let result = read_frame(&mut reader, max);
            prop_assert!(
                matches!(result, Err(FrameError::TooLarge { len: l, max: m })
                    if l == len as usize && m == max),
                "{:?}", result
            );
            // Only the prefix was read: nothing of the refused payload.
            prop_assert_eq!(reader.position, 4);
        }
    }
}
