//! `pam-totp-xtask assets OUTDIR`: writes what the packages ship besides the binaries, generated
//! from the same clap definitions the binaries parse with, so flags and pages never drift apart:
//!
//! - `OUTDIR/man/pam-totp.1` and one page per subcommand (`pam-totp-enroll.1`, ...),
//! - `OUTDIR/man/pam-totp-agent.8`,
//! - `OUTDIR/man/pam_totp.8`, hand-written (`packaging/man/pam_totp.8.in`), with the version,
//! - `OUTDIR/completions/{bash/pam-totp,zsh/_pam-totp,fish/pam-totp.fish}`.
//!
//! Hand-written sections (exit status, files, security notes) are appended from
//! `packaging/man/*.extra`.
//! Run by `make deb`, `make rpm` and `make install`.

use clap_complete::Shell;
use clap_mangen::Man;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const CLI_NAME: &str = "pam-totp";
const AGENT_NAME: &str = "pam-totp-agent";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [command, out] if command == "assets" => match assets(Path::new(out)) {
            Ok(written) => {
                for path in written {
                    println!("{}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("pam-totp-xtask: {error}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: pam-totp-xtask assets OUTDIR");
            ExitCode::from(2)
        }
    }
}

/// The hand-written roff, in the repository's `packaging/man/`.
fn extra_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/man")
}

/// Writes every generated file below `out`; returns their paths.
fn assets(out: &Path) -> io::Result<Vec<PathBuf>> {
    let man_dir = out.join("man");
    fs::create_dir_all(&man_dir)?;
    let extra = extra_dir();
    let mut written = Vec::new();
    let date = release_date(&read_extra(&extra, "../debian/changelog")?)?;

    let cli = pam_totp_cli::command()
        .disable_help_subcommand(true)
        .bin_name(CLI_NAME);
    written.extend(man_pages(
        cli.clone(),
        "1",
        &date,
        &man_dir,
        &read_extra(&extra, "pam-totp.1.extra")?,
    )?);
    let module = read_extra(&extra, "pam_totp.8.in")?
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"))
        .replace("@DATE@", &date);
    let path = man_dir.join("pam_totp.8");
    fs::write(&path, module)?;
    written.push(path);
    let agent = pam_totp_agent::args::command().bin_name(AGENT_NAME);
    written.extend(man_pages(
        agent,
        "8",
        &date,
        &man_dir,
        &read_extra(&extra, "pam-totp-agent.8.extra")?,
    )?);

    for (shell, dir, name) in [
        (Shell::Bash, "bash", CLI_NAME.to_owned()),
        (Shell::Zsh, "zsh", format!("_{CLI_NAME}")),
        (Shell::Fish, "fish", format!("{CLI_NAME}.fish")),
    ] {
        let dir = out.join("completions").join(dir);
        fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        let mut buffer = Vec::new();
        clap_complete::generate(shell, &mut cli.clone(), CLI_NAME, &mut buffer);
        fs::write(&path, buffer)?;
        written.push(path);
    }
    Ok(written)
}

fn read_extra(dir: &Path, name: &str) -> io::Result<String> {
    let path = dir.join(name);
    fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))
}

/// The page of `cmd` (with `extra` roff before its VERSION section) and, recursively, one page
/// per visible subcommand, named like `pam-totp-enroll.1`.
fn man_pages(
    mut cmd: clap::Command,
    section: &str,
    date: &str,
    dir: &Path,
    extra: &str,
) -> io::Result<Vec<PathBuf>> {
    cmd.build();
    let mut written = Vec::new();
    let path = dir.join(format!("{}.{section}", page_name(&cmd)));
    fs::write(&path, render(&cmd, section, date, extra)?)?;
    written.push(path);
    let root = page_name(&cmd).to_owned();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let see_also = format!(".SH \"SEE ALSO\"\n.BR {} ({section})\n", roff_name(&root));
        written.extend(man_pages(sub.clone(), section, date, dir, &see_also)?);
    }
    Ok(written)
}

/// `pam-totp`, or `pam-totp-enroll` for a subcommand (clap's display name after `build`).
fn page_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
}

/// A name as roff text: a leading `-` written as `\-`.
fn roff_name(name: &str) -> String {
    name.replace('-', "\\-")
}

fn render(cmd: &clap::Command, section: &str, date: &str, extra: &str) -> io::Result<Vec<u8>> {
    let version = env!("CARGO_PKG_VERSION");
    let man = Man::new(cmd.clone())
        .title(page_name(cmd).to_uppercase())
        .section(section)
        .date(date)
        .source(format!("pam-totp {version}"))
        .manual("pam-totp");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    page.write_all(extra.as_bytes())?;
    if !extra.is_empty() && !extra.ends_with('\n') {
        page.push(b'\n');
    }
    // Subcommands carry no version of their own (clap_mangen would panic on them).
    if cmd.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    Ok(page)
}

