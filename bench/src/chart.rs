//! SVG charts from the JSON results: the agent's throughput against clients, its latency
//! against clients, the fleet store's logins/s against clients beside SQLite's, and the cost
//! per login against the number of accounts (ours beside the incumbents).

use crate::agent_layer::AgentReport;
use crate::fleet_layer::{FleetReport, Setup};
use crate::pam_layer::PamReport;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const OURS: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const GOOGLE: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const OATH: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const AGENT: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const SERIES: [RGBColor; 4] = [OURS, AGENT, GOOGLE, RGBColor(0x94, 0x67, 0xbd)];
/// The fleet chart's lines: up to three setups at two profile counts before colours repeat.
const FLEET_SERIES: [RGBColor; 6] = [
    AGENT,
    OURS,
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x8c, 0x56, 0x4b),
    OATH,
];
const SIZE: (u32, u32) = (960, 560);

type Points = Vec<(f64, f64)>;

fn err(e: impl std::fmt::Display) -> String {
    format!("chart: {e}")
}

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn human(n: f64) -> String {
    if n >= 1e6 {
        format!("{}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{}k", n / 1e3)
    } else {
        format!("{n}")
    }
}

/// One line chart, log x; y log or linear from 0.
#[allow(clippy::too_many_arguments)]
fn line_chart(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, RGBColor, Points)],
    log_y: bool,
    hline: Option<(f64, &str)>,
) -> Result<(), String> {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, _, p)| p.clone()).collect();
    let x_min = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = all.iter().map(|p| p.0).fold(0.0, f64::max);
    let mut y_max = all.iter().map(|p| p.1).fold(0.0, f64::max);
    let mut y_min = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    if let Some((y, _)) = hline {
        y_max = y_max.max(y);
        y_min = y_min.min(y);
    }
    if !x_min.is_finite() || x_max <= 0.0 {
        return Err(err(format!("{caption}: no data")));
    }
    let x_range = (x_min / 1.5)..(x_max * 1.5);
    root.fill(&WHITE).map_err(err)?;
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(caption, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80);
    let x_fmt = |x: &f64| human(*x);
    if log_y {
        let y_range = (y_min.max(0.1) / 2.0)..(y_max * 2.0);
        let mut chart = builder
            .build_cartesian_2d(x_range.clone().log_scale(), y_range.log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|y| human(*y))
            .light_line_style(RGBColor(0xf2, 0xf2, 0xf2))
            .draw()
            .map_err(err)?;
        draw_lines(&mut chart, series, hline, x_range)?;
    } else {
        let mut chart = builder
            .build_cartesian_2d(x_range.clone().log_scale(), 0.0..(y_max * 1.15))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|y| human(*y))
            .light_line_style(RGBColor(0xf2, 0xf2, 0xf2))
            .draw()
            .map_err(err)?;
        draw_lines(&mut chart, series, hline, x_range)?;
    }
    root.present().map_err(err)
}

fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[(String, RGBColor, Points)],
    hline: Option<(f64, &str)>,
    x_range: std::ops::Range<f64>,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (label, color, points) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
            )
            .map_err(err)?;
    }
    if let Some((y, label)) = hline {
        let grey = RGBColor(0x60, 0x60, 0x60);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x_range.start, y), (x_range.end, y)],
                8,
                6,
                grey.stroke_width(1),
            ))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], grey));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

fn agent_charts(report: &AgentReport, out: &Path) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    let per_profiles = |f: &dyn Fn(&crate::agent_layer::RunResult) -> f64| {
        report
            .sessions
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    format!("{} profiles", human(s.profiles as f64)),
                    SERIES[i % SERIES.len()],
                    s.runs
                        .iter()
                        .filter(|r| r.requests > 0)
                        .map(|r| (r.clients as f64, f(r)))
                        .collect::<Points>(),
                )
            })
            .collect::<Vec<_>>()
    };
    let path = out.join("agent-throughput.svg");
    {
        let root = SVGBackend::new(&path, SIZE).into_drawing_area();
        line_chart(
            &root,
            "pam-totp agent: verifications/s against concurrent clients",
            "concurrent clients (log scale)",
            "verifications per second",
            &per_profiles(&|r| r.verifications_per_s),
            false,
            Some((20_000.0, "target: 20,000/s at 64 clients, 100k profiles")),
        )?;
    }
    written.push(path);
    let path = out.join("agent-latency.svg");
    {
        let mut series = Vec::new();
        for (label, color, points) in per_profiles(&|r| r.latency.p50_us / 1000.0) {
            series.push((format!("p50, {label}"), color, points));
        }
        for (label, color, points) in per_profiles(&|r| r.latency.p99_us / 1000.0) {
            series.push((format!("p99, {label}"), lighter(color), points));
        }
        let root = SVGBackend::new(&path, SIZE).into_drawing_area();
        line_chart(
            &root,
            "pam-totp agent: verification latency against concurrent clients",
            "concurrent clients (log scale)",
            "latency, ms (log scale)",
            &series,
            true,
            Some((2.0, "target: p99 < 2 ms at 64 clients")),
        )?;
    }
    written.push(path);
    Ok(written)
}

