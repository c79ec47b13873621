//! `flooder SOCKET CONNECTIONS SECONDS [ACCOUNT...]`: a request flood for the end-to-end
//! tests, run as an unprivileged account (`runuser`).
//!
//! On each of CONNECTIONS threads, until SECONDS have passed: connect, send one request frame
//! (most of them as large as the agent reads, 64 KiB), read the reply, and again, rotating
//! among hostile requests that a local user may send but that must change nothing:
//!
//! - `auth_huge`: authenticate `root` with context items of 64 KiB in all (invalid_argument);
//! - `auth_root`: authenticate `root` with 256-byte context items, the longest accepted
//!   (permission_denied: the path that used to write an audit row per request);
//! - `auth_account`: the same for each ACCOUNT given (enrolled accounts root logs in to);
//! - `auth_unknown`: the same for an account that does not exist;
//! - `show_*`, `verify_*`, `remove_*`: for `root` and for an account that does not exist;
//! - `log_huge`: a `log` page of 10000 entries (invalid_argument: pages are at most 500);
//! - `log_root`: 500 entries of root's log (permission_denied);
//! - `log_own`: 500 entries of the caller's own log (allowed);
//! - `malformed`: 64 KiB of unterminated JSON (invalid_argument).
//!
//! The request loop stops by itself after SECONDS (each reply is awaited at most 10 s more).
//! Prints `ready` once the threads are running, one stderr line for each of the first few
//! unexpected replies, and at the end one line:
//! `summary requests=N replies=N closed=N connect_errors=N unexpected=N elapsed_ms=N
//! per_second=N ok=N invalid_argument=N permission_denied=N not_found=N other=N
//! <kind>=N...`, where `requests` counts frames sent on a connection the agent accepted or
//! closed, `closed` the connections the agent closed without a reply (e.g. over the
//! per-user cap), and `<kind>` the replies to each kind of request.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest frame the agent reads (proto `MAX_FRAME_LEN`).
const MAX_FRAME: usize = 64 * 1024;
/// The longest context item the agent accepts (proto `MAX_CONTEXT_ITEM_BYTES`).
const MAX_ITEM: usize = 256;
/// Largest reply read (a page of 500 audit entries is about 1 MiB).
const MAX_REPLY: usize = 4 * 1024 * 1024;
/// How long a reply is awaited after the flood's time is up.
const REPLY_LIMIT: Duration = Duration::from_secs(10);
/// Unexpected replies reported on stderr.
const SHOWN_UNEXPECTED: u64 = 5;

/// One kind of request: its frame (length prefix included) and the replies it may get
/// (`"ok"` or an error code, with the error's target where it matters).
struct Kind {
    name: &'static str,
    frame: Vec<u8>,
    expected: &'static [&'static str],
    target: Option<&'static str>,
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    replies: AtomicU64,
    closed: AtomicU64,
    connect_errors: AtomicU64,
    unexpected: AtomicU64,
    /// Replies by error code ("ok" for success) and by kind.
    by_code: Mutex<BTreeMap<String, u64>>,
    by_kind: Mutex<BTreeMap<&'static str, u64>>,
}

fn usage() -> ExitCode {
    eprintln!("usage: flooder SOCKET CONNECTIONS SECONDS [ACCOUNT...]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, connections, seconds, accounts @ ..] = args.as_slice() else {
        return usage();
    };
    let (Ok(connections), Ok(seconds)) = (connections.parse::<usize>(), seconds.parse::<u64>())
    else {
        return usage();
    };
    let kinds = Arc::new(kinds(accounts));
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..connections)
        .map(|index| {
            let socket = socket.clone();
            let kinds = Arc::clone(&kinds);
            let counts = Arc::clone(&counts);
            std::thread::spawn(move || flood(&socket, index, &kinds, &counts, end))
        })
        .collect();
    println!("ready connections={connections} kinds={}", kinds.len());
    let _ = std::io::stdout().flush();
    for thread in threads {
        let _ = thread.join();
    }
    let elapsed = start.elapsed();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let requests = load(&counts.requests);
    let mut line = format!(
        "summary requests={requests} replies={} closed={} connect_errors={} unexpected={} \
         elapsed_ms={} per_second={}",
        load(&counts.replies),
        load(&counts.closed),
        load(&counts.connect_errors),
        load(&counts.unexpected),
        elapsed.as_millis(),
        (requests as f64 / elapsed.as_secs_f64().max(0.001)) as u64,
    );
    let by_code = counts.by_code.lock().unwrap_or_else(|p| p.into_inner());
    for code in ["ok", "invalid_argument", "permission_denied", "not_found"] {
        line.push_str(&format!(
            " {code}={}",
            by_code.get(code).copied().unwrap_or(0)
        ));
    }
    let other: u64 = by_code
        .iter()
        .filter(|(code, _)| {
            !["ok", "invalid_argument", "permission_denied", "not_found"].contains(&code.as_str())
        })
        .map(|(_, n)| n)
        .sum();
    line.push_str(&format!(" other={other}"));
    let by_kind = counts.by_kind.lock().unwrap_or_else(|p| p.into_inner());
    let mut shown: Vec<&str> = Vec::new();
    for kind in kinds.iter() {
        if shown.contains(&kind.name) {
            continue;
        }
        shown.push(kind.name);
        line.push_str(&format!(
            " {}={}",
            kind.name,
            by_kind.get(kind.name).copied().unwrap_or(0)
        ));
    }
    println!("{line}");
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}

