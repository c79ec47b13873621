//! `pam-totp`: the command-line tool for users and administrators. Each command validates its
//! input, sends one request to the agent and prints the reply (human text or `--json`);
//! `import` reads a file and sends its profiles in batches (see `import`). A code that is not
//! on the command line is read from standard input or a terminal prompt (see `code_input`).
//! Errors: one line on stderr, the contract's JSON error object on stdout with `--json`, and
//! the contract's exit code.

mod code_input;
mod commands;
mod import;
mod output;
mod qr;
mod style;
mod timefmt;

use args::{Cli, ParseFailure};
use clap::Parser;
use commands::Job;
use pam_totp_cli::args;
use pam_totp_proto::{ApiError, Client, ClientError, ErrorCode, Reply, Request};
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use zeroize::Zeroizing;

/// Deadline for one whole exchange with the agent.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let raw: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&raw) {
        Ok(cli) => cli,
        Err(error) => {
            return match args::classify(error) {
                ParseFailure::Display(error) => {
                    let _ = error.print();
                    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(0))
                }
                ParseFailure::Invalid(error) => fail(&error, args::wants_json(&raw)),
            }
        }
    };
    let json = cli.json;
    match run(cli) {
        Ok(done) => match (write_stdout(&done.text), done.error) {
            (Err(error), _) => fail(&error, false),
            (Ok(()), None) => ExitCode::SUCCESS,
            // The output already holds the error object (`--json`) or the details.
            (Ok(()), Some(error)) => fail(&error, false),
        },
        Err(error) => fail(&error, json),
    }
}

/// What a command printed, and the error that decides its exit status when it only partly
/// succeeded (an import with refused profiles).
struct Done {
    text: Zeroizing<String>,
    error: Option<ApiError>,
}

fn run(cli: Cli) -> Result<Done, ApiError> {
    let socket = cli.socket_path(std::env::var_os(args::SOCKET_ENV))?;
    let json = cli.json;
    let client = Client::new(&socket, REQUEST_TIMEOUT);
    match commands::prepare(cli.command, commands::caller_account, code_input::read_code)? {
        Job::Call(plan) => {
            // `list` and `log` follow the agent's pages.
            let reply = match plan.request {
                Request::List { .. } => client.list_all().map(Reply::Profiles),
                Request::Log {
                    account,
                    since,
                    limit,
                    ..
                } => client.log(account, since, limit).map(Reply::Log),
                request => client.call(request),
            }
            .map_err(|error| client_error(error, &socket))?;
            let terminal = std::io::stdout().is_terminal();
            let human = output::Human {
                terminal,
                colour: style::colour_from_env(json, terminal),
                zone: timefmt::Zone::Local,
                user_name: &user_name,
            };
            Ok(Done {
                text: output::render(&plan.view, reply, json, &human)?,
                error: None,
            })
        }
        Job::Import(source) => {
            let progress = import::progress_bar(!json && std::io::stderr().is_terminal());
            let mut call = |request| {
                client
                    .call(request)
                    .map_err(|error| client_error(error, &socket))
            };
            let mut system = import::System::new(&mut call);
            let report = import::run(source, &mut system, &progress)?;
            let text = if json {
                format!("{}\n", report.to_json())
            } else {
                report.human()
            };
            Ok(Done {
                text: Zeroizing::new(text),
                error: report.exit_error(),
            })
        }
    }
}

/// The account name of a uid, when NSS knows it.
fn user_name(uid: u32) -> Option<String> {
    pam_totp_nss::name_of(uid)
}

/// Agent errors pass through; transport failures become `unavailable` naming the socket.
fn client_error(error: ClientError, socket: &Path) -> ApiError {
    let socket = socket.display();
    match error {
        ClientError::Api(error) => error,
        ClientError::Unavailable { .. } => ApiError::new(ErrorCode::Unavailable, error.to_string()),
        ClientError::TimedOut(after) => ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "agent at {socket} did not answer within {} s",
                after.as_secs()
            ),
        ),
        ClientError::Protocol(reason) => ApiError::new(
            ErrorCode::Unavailable,
            format!("agent at {socket} answered nonsense: {reason}"),
        ),
    }
}

fn write_stdout(text: &str) -> Result<(), ApiError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| ApiError::internal(format!("cannot write the output: {e}")))
}

fn fail(error: &ApiError, json: bool) -> ExitCode {
    if json {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(output::error_json(error).as_bytes());
        let _ = stdout.flush();
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "pam-totp: {}",
        output::error_message(error)
    );
    ExitCode::from(u8::try_from(error.code.exit_code()).unwrap_or(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_unavailable_and_name_the_socket() {
        let socket = Path::new("/run/x/agent.sock");
        for error in [
            ClientError::Unavailable {
                socket: socket.to_path_buf(),
                reason: "No such file or directory".into(),
            },
            ClientError::TimedOut(REQUEST_TIMEOUT),
            ClientError::Protocol("undecodable reply".into()),
        ] {
            let error = client_error(error, socket);
            assert_eq!(error.code, ErrorCode::Unavailable);
            assert_eq!(error.code.exit_code(), 8);
            assert!(
                error.message.contains("/run/x/agent.sock"),
                "{}",
                error.message
            );
        }
        let error = client_error(ClientError::Api(ApiError::code_rejected()), Path::new("/s"));
        assert_eq!(error.code.exit_code(), 9);
        assert_eq!(error.target.as_deref(), Some("code"));
    }
}