/// Logins/s against clients, one line per store setup and profile count, with the goal of
/// issue 12 (half of SQLite's throughput) drawn at each client count.
fn fleet_chart(report: &FleetReport, out: &Path) -> Result<PathBuf, String> {
    let mut series: Vec<(String, RGBColor, Points)> = Vec::new();
    let mut colors = FLEET_SERIES.iter().cycle();
    for session in &report.sessions {
        for setup in &report.config.setups {
            let points: Points = session
                .runs
                .iter()
                .filter(|r| r.setup == *setup && r.run.requests > 0)
                .map(|r| (r.run.clients as f64, r.run.verifications_per_s))
                .collect();
            if let (false, Some(color)) = (points.is_empty(), colors.next()) {
                let label = format!(
                    "{}, {} profiles",
                    setup.label(),
                    human(session.profiles as f64)
                );
                series.push((label, *color, points));
            }
            if *setup == Setup::Sqlite {
                let half: Points = session
                    .runs
                    .iter()
                    .filter(|r| r.setup == Setup::Sqlite && r.run.requests > 0)
                    .map(|r| (r.run.clients as f64, r.run.verifications_per_s / 2.0))
                    .collect();
                if !half.is_empty() {
                    series.push((
                        format!(
                            "goal: half of SQLite's, {} profiles",
                            human(session.profiles as f64)
                        ),
                        RGBColor(0xa0, 0xa0, 0xa0),
                        half,
                    ));
                }
            }
        }
    }
    let path = out.join("fleet-throughput.svg");
    {
        let root = SVGBackend::new(&path, SIZE).into_drawing_area();
        line_chart(
            &root,
            "pam-totp fleet store: logins/s against concurrent clients",
            "concurrent clients (log scale)",
            "logins per second",
            &series,
            false,
            None,
        )?;
    }
    Ok(path)
}

/// The colour halfway to white: the p99 line beside its p50 line.
fn lighter(color: RGBColor) -> RGBColor {
    let blend = |c: u8| ((u16::from(c) + 255) / 2) as u8;
    RGBColor(blend(color.0), blend(color.1), blend(color.2))
}

fn cost_chart(
    pam: Option<&PamReport>,
    agent: Option<&AgentReport>,
    out: &Path,
) -> Result<Option<PathBuf>, String> {
    let mut series: Vec<(String, RGBColor, Points)> = Vec::new();
    if let Some(pam) = pam {
        for (module, label, color) in [
            ("pam_totp", "pam_totp.so (login p50 above pam_permit)", OURS),
            (
                "pam_google_authenticator",
                "pam_google_authenticator.so (p50 above pam_permit)",
                GOOGLE,
            ),
            ("pam_oath", "pam_oath.so (p50 above pam_permit)", OATH),
        ] {
            // The one-thread pass: each login's own cost, no queueing.
            let threads = pam.results.iter().map(|r| r.threads).min().unwrap_or(1);
            let points: Points = pam
                .results
                .iter()
                .filter(|r| r.module == module && r.threads == threads)
                .map(|r| (r.accounts as f64, r.cost_p50_us.max(1.0)))
                .collect();
            if !points.is_empty() {
                series.push((label.to_owned(), color, points));
            }
        }
    }
    if let Some(agent) = agent {
        let single: Points = agent
            .sessions
            .iter()
            .filter_map(|s| {
                s.runs
                    .iter()
                    .find(|r| r.clients == 1 && r.requests > 0)
                    .map(|r| (s.profiles as f64, r.latency.p50_us.max(1.0)))
            })
            .collect();
        if !single.is_empty() {
            series.push((
                "pam-totp agent: verification p50, 1 client".into(),
                AGENT,
                single,
            ));
        }
        let cpu: Points = agent
            .sessions
            .iter()
            .filter_map(|s| {
                s.runs
                    .iter()
                    .filter(|r| r.requests > 0)
                    .max_by_key(|r| r.clients)
                    .map(|r| (s.profiles as f64, r.agent_cpu_us_per_request.max(1.0)))
            })
            .collect();
        if !cpu.is_empty() {
            series.push((
                "pam-totp agent: CPU per verification, most clients".into(),
                RGBColor(0x94, 0x67, 0xbd),
                cpu,
            ));
        }
    }
    if series.is_empty() {
        return Ok(None);
    }
    let path = out.join("cost-vs-accounts.svg");
    {
        let root = SVGBackend::new(&path, SIZE).into_drawing_area();
        line_chart(
            &root,
            "Cost per login against accounts / profiles",
            "accounts (PAM layer) or profiles (agent layer), log scale",
            "microseconds (log scale)",
            &series,
            true,
            None,
        )?;
    }
    Ok(Some(path))
}

/// Writes every chart the results in `out` allow; returns their paths.
pub fn render(out: &Path) -> Result<Vec<PathBuf>, String> {
    let agent: Option<AgentReport> = read(&out.join("agent.json"))?;
    let fleet: Option<FleetReport> = read(&out.join("fleet.json"))?;
    let pam: Option<PamReport> = read(&out.join("pam.json"))?;
    if agent.is_none() && fleet.is_none() && pam.is_none() {
        return Err(format!(
            "no agent.json, fleet.json or pam.json in {}: run the layers first",
            out.display()
        ));
    }
    let mut written = Vec::new();
    if let Some(agent) = &agent {
        written.extend(agent_charts(agent, out)?);
    }
    if let Some(fleet) = &fleet {
        written.push(fleet_chart(fleet, out)?);
    }
    written.extend(cost_chart(pam.as_ref(), agent.as_ref(), out)?);
    Ok(written)
}