/// One connection's loop: a request per connection (the agent answers one and closes).
fn flood(socket: &str, index: usize, kinds: &[Kind], counts: &Counts, end: Instant) {
    let mut next = index % kinds.len();
    while Instant::now() < end {
        let kind = &kinds[next];
        next = (next + 1) % kinds.len();
        let mut stream = match UnixStream::connect(socket) {
            Ok(stream) => stream,
            Err(_) => {
                counts.connect_errors.fetch_add(1, Ordering::Relaxed);
                // The backlog is full: a moment for the agent to catch up, then on.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(REPLY_LIMIT));
        let _ = stream.set_write_timeout(Some(REPLY_LIMIT));
        counts.requests.fetch_add(1, Ordering::Relaxed);
        // A refused connection may take the frame into its buffer and then close: what
        // tells is the reply.
        let _ = stream.write_all(&kind.frame);
        match read_reply(&mut stream) {
            Some(reply) => {
                counts.replies.fetch_add(1, Ordering::Relaxed);
                judge(kind, &reply, counts);
            }
            None => {
                counts.closed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One reply frame, or `None` when the agent closed (or reset) the connection without one.
fn read_reply(stream: &mut UnixStream) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 4];
    read_all(stream, &mut prefix)?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 || len > MAX_REPLY {
        return None;
    }
    let mut payload = vec![0u8; len];
    read_all(stream, &mut payload)?;
    Some(payload)
}

fn read_all(stream: &mut UnixStream, buffer: &mut [u8]) -> Option<()> {
    let mut filled = 0;
    while filled < buffer.len() {
        match stream.read(&mut buffer[filled..]) {
            Ok(0) => return None,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(())
}

/// Counts the reply by code and kind; reports it when it is not what the kind expects.
fn judge(kind: &Kind, reply: &[u8], counts: &Counts) {
    let text = String::from_utf8_lossy(reply);
    let (code, target) = if text.starts_with("{\"ok\"") {
        ("ok".to_owned(), None)
    } else {
        (
            string_after(&text, "\"code\":\"").unwrap_or_else(|| "unparsed".to_owned()),
            string_after(&text, "\"target\":\""),
        )
    };
    let expected = kind.expected.contains(&code.as_str())
        && kind
            .target
            .is_none_or(|want| code == "ok" || target.as_deref() == Some(want));
    if !expected {
        let seen = counts.unexpected.fetch_add(1, Ordering::Relaxed);
        if seen < SHOWN_UNEXPECTED {
            let shown: String = text.chars().take(300).collect();
            eprintln!(
                "flooder: unexpected reply to {} (expected {:?} target {:?}): {shown}",
                kind.name, kind.expected, kind.target
            );
        }
    }
    *counts
        .by_code
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(code)
        .or_insert(0) += 1;
    *counts
        .by_kind
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(kind.name)
        .or_insert(0) += 1;
}

/// The JSON string value that follows `key` (no escapes in the values looked for).
fn string_after(text: &str, key: &str) -> Option<String> {
    let rest = &text[text.find(key)? + key.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

fn framed(payload: &str) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload.as_bytes());
    frame
}

/// `{"v":1,"request":REQUEST}`.
fn envelope(request: &str) -> String {
    format!("{{\"v\":1,\"request\":{request}}}")
}

/// An authenticate request for `account` whose four context items are `item` long each.
fn authenticate(account: &str, item: usize) -> String {
    // Printable, varied, nothing to escape.
    let filler = |tag: char| -> String {
        std::iter::once(tag)
            .chain("abcdefghijklmnopqrstuvwxyz0123456789.-".chars().cycle())
            .take(item)
            .collect()
    };
    envelope(&format!(
        "{{\"op\":\"authenticate\",\"account\":\"{account}\",\"code\":\"123456\",\"context\":\
         {{\"service\":\"{}\",\"rhost\":\"{}\",\"tty\":\"{}\",\"ruser\":\"{}\"}}}}",
        filler('s'),
        filler('h'),
        filler('t'),
        filler('u')
    ))
}

/// An authenticate request for `root` exactly as large as the agent reads.
fn huge_authenticate() -> String {
    let base = authenticate("root", 1).len() - 4;
    let item = (MAX_FRAME - base) / 4;
    let mut payload = authenticate("root", item);
    // Pad to the exact maximum with whitespace after the JSON (still one valid document).
    while payload.len() < MAX_FRAME {
        payload.push(' ');
    }
    payload
}

fn kinds(accounts: &[String]) -> Vec<Kind> {
    let unknown = format!("pttnosuch{}", std::process::id());
    let denied: &'static [&'static str] = &["permission_denied"];
    let denied_or_absent: &'static [&'static str] = &["permission_denied", "not_found"];
    let mut kinds = vec![
        Kind {
            name: "auth_huge",
            frame: framed(&huge_authenticate()),
            expected: &["invalid_argument"],
            target: Some("service"),
        },
        Kind {
            name: "auth_root",
            frame: framed(&authenticate("root", MAX_ITEM)),
            expected: denied,
            target: None,
        },
        Kind {
            name: "auth_unknown",
            frame: framed(&authenticate(&unknown, MAX_ITEM)),
            expected: denied,
            target: None,
        },
    ];
    for account in accounts {
        kinds.push(Kind {
            name: "auth_account",
            frame: framed(&authenticate(account, MAX_ITEM)),
            expected: denied,
            target: None,
        });
    }
    for (name, account) in [("root", "root"), ("unknown", unknown.as_str())] {
        let requests = [
            (
                "show",
                format!("{{\"op\":\"show\",\"account\":\"{account}\"}}"),
            ),
            (
                "verify",
                format!("{{\"op\":\"verify\",\"account\":\"{account}\",\"code\":\"123456\"}}"),
            ),
            (
                "remove",
                format!("{{\"op\":\"remove\",\"account\":\"{account}\",\"code\":\"12345678\"}}"),
            ),
        ];
        for (op, request) in requests {
            kinds.push(Kind {
                name: Box::leak(format!("{op}_{name}").into_boxed_str()),
                frame: framed(&envelope(&request)),
                expected: denied_or_absent,
                target: None,
            });
        }
    }
    kinds.extend([
        Kind {
            name: "log_huge",
            frame: framed(&envelope(
                "{\"op\":\"log\",\"account\":null,\"since\":null,\"limit\":10000}",
            )),
            expected: &["invalid_argument"],
            target: Some("limit"),
        },
        Kind {
            name: "log_root",
            frame: framed(&envelope(
                "{\"op\":\"log\",\"account\":\"root\",\"since\":null,\"limit\":500}",
            )),
            expected: denied,
            target: None,
        },
        Kind {
            name: "log_own",
            frame: framed(&envelope(
                "{\"op\":\"log\",\"account\":null,\"since\":null,\"limit\":500}",
            )),
            expected: &["ok"],
            target: None,
        },
        Kind {
            name: "malformed",
            frame: framed(&malformed()),
            expected: &["invalid_argument"],
            target: Some("request"),
        },
    ]);
    kinds
}

/// 64 KiB of JSON that never ends: the parser reads all of it before it gives up.
fn malformed() -> String {
    let mut payload =
        String::from("{\"v\":1,\"request\":{\"op\":\"authenticate\",\"account\":\"root\",\"x\":[");
    while payload.len() + 2 <= MAX_FRAME {
        payload.push_str("1,");
    }
    payload
}
