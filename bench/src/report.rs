//! Markdown tables and the targets, from the JSON results: what BENCHMARKS.md shows.

use crate::agent_layer::{AgentReport, RunResult};
use crate::fleet_layer::FleetReport;
use crate::fleet_report;
use crate::pam_layer::{ModuleResult, PamReport};
use crate::stats::{us, Latency};
use std::fmt::Write as _;
use std::path::Path;

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**not met**"
    }
}

fn machine_lines(text: &mut String, label: &str, m: &crate::machine::Machine) {
    let _ = writeln!(
        text,
        "- {label}: {} CPUs ({}), {} GiB, kernel {}; load average {} at the start, {} at the \
         end; 4 KiB write + fdatasync where the databases live: p50 {} us, p99 {} us \
         appended, p50 {} us, p99 {} us overwritten (the WAL's steady state)",
        m.cpus,
        m.cpu_model,
        m.memory_gib,
        m.kernel,
        m.load_start,
        m.load_end,
        us(m.fsync.p50_us),
        us(m.fsync.p99_us),
        us(m.overwrite_sync.p50_us),
        us(m.overwrite_sync.p99_us)
    );
}

fn agent_table(text: &mut String, report: &AgentReport) {
    let _ = writeln!(
        text,
        "| profiles | clients | requests | verifications/s | p50 ms | p99 ms | max ms | agent CPU us/verification | agent context switches/verification | bench CPU us/verification | refused (retried) | ended by | agent RSS MiB | database MiB |"
    );
    let _ = writeln!(
        text,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
    );
    for session in &report.sessions {
        for r in &session.runs {
            let _ = writeln!(
                text,
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {} | {} | {} | {:.1} | {:.1} |",
                r.profiles,
                r.clients,
                r.requests,
                r.verifications_per_s,
                r.latency.p50_us / 1000.0,
                r.latency.p99_us / 1000.0,
                r.latency.max_us / 1000.0,
                us(r.agent_cpu_us_per_request),
                r.agent_switches_per_request,
                us(r.client_cpu_us_per_request),
                r.retried,
                r.ended_by,
                r.agent_rss_kib as f64 / 1024.0,
                r.db_bytes as f64 / 1048576.0
            );
        }
    }
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "| profiles | seeding s | database after seeding MiB | fsync p50 / p99 us before the runs | agent RSS at the end MiB | database at the end MiB |"
    );
    let _ = writeln!(text, "|---:|---:|---:|---|---:|---:|");
    for s in &report.sessions {
        let _ = writeln!(
            text,
            "| {} | {:.1} | {:.1} | {} / {} | {:.1} | {:.1} |",
            s.profiles,
            s.seed_s,
            s.db_bytes_seeded as f64 / 1048576.0,
            us(s.fsync.p50_us),
            us(s.fsync.p99_us),
            s.agent_rss_kib_end as f64 / 1024.0,
            s.db_bytes_end as f64 / 1048576.0
        );
    }
}

fn pam_table(text: &mut String, report: &PamReport) {
    pam_rows(text, &report.results);
    if !report.load_per_login.is_empty() {
        let _ = writeln!(text);
        let _ = writeln!(
            text,
            "One thread, every module loaded by libpam at each pam_start and unloaded at \
             pam_end (an sshd session or a sudo run); cost above pam_permit in the same pass:"
        );
        let _ = writeln!(text);
        pam_rows(text, &report.load_per_login);
    }
    let load: Vec<(String, Latency)> = report
        .load
        .iter()
        .map(|l| (l.module.clone(), l.latency))
        .collect();
    latency_table(
        text,
        "Loading each module (dlopen + dlclose with nothing else holding it, 50 times; paid once \
         per process that logs in, e.g. each sshd session or sudo run, on top of the cost above):",
        ("module", "load"),
        &load,
    );
    let lookups: Vec<(String, Latency)> = report
        .nss_lookup
        .iter()
        .map(|l| (l.accounts.to_string(), l.latency))
        .collect();
    if !lookups.is_empty() {
        latency_table(
            text,
            "One NSS lookup (getpwnam_r) of each bench account, which pam_totp.so and \
             pam_google_authenticator both make at every login (part of both costs above):",
            ("accounts", "lookup"),
            &lookups,
        );
    }
}

