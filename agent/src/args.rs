//! Command-line syntax of `pam-totp-agent` (clap), in the library so the packaging tool
//! (`xtask/`) can render the man page from the same definition.

use crate::config::DEFAULT_DB;
use clap::{CommandFactory, Parser, Subcommand};
use pam_totp_proto::DEFAULT_SOCKET;
use std::path::PathBuf;

/// The pam-totp agent: holds TOTP and HOTP profiles and answers the PAM module and the CLI.
#[derive(Debug, Parser)]
#[command(name = "pam-totp-agent", version)]
pub struct Args {
    /// Unix socket to listen on (ignored when systemd passes one)
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// SQLite database holding the profiles (one host)
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DB, global = true)]
    pub db: PathBuf,
    /// Fleet store shared by many hosts: postgres://USER@HOST[:PORT][,HOST2...]/DB?sslmode=...
    /// (or `store` in the config; its password and key come from files named there)
    #[arg(long, value_name = "URL", conflicts_with = "db", global = true)]
    pub store: Option<String>,
    /// This agent's name in a fleet [default: config `host_name`, else the host name]
    #[arg(long, value_name = "NAME", global = true)]
    pub host_name: Option<String>,
    /// TOML configuration [default: /etc/pam-totp/agent.toml, if present]
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Write an online, consistent copy of the SQLite store to FILE (mode 0600; an existing
    /// FILE is never overwritten) while the agent keeps answering. An agent started on a
    /// restored copy treats every time step up to now + its window (and every HOTP counter up
    /// to the next one + hotp_window) as used for every profile, so no code used since the
    /// backup works again (each account waits at most one window for its next code; an HOTP
    /// token is pressed up to hotp_window + 1 times).
    Backup {
        /// Where to write the copy (must not exist)
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Print the fleet store's SQL schema, for DBAs who create it themselves (the agent
    /// otherwise creates and migrates it when it connects).
    Schema,
    /// Copy a host's SQLite profiles (secrets, state, emergency codes, audit trail) into the
    /// fleet store named by --store or the config. Idempotent: a profile already there with
    /// the same secret is skipped; one with another secret is a conflict, reported and left
    /// alone unless --replace.
    Migrate {
        /// The host's SQLite database
        #[arg(long, value_name = "SQLITE_PATH")]
        from: PathBuf,
        /// Overwrite fleet profiles that conflict
        #[arg(long)]
        replace: bool,
    },
}

/// The clap definition of the command line (for man pages).
pub fn command() -> clap::Command {
    Args::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn definition_is_consistent() {
        super::command().debug_assert();
    }
}
