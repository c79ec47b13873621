#!/usr/bin/env python3
"""The cost of a WAL commit's writes without SQLite (BENCHMARKS.md, "Issue 13, second session").

Writes N frames of 4,120 bytes (SQLite's 24-byte frame header, then a 4 KiB page, each its own
pwrite as SQLite does) into a 4 MiB file already written and synced, then fdatasync, and
prints the p50 and mean over 400 commits, for 1 and 4 frames. Usage:
    python3 docs/bench/wal-sync.py [DIR]     # DIR: where the database lives (default /tmp)
"""
import os
import sys
import time

FRAME = 24 + 4096
SIZE = 4 * 1024 * 1024


def commit_latency(directory, frames, commits=400):
    path = os.path.join(directory, "wal-sync-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.pwrite(fd, b"\0" * SIZE, 0)
        os.fsync(fd)
        offset, samples = 32, []
        for _ in range(commits):
            start = time.perf_counter_ns()
            for _ in range(frames):
                if offset + FRAME > SIZE:
                    offset = 32
                os.pwrite(fd, b"h" * 24, offset)
                os.pwrite(fd, b"p" * 4096, offset + 24)
                offset += FRAME
            os.fdatasync(fd)
            samples.append(time.perf_counter_ns() - start)
    finally:
        os.close(fd)
        os.unlink(path)
    samples.sort()
    return samples[len(samples) // 2] / 1000, sum(samples) / len(samples) / 1000


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
    for frames in (1, 4):
        p50, mean = commit_latency(directory, frames)
        print(f"{frames} frame(s) + fdatasync: p50 {p50:.0f} us, mean {mean:.0f} us")


if __name__ == "__main__":
    main()
