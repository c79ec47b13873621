//! The fleet layer's Markdown: its table, and issue 12's goal (through two agents on
//! PostgreSQL, at least half of the single-host SQLite throughput).

use crate::fleet_layer::{FleetReport, FleetRun, Setup};
use crate::stats::us;
use std::fmt::Write as _;

/// The run of `setup` at `profiles` and `clients`, if it sent anything.
fn run_of(
    report: &FleetReport,
    profiles: usize,
    setup: Setup,
    clients: usize,
) -> Option<&FleetRun> {
    report
        .sessions
        .iter()
        .filter(|s| s.profiles == profiles)
        .flat_map(|s| &s.runs)
        .find(|r| r.setup == setup && r.run.clients == clients && r.run.requests > 0)
}

/// Throughput of `run` as a share of SQLite's at the same profiles and clients.
fn share_of_sqlite(report: &FleetReport, run: &FleetRun) -> Option<f64> {
    let sqlite = run_of(report, run.run.profiles, Setup::Sqlite, run.run.clients)?;
    (sqlite.run.verifications_per_s > 0.0)
        .then(|| run.run.verifications_per_s / sqlite.run.verifications_per_s)
}

/// One row per profile count for the targets table: PostgreSQL through two agents against
/// SQLite, at every client count. Met when every ratio is at least 0.5.
pub fn targets(text: &mut String, report: &FleetReport) {
    for session in &report.sessions {
        let mut figures = Vec::new();
        let mut worst = f64::INFINITY;
        for run in session.runs.iter().filter(|r| r.setup == Setup::Postgres2) {
            let (Some(ratio), Some(sqlite)) = (
                share_of_sqlite(report, run),
                run_of(report, session.profiles, Setup::Sqlite, run.run.clients),
            ) else {
                continue;
            };
            worst = worst.min(ratio);
            let noun = if run.run.clients == 1 {
                "client"
            } else {
                "clients"
            };
            figures.push(format!(
                "{} {noun}: {:.0}/s against {:.0}/s ({ratio:.2}x)",
                run.run.clients, run.run.verifications_per_s, sqlite.run.verifications_per_s
            ));
        }
        if figures.is_empty() {
            continue;
        }
        let _ = writeln!(
            text,
            "| fleet store (issue 12): through two agents on PostgreSQL, at least half of the single-host SQLite throughput ({} profiles) | {} | {} |",
            session.profiles,
            figures.join("; "),
            if worst >= 0.5 {
                "**met**"
            } else {
                "**not met**"
            }
        );
    }
}

/// The fleet layer's tables.
pub fn tables(text: &mut String, report: &FleetReport) {
    let _ = writeln!(
        text,
        "| profiles | store | agents | clients | requests | logins/s | vs SQLite | p50 ms | p99 ms | max ms | agent CPU us/login | PostgreSQL CPU us/login | bench CPU us/login | machine busy | refused (retried) | ended by |"
    );
    let _ = writeln!(
        text,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let mut runs: Vec<&FleetRun> = report.sessions.iter().flat_map(|s| &s.runs).collect();
    // Grouped by profiles and clients, the stores side by side (the runs took turns).
    runs.sort_by_key(|r| (r.run.profiles, r.run.clients));
    for r in runs {
        let vs = share_of_sqlite(report, r)
            .filter(|_| r.setup != Setup::Sqlite)
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}x"));
        let db_cpu = if r.setup == Setup::Sqlite {
            "-".to_owned()
        } else {
            us(r.db_cpu_us_per_request)
        };
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {:.0}% | {} | {} |",
            r.run.profiles,
            r.store,
            r.agents,
            r.run.clients,
            r.run.requests,
            r.run.verifications_per_s,
            vs,
            r.run.latency.p50_us / 1000.0,
            r.run.latency.p99_us / 1000.0,
            r.run.latency.max_us / 1000.0,
            us(r.run.agent_cpu_us_per_request),
            db_cpu,
            us(r.run.client_cpu_us_per_request),
            r.machine_busy * 100.0,
            r.run.retried,
            r.run.ended_by
        );
    }
    let _ = writeln!(text);
    let _ = writeln!(
        text,
        "| profiles | SQLite seeding s | PostgreSQL seeding s | PostgreSQL database after seeding MiB | PostgreSQL |"
    );
    let _ = writeln!(text, "|---:|---:|---:|---:|---|");
    for s in &report.sessions {
        let _ = writeln!(
            text,
            "| {} | {:.1} | {:.1} | {:.1} | {} |",
            s.profiles,
            s.seed_sqlite_s,
            s.seed_postgres_s,
            s.postgres_bytes_seeded as f64 / 1048576.0,
            s.postgres_version
        );
    }
}
