//! Arbitrary bytes as the stream a peer sends: `read_frame` must never panic, must never
//! allocate more than the frame limit, and must split the stream exactly as the format says,
//! whether the bytes arrive at once (a `Cursor`) or one at a time with interruptions (a slow
//! socket). Both readers are checked against a plain model of the format.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_totp_proto::frame::{read_frame, write_frame, FrameError, MAX_FRAME_LEN};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Cursor, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The system allocator, noting the largest single request made while `TRACKING` is set.
struct PeakAlloc;

static TRACKING: AtomicBool = AtomicBool::new(false);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn note(size: usize) {
    if TRACKING.load(Ordering::Relaxed) {
        PEAK.fetch_max(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; the bookkeeping only touches atomics and never allocates.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's guarantees for `layout` are passed on as they are.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as for `dealloc`; `new_size` is the caller's, unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// Hands out one byte per call, with an `Interrupted` error before every byte.
struct Trickle<'a> {
    bytes: &'a [u8],
    interrupt: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        match (self.bytes.split_first(), buf.first_mut()) {
            (Some((&byte, rest)), Some(slot)) => {
                *slot = byte;
                self.bytes = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// How a stream of frames ends, comparable across readers.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    Truncated,
    Empty,
    TooLarge { len: usize, max: usize },
}

fn end_of(error: FrameError) -> End {
    match error {
        FrameError::Closed => End::Closed,
        FrameError::Truncated => End::Truncated,
        FrameError::Empty => End::Empty,
        FrameError::TooLarge { len, max } => End::TooLarge { len, max },
        // In-memory readers never time out or fail.
        other => panic!("unexpected error from an in-memory reader: {other:?}"),
    }
}

/// Reads frames until the first error, checking each call's allocations against `max`.
fn decode(reader: &mut impl Read, max: usize) -> (Vec<Vec<u8>>, End) {
    let mut frames = Vec::new();
    loop {
        PEAK.store(0, Ordering::Relaxed);
        TRACKING.store(true, Ordering::Relaxed);
        let result = read_frame(reader, max);
        TRACKING.store(false, Ordering::Relaxed);
        let peak = PEAK.load(Ordering::Relaxed);
        assert!(
            peak <= max,
            "read_frame allocated {peak} bytes with a {max}-byte limit"
        );
        match result {
            Ok(payload) => {
                assert!(!payload.is_empty(), "an empty payload was returned");
                assert!(
                    payload.len() <= max,
                    "a {}-byte payload passed a {max}-byte limit",
                    payload.len()
                );
                assert!(payload.len() <= MAX_FRAME_LEN);
                frames.push(payload);
            }
            Err(error) => return (frames, end_of(error)),
        }
    }
}

/// The format, written out plainly: what a correct reader must return for `data`.
fn model(mut data: &[u8], max: usize) -> (Vec<Vec<u8>>, End) {
    let mut frames = Vec::new();
    loop {
        let Some((prefix, rest)) = data.split_first_chunk::<4>() else {
            let end = if data.is_empty() {
                End::Closed
            } else {
                End::Truncated
            };
            return (frames, end);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len == 0 {
            return (frames, End::Empty);
        }
        if len > max {
            return (frames, End::TooLarge { len, max });
        }
        if rest.len() < len {
            return (frames, End::Truncated);
        }
        let (payload, rest) = rest.split_at(len);
        frames.push(payload.to_vec());
        data = rest;
    }
}

fuzz_target!(|data: &[u8]| {
    // The real limit, and small ones so the fuzzer reaches the limit checks with short inputs.
    for max in [MAX_FRAME_LEN, 255, 16, 1] {
        let expected = model(data, max);

        let mut cursor = Cursor::new(data);
        let at_once = decode(&mut cursor, max);
        assert_eq!(at_once, expected, "Cursor, limit {max}");
        // Refused before reading the payload: a TooLarge frame consumes only its prefix.
        if let End::TooLarge { .. } = expected.1 {
            let consumed: usize = expected.0.iter().map(|f| 4 + f.len()).sum::<usize>() + 4;
            assert_eq!(
                cursor.position() as usize,
                consumed,
                "read past a refused prefix"
            );
        }

        let trickled = decode(
            &mut Trickle {
                bytes: data,
                interrupt: false,
            },
            max,
        );
        assert_eq!(trickled, expected, "one byte at a time, limit {max}");

        // Whatever was read back writes out as the same bytes it came from.
        let mut rewritten = Vec::new();
        for frame in &expected.0 {
            assert!(write_frame(&mut rewritten, frame).is_ok());
        }
        assert!(data.starts_with(&rewritten));
    }
});