/// A paragraph, then a table of p50 and p99 by `what` (its column header) for each row.
fn latency_table(
    text: &mut String,
    intro: &str,
    (what, measured): (&str, &str),
    rows: &[(String, Latency)],
) {
    let _ = writeln!(text);
    let _ = writeln!(text, "{intro}");
    let _ = writeln!(text);
    let _ = writeln!(text, "| {what} | {measured} p50 us | {measured} p99 us |");
    let _ = writeln!(text, "|---|---:|---:|");
    for (name, latency) in rows {
        let _ = writeln!(
            text,
            "| {name} | {} | {} |",
            us(latency.p50_us),
            us(latency.p99_us)
        );
    }
}

fn pam_rows(text: &mut String, results: &[ModuleResult]) {
    let _ = writeln!(
        text,
        "| accounts | threads | module | logins/s | p50 us | p99 us | mean us | cost p50 us | cost p99 us | state KiB | failed logins |"
    );
    let _ = writeln!(
        text,
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in results {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {} |",
            r.accounts,
            r.threads,
            r.module,
            r.logins_per_s,
            us(r.latency.p50_us),
            us(r.latency.p99_us),
            us(r.latency.mean_us),
            us(r.cost_p50_us),
            us(r.cost_p99_us),
            r.state_bytes as f64 / 1024.0,
            r.failures
        );
    }
}

/// The one-thread pass results of `module`, by accounts.
fn cost_series<'a>(report: &'a PamReport, module: &str) -> Vec<&'a ModuleResult> {
    let threads = report.results.iter().map(|r| r.threads).min().unwrap_or(1);
    let mut series: Vec<&ModuleResult> = report
        .results
        .iter()
        .filter(|r| r.module == module && r.threads == threads)
        .collect();
    series.sort_by_key(|r| r.accounts);
    series
}

fn run_at(report: &AgentReport, profiles: usize, clients: usize) -> Option<&RunResult> {
    report
        .sessions
        .iter()
        .find(|s| s.profiles == profiles)
        .and_then(|s| {
            s.runs
                .iter()
                .find(|r| r.clients == clients && r.requests > 0)
        })
}

fn pam_targets(text: &mut String, pam: Option<&PamReport>) {
    if let Some(pam) = pam {
        let ours = cost_series(pam, "pam_totp");
        let google = cost_series(pam, "pam_google_authenticator");
        let oath = cost_series(pam, "pam_oath");
        if let (Some(o), Some(g)) = (ours.last(), google.last()) {
            let ratio = o.cost_p50_us / g.cost_p50_us;
            let _ = writeln!(
                text,
                "| module cost above pam_permit at {} accounts at most 1/20 of google-authenticator's (p50) | pam_totp {} us, google-authenticator {} us: {:.2}x google's (target <= 0.05x) | {} |",
                o.accounts,
                us(o.cost_p50_us),
                us(g.cost_p50_us),
                ratio,
                met(ratio <= 0.05)
            );
        }
        if let (Some(first), Some(last), Some(ofirst), Some(olast)) =
            (ours.first(), ours.last(), oath.first(), oath.last())
        {
            if first.accounts == last.accounts {
                return;
            }
            let growth = last.cost_p50_us / first.cost_p50_us;
            let oath_growth = olast.cost_p50_us / ofirst.cost_p50_us;
            let _ = writeln!(
                text,
                "| pam_oath's cost grows with its file, ours does not | {} -> {} accounts: pam_oath {} -> {} us ({:.1}x), pam_totp {} -> {} us ({:.2}x) | {} |",
                first.accounts,
                last.accounts,
                us(ofirst.cost_p50_us),
                us(olast.cost_p50_us),
                oath_growth,
                us(first.cost_p50_us),
                us(last.cost_p50_us),
                growth,
                met(oath_growth > 1.5 && growth <= 1.5)
            );
        }
    }
}

