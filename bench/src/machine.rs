//! What the figures were measured on: recorded in every result file.

use crate::stats::{nanos, Latency};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    /// `/proc/loadavg` when the layer started and when it ended.
    pub load_start: String,
    pub load_end: String,
    pub started_unix: i64,
    /// Latency of one 4 KiB append + fdatasync where the database lives (each sync also
    /// journals the file's new size): a durable write of a file that grows.
    pub fsync: Latency,
    /// The same sync after overwriting 4 KiB of a file already written and synced: SQLite's
    /// WAL once it has wrapped (its size no longer changes, so there is no metadata to
    /// journal). The floor under a commit of the running agent.
    #[serde(default)]
    pub overwrite_sync: Latency,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

impl Machine {
    pub fn probe(fsync_dir: &Path) -> Self {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel,
            load_start: loadavg(),
            load_end: String::new(),
            started_unix: now_unix(),
            fsync: fsync_latency(fsync_dir, 50, Growth::Append),
            overwrite_sync: fsync_latency(fsync_dir, 50, Growth::Overwrite),
        }
    }

    pub fn finish(&mut self) {
        self.load_end = loadavg();
    }
}

/// How the probe writes its 4 KiB blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// At the end of the file: each sync also journals the new size.
    Append,
    /// Over blocks written and synced beforehand: the sync writes the data only.
    Overwrite,
}

/// Times `rounds` 4 KiB writes, each followed by fdatasync, in a scratch file in `dir`.
pub fn fsync_latency(dir: &Path, rounds: usize, growth: Growth) -> Latency {
    let path = dir.join("fsync-probe");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path);
    let Ok(mut file) = file else {
        return Latency::default();
    };
    let block = [0u8; 4096];
    if growth == Growth::Overwrite {
        let prepared = (0..rounds).try_for_each(|_| file.write_all(&block));
        if prepared.and_then(|()| file.sync_all()).is_err() {
            return Latency::default();
        }
    }
    let mut samples = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let start = Instant::now();
        let written = match growth {
            Growth::Append => file.write_all(&block),
            Growth::Overwrite => file.write_all_at(&block, 4096 * round as u64),
        };
        if written.and_then(|()| file.sync_data()).is_err() {
            break;
        }
        samples.push(nanos(start.elapsed()));
    }
    let _ = std::fs::remove_file(&path);
    Latency::from_nanos(samples)
}
