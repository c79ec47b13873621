//! CPU time from /proc: of one process, of a process with its children (a PostgreSQL
//! postmaster and its server processes), and of the whole machine.

use std::time::Duration;

/// Clock ticks per second (`/proc` counts CPU time in them).
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

fn ticks(ticks: u64) -> Duration {
    Duration::from_micros(ticks * 1_000_000 / ticks_per_second())
}

/// The fields of `/proc/PID/stat` after the command name (which is in parentheses and may
/// hold spaces): index 0 is the state, 1 the parent pid, 11 utime, 12 stime, 13 cutime,
/// 14 cstime.
fn stat_fields(pid: u32) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

fn field(fields: &[u64], index: usize) -> u64 {
    fields.get(index).copied().unwrap_or(0)
}

/// User + system CPU time process `pid` has used so far (all its threads).
pub fn cpu_of(pid: u32) -> Duration {
    let fields = stat_fields(pid);
    ticks(field(&fields, 11) + field(&fields, 12))
}

/// What a process has used so far: CPU time (user + system) and context switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu: Duration,
    /// Voluntary and involuntary, over its live threads: a request handed from thread to
    /// thread shows here whatever else the machine is doing, unlike its CPU time.
    pub switches: u64,
}

impl Usage {
    pub fn of(pid: u32) -> Self {
        Self {
            cpu: cpu_of(pid),
            switches: context_switches(pid),
        }
    }

    /// What was used between `before` and `self`.
    pub fn since(self, before: Self) -> Self {
        Self {
            cpu: self.cpu.saturating_sub(before.cpu),
            switches: self.switches.saturating_sub(before.switches),
        }
    }
}

impl std::iter::Sum for Usage {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |a, b| Self {
            cpu: a.cpu + b.cpu,
            switches: a.switches + b.switches,
        })
    }
}

/// Context switches of every live thread of `pid` (`voluntary_ctxt_switches` and
/// `nonvoluntary_ctxt_switches` of /proc/PID/task/*/status).
pub fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter_map(|line| line.split_once(':'))
                .filter(|(key, _)| key.ends_with("ctxt_switches"))
                .filter_map(|(_, value)| value.trim().parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// User + system CPU time of `root`, its live children, and the children it has reaped
/// (their time is added to its cutime/cstime when it waits for them): for a postmaster, every
/// server process it ever forked.
pub fn tree_cpu(root: u32) -> Duration {
    let own = stat_fields(root);
    let mut total: u64 = (11..=14).map(|i| field(&own, i)).sum();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let fields = stat_fields(pid);
            if field(&fields, 1) == u64::from(root) {
                total += field(&fields, 11) + field(&fields, 12);
            }
        }
    }
    ticks(total)
}

/// The whole machine's CPU time so far: (busy, all), over every CPU (`/proc/stat`; busy is
/// all but idle and iowait).
pub fn machine_cpu() -> (Duration, Duration) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let all: u64 = values.iter().take(8).sum();
    let idle = field(&values, 3) + field(&values, 4);
    (ticks(all.saturating_sub(idle)), ticks(all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_cpu_and_the_machine_is_busy_sometimes() {
        let me = std::process::id();
        let start = std::time::Instant::now();
        let mut x: u64 = 0;
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        let own = cpu_of(me);
        assert!(own > Duration::ZERO);
        // Read after `own`: the process keeps running between the two reads.
        assert!(tree_cpu(me) >= own);
        let (busy, all) = machine_cpu();
        assert!(busy > Duration::ZERO && all >= busy);
    }

    #[test]
    fn a_sleeping_process_has_switched() -> std::io::Result<()> {
        // A child process, not this one: the test harness's other threads come and go here,
        // and an exiting thread takes its switches out of the sum (which made a before/after
        // count of this process come out as 0).
        let mut child = std::process::Command::new("sleep").arg("10").spawn()?;
        let pid = child.id();
        let give_up = std::time::Instant::now() + Duration::from_secs(5);
        let mut switches = context_switches(pid);
        // It switches once it blocks in its sleep; wait for that, however slow the machine.
        while switches == 0 && std::time::Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(10));
            switches = context_switches(pid);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(switches >= 1, "a sleeping child never switched: {switches}");
        Ok(())
    }
}
