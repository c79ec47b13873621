//! One subcommand -> one validated proto request, plus how its reply is to be shown.
//!
//! [`plan`] hands each command to its own builder in [`build`]; a code not on the command
//! line is read through [`code`], the account defaults through [`account`], and `--fields`
//! is checked in [`fields`].

mod account;
mod build;
mod code;
mod fields;

pub use account::caller_account;

use crate::args::{Command, ImportSource};
use pam_totp_proto::{ApiError, Request, SecretString};

/// How the reply of a request is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// `own` when the account defaulted to the caller's (shapes the "verify" hint).
    Enroll {
        own: bool,
    },
    Verify,
    Show {
        fields: Option<Vec<&'static str>>,
    },
    List {
        fields: Option<Vec<&'static str>>,
    },
    Disable,
    Enable,
    Remove,
    Unlock,
    Codes,
    Set,
    Log,
    Status,
    Metrics,
}

/// What a command does: one request, or an import (a file read here, then batches).
#[derive(Debug)]
pub enum Job {
    Call(Plan),
    Import(ImportSource),
}

/// [`plan`] for every command but `import`, which is more than one request.
pub fn prepare(
    command: Command,
    caller: impl FnOnce() -> Result<String, ApiError>,
    read_code: impl FnOnce() -> Result<SecretString, ApiError>,
) -> Result<Job, ApiError> {
    match command {
        Command::Import(source) => Ok(Job::Import(source)),
        command => plan(command, caller, read_code).map(Job::Call),
    }
}

#[derive(Debug)]
pub struct Plan {
    pub request: Request,
    pub view: View,
}

/// Validates every argument and builds the request. `caller` resolves the account of the
/// calling user; it is only asked when `[USER]` was left out, after everything else passed.
/// `read_code` reads a code that is not on the command line (`-`, or `verify` without CODE):
/// it is asked last, once everything else passed, and its code is validated like one given.
pub fn plan(
    command: Command,
    caller: impl FnOnce() -> Result<String, ApiError>,
    read_code: impl FnOnce() -> Result<SecretString, ApiError>,
) -> Result<Plan, ApiError> {
    match command {
        Command::Enroll(args) => build::enroll(args, caller, read_code),
        Command::Verify { user, code } => build::verify(user, code, caller, read_code),
        Command::Show { user, fields } => build::show(user, fields, caller),
        Command::List { fields } => build::list(fields),
        Command::Disable { user } => build::disable(user),
        Command::Enable { user } => build::enable(user),
        Command::Unlock { user } => build::unlock(user),
        Command::Remove { user, code } => build::remove(user, code, caller, read_code),
        Command::Codes {
            user,
            regenerate,
            code,
        } => build::codes(user, regenerate, code, caller, read_code),
        Command::Set { user, comment } => build::set(user, comment, caller),
        Command::Log { user, since, limit } => build::log(user, since, limit),
        Command::Metrics => Ok(Plan {
            request: Request::Metrics {},
            view: View::Metrics,
        }),
        Command::Status => Ok(Plan {
            request: Request::Status {},
            view: View::Status,
        }),
        Command::Import(_) => Err(ApiError::internal(
            "import is not a single request (see commands::prepare)",
        )),
    }
}

#[cfg(test)]
mod tests;