fn agent_targets(text: &mut String, agent: Option<&AgentReport>) {
    if let Some(agent) = agent {
        if let Some(r) = run_at(agent, 100_000, 64) {
            let ok = r.verifications_per_s >= 20_000.0 && r.latency.p99_us < 2000.0;
            let _ = writeln!(
                text,
                "| agent: >= 20,000 verifications/s at 64 clients with 100k profiles, p99 < 2 ms | {:.0}/s, p99 {:.2} ms | {} |",
                r.verifications_per_s,
                r.latency.p99_us / 1000.0,
                met(ok)
            );
        }
        let smallest = agent.sessions.iter().map(|s| s.profiles).min();
        let largest = agent.sessions.iter().map(|s| s.profiles).max();
        if let (Some(small), Some(large)) = (smallest, largest) {
            if small < large {
                let mut figures = Vec::new();
                let mut worst: f64 = 0.0;
                for clients in agent.config.clients.iter().copied() {
                    if let (Some(a), Some(b)) =
                        (run_at(agent, small, clients), run_at(agent, large, clients))
                    {
                        let ratio = b.agent_cpu_us_per_request / a.agent_cpu_us_per_request;
                        worst = worst.max(ratio);
                        let noun = if clients == 1 { "client" } else { "clients" };
                        figures.push(format!(
                            "{clients} {noun} {} -> {} us ({ratio:.2}x)",
                            us(a.agent_cpu_us_per_request),
                            us(b.agent_cpu_us_per_request)
                        ));
                    }
                }
                let latency = match (run_at(agent, small, 1), run_at(agent, large, 1)) {
                    (Some(a), Some(b)) => format!(
                        "; p50 latency at 1 client {:.2} -> {:.2} ms ({:.2}x)",
                        a.latency.p50_us / 1000.0,
                        b.latency.p50_us / 1000.0,
                        b.latency.p50_us / a.latency.p50_us
                    ),
                    _ => String::new(),
                };
                let _ = writeln!(
                    text,
                    "| cost per verification at {} profiles within 1.5x of {} | agent CPU per verification: {}{latency} | {} (CPU) |",
                    large,
                    small,
                    figures.join(", "),
                    met(worst > 0.0 && worst <= 1.5)
                );
            }
        }
        if let Some(s) = agent
            .sessions
            .iter()
            .filter(|s| s.profiles >= 1_000_000)
            .max_by_key(|s| s.profiles)
        {
            let mib = s.agent_rss_kib_end as f64 / 1024.0;
            let _ = writeln!(
                text,
                "| agent RSS under 64 MB at 1M profiles | {:.1} MiB at {} profiles (VmRSS after the runs) | {} |",
                mib,
                s.profiles,
                met(mib < 64.0)
            );
        }
    }
}

/// Writes OUT/report.md and returns its text.
pub fn render(out: &Path) -> Result<String, String> {
    let agent: Option<AgentReport> = read(&out.join("agent.json"))?;
    let fleet: Option<FleetReport> = read(&out.join("fleet.json"))?;
    let pam: Option<PamReport> = read(&out.join("pam.json"))?;
    if agent.is_none() && fleet.is_none() && pam.is_none() {
        return Err(format!(
            "no agent.json, fleet.json or pam.json in {}: run the layers first",
            out.display()
        ));
    }
    let mut text = String::new();
    let _ = writeln!(text, "### Machine and load\n");
    if let Some(a) = &agent {
        machine_lines(&mut text, "agent layer", &a.machine);
    }
    if let Some(f) = &fleet {
        machine_lines(&mut text, "fleet layer", &f.machine);
    }
    if let Some(p) = &pam {
        machine_lines(&mut text, "PAM layer", &p.machine);
    }
    let _ = writeln!(text, "\n### Targets\n");
    let _ = writeln!(text, "| target | measured | verdict |");
    let _ = writeln!(text, "|---|---|---|");
    pam_targets(&mut text, pam.as_ref());
    agent_targets(&mut text, agent.as_ref());
    if let Some(f) = &fleet {
        fleet_report::targets(&mut text, f);
    }
    if let Some(a) = &agent {
        let _ = writeln!(text, "\n### Agent layer\n");
        agent_table(&mut text, a);
    }
    if let Some(f) = &fleet {
        let _ = writeln!(text, "\n### Fleet store (PostgreSQL)\n");
        fleet_report::tables(&mut text, f);
    }
    if let Some(p) = &pam {
        let _ = writeln!(text, "\n### PAM layer (syslog: {})\n", p.config.syslog);
        pam_table(&mut text, p);
        let _ = writeln!(text, "\nPAM lines (each service also has `account required pam_permit.so`, `password required pam_deny.so`, `session required pam_permit.so`):\n");
        for line in &p.config.stacks {
            let _ = writeln!(text, "- `{line}`");
        }
    }
    let path = out.join("report.md");
    std::fs::write(&path, &text).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(text)
}
