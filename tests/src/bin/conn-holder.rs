//! `conn-holder SOCKET COUNT SECONDS`: a slowloris client for the end-to-end tests.
//!
//! Keeps up to COUNT connections to the agent's Unix socket open for SECONDS, sending nothing
//! on half of them and the first two bytes of a frame header on the others, and opens a new
//! connection whenever the agent closes one (after a second's pause when the agent closed it
//! at once, so a refused slot does not spin). Run as an unprivileged account (`runuser`).
//!
//! Prints `ready held=N` once the first round has settled, then at the end one summary line:
//! `summary opened=N connect_errors=N closed_at_once=N idle_closed=N idle_min_ms=N
//! idle_max_ms=N held_max=N`, where a connection "closed at once" lived under 500 ms and
//! `held_max` is the most connections seen open (for at least 500 ms) at one time.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A connection the agent closed sooner than this was refused rather than timed out.
const AT_ONCE: Duration = Duration::from_millis(500);
/// Pause before reopening a slot whose connection was refused at once.
const REFUSED_PAUSE: Duration = Duration::from_secs(1);
/// How often every connection is looked at.
const TICK: Duration = Duration::from_millis(20);

struct Slot {
    stream: Option<UnixStream>,
    opened_at: Instant,
    /// Not before this instant may the slot connect again.
    retry_at: Instant,
}

#[derive(Default)]
struct Stats {
    opened: u64,
    connect_errors: u64,
    closed_at_once: u64,
    idle_closed: u64,
    idle_min_ms: Option<u128>,
    idle_max_ms: u128,
    held_max: usize,
}

fn usage() -> ExitCode {
    eprintln!("usage: conn-holder SOCKET COUNT SECONDS");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, count, seconds] = args.as_slice() else {
        return usage();
    };
    let (Ok(count), Ok(seconds)) = (count.parse::<usize>(), seconds.parse::<u64>()) else {
        return usage();
    };
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut slots: Vec<Slot> = (0..count)
        .map(|_| Slot {
            stream: None,
            opened_at: start,
            retry_at: start,
        })
        .collect();
    let mut stats = Stats::default();
    let mut ready = false;
    while Instant::now() < end {
        for (index, slot) in slots.iter_mut().enumerate() {
            let now = Instant::now();
            if slot.stream.is_none() && now >= slot.retry_at {
                connect(socket, index, slot, &mut stats);
            }
            let Some(stream) = slot.stream.as_mut() else {
                continue;
            };
            if is_closed(stream) {
                let lived = now.saturating_duration_since(slot.opened_at);
                slot.stream = None;
                if lived < AT_ONCE {
                    stats.closed_at_once += 1;
                    slot.retry_at = now + REFUSED_PAUSE;
                } else {
                    stats.idle_closed += 1;
                    let ms = lived.as_millis();
                    stats.idle_min_ms = Some(stats.idle_min_ms.map_or(ms, |m| m.min(ms)));
                    stats.idle_max_ms = stats.idle_max_ms.max(ms);
                    slot.retry_at = now;
                }
            }
        }
        let now = Instant::now();
        let held = slots
            .iter()
            .filter(|s| s.stream.is_some() && now.saturating_duration_since(s.opened_at) >= AT_ONCE)
            .count();
        stats.held_max = stats.held_max.max(held);
        if !ready && now.saturating_duration_since(start) >= 2 * AT_ONCE {
            ready = true;
            println!("ready held={held}");
            let _ = std::io::stdout().flush();
        }
        std::thread::sleep(TICK);
    }
    println!(
        "summary opened={} connect_errors={} closed_at_once={} idle_closed={} idle_min_ms={} \
         idle_max_ms={} held_max={}",
        stats.opened,
        stats.connect_errors,
        stats.closed_at_once,
        stats.idle_closed,
        stats.idle_min_ms.unwrap_or(0),
        stats.idle_max_ms,
        stats.held_max
    );
    ExitCode::SUCCESS
}

fn connect(socket: &str, index: usize, slot: &mut Slot, stats: &mut Stats) {
    let now = Instant::now();
    match UnixStream::connect(socket) {
        Ok(mut stream) => {
            if index % 2 == 1 {
                // Half a frame length: the agent waits for the rest.
                let _ = stream.write_all(&[0, 0]);
            }
            if stream.set_nonblocking(true).is_err() {
                stats.connect_errors += 1;
                slot.retry_at = now + REFUSED_PAUSE;
                return;
            }
            stats.opened += 1;
            slot.opened_at = now;
            slot.stream = Some(stream);
        }
        Err(_) => {
            stats.connect_errors += 1;
            slot.retry_at = now + REFUSED_PAUSE;
        }
    }
}

/// Whether the agent has closed (or reset, or answered) the connection.
fn is_closed(stream: &mut UnixStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => false,
        // EOF, an error frame, or a reset: the agent is done with it.
        Ok(_) | Err(_) => true,
    }
}
