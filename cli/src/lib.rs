//! The command-line syntax of `pam-totp`, as a library so the packaging tool (`xtask/`) can
//! render man pages and shell completions from the same clap definition the binary parses with.

pub mod args;

/// The clap definition of `pam-totp` (for man pages and completions).
pub fn command() -> clap::Command {
    <args::Cli as clap::CommandFactory>::command()
}