/// The date of the newest entry of a Debian changelog (its first trailer line,
/// ` -- NAME <MAIL>  Sun, 22 Nov 2026 12:00:00 +0000`) as `2026-11-22`: the pages carry the
/// release date, not the build date, so builds are reproducible.
fn release_date(changelog: &str) -> io::Result<String> {
    let invalid =
        |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("changelog: {why}"));
    let trailer = changelog
        .lines()
        .find(|line| line.starts_with(" -- "))
        .ok_or_else(|| invalid("no trailer line"))?;
    let (_, when) = trailer
        .split_once(">  ")
        .ok_or_else(|| invalid("no date in the trailer line"))?;
    // "Sun, 22 Nov 2026 12:00:00 +0000"
    let fields: Vec<&str> = when.split_whitespace().collect();
    let [_, day, month, year, ..] = fields.as_slice() else {
        return Err(invalid("malformed date"));
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS
        .iter()
        .position(|m| m == month)
        .ok_or_else(|| invalid("unknown month"))?;
    let day: u32 = day.parse().map_err(|_| invalid("bad day"))?;
    let year: u32 = year.parse().map_err(|_| invalid("bad year"))?;
    Ok(format!("{year:04}-{:02}-{day:02}", month + 1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn release_date_from_the_changelog() {
        let changelog = "pam-totp (0.1.0) unstable; urgency=medium\n\n  * x\n\n -- A B <a@b.example>  Sun, 02 Nov 2026 12:00:00 +0000\n";
        assert_eq!(release_date(changelog).unwrap(), "2026-11-02");
        assert!(release_date("no trailer").is_err());
    }

    /// The shipped /etc/pam-totp/agent.toml is accepted as it is (every key commented out),
    /// and its commented values are the agent's defaults.
    #[test]
    fn shipped_agent_config_shows_the_defaults() {
        use pam_totp_agent::config::Config;
        let shipped = read_extra(&extra_dir(), "../agent.toml").unwrap();
        assert_eq!(Config::parse(&shipped).unwrap(), Config::default());
        let uncommented: String = shipped
            .lines()
            .filter_map(|line| line.strip_prefix('#'))
            .filter(|line| line.starts_with('[') || line.contains(" = "))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(uncommented.contains("[lockout]") && uncommented.contains("max_seconds"));
        let expected = Config {
            admin_group: Some("totpadmin".into()),
            store: Some("postgres://pamtotp@db1.example.org/pamtotp?sslmode=verify-full".into()),
            store_password_file: Some(
                "/run/credentials/pam-totp-agent.service/store-password".into(),
            ),
            store_key_file: Some("/run/credentials/pam-totp-agent.service/store-key".into()),
            host_name: Some("web1".into()),
            ..Config::default()
        };
        assert_eq!(Config::parse(&uncommented).unwrap(), expected);
    }

    #[test]
    fn writes_pages_for_every_command_and_the_completions() {
        let out = tempfile::tempdir().unwrap();
        let written = assets(out.path()).unwrap();
        let man = out.path().join("man");
        for page in [
            "pam-totp.1",
            "pam-totp-enroll.1",
            "pam-totp-agent.8",
            "pam_totp.8",
        ] {
            assert!(man.join(page).is_file(), "{page} missing: {written:?}");
        }
        let main = fs::read_to_string(man.join("pam-totp.1")).unwrap();
        // Every subcommand is listed, the hand-written sections are in, and so is the version.
        for sub in pam_totp_cli::command().get_subcommands() {
            assert!(
                main.contains(&format!(
                    "pam\\-totp\\-{}",
                    sub.get_name().replace('-', "\\-")
                )),
                "{} not listed",
                sub.get_name()
            );
            assert!(man.join(format!("pam-totp-{}.1", sub.get_name())).is_file());
        }
        assert!(main.contains(".SH \"EXIT STATUS\""));
        assert!(main.contains(".SH VERSION"));
        let agent = fs::read_to_string(man.join("pam-totp-agent.8")).unwrap();
        assert!(agent.contains("\n.TH PAM-TOTP-AGENT 8 20"));
        assert!(agent.contains("\\-\\-socket") && agent.contains(".SH \"FILES\""));
        let module = fs::read_to_string(man.join("pam_totp.8")).unwrap();
        let version = format!("\"pam\\-totp {}\"", env!("CARGO_PKG_VERSION"));
        assert!(module.starts_with(".TH PAM_TOTP 8 \"20") && module.contains(&version));
        assert!(!module.contains("@DATE@") && !module.contains("@VERSION@"));
        let bash = fs::read_to_string(out.path().join("completions/bash/pam-totp")).unwrap();
        assert!(bash.contains("enroll"));
        assert!(out.path().join("completions/zsh/_pam-totp").is_file());
        assert!(out.path().join("completions/fish/pam-totp.fish").is_file());
    }
}
