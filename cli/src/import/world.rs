//! What an import needs from the rest of the system, behind a trait so it can be tested with
//! doubles: the agent, NSS (through `pam-totp-nss`) and the files, read as the calling user.

use super::files::{self, Owners};
use pam_totp_proto::text::sanitize;
use pam_totp_proto::{ApiError, ErrorCode, Reply, Request};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// How the import talks to the rest of the system (a real agent, NSS and files in `main`;
/// doubles in tests).
pub trait World {
    /// One request to the agent. Transport failures come back as `unavailable`.
    fn call(&mut self, request: Request) -> Result<Reply, ApiError>;
    /// Whether NSS knows each of `accounts` (one answer each, in order); many names are
    /// looked up in one pass.
    fn accounts_exist(&mut self, accounts: &[&str]) -> Vec<Result<bool, ApiError>>;
    /// The uid and home directory of an account, `None` when NSS does not know it.
    fn passwd_of(&mut self, account: &str) -> Result<Option<Passwd>, ApiError>;
    /// The real uid of the calling process.
    fn caller_uid(&mut self) -> u32;
    /// The file's bytes, read as the calling user.
    fn read(&mut self, path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, ApiError>;
    /// The bytes of a file that holds one account's secret, read as the calling user, once
    /// [`files::check_secret_file`] passed on the opened file (a symbolic link is not
    /// followed).
    fn read_secret_file(
        &mut self,
        path: &Path,
        limit: u64,
        owners: &Owners,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError>;
}

/// What NSS says of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub uid: u32,
    pub home: PathBuf,
}

/// The agent, NSS and the file system.
pub struct System<'a> {
    pub call: &'a mut dyn FnMut(Request) -> Result<Reply, ApiError>,
}

impl<'a> System<'a> {
    pub fn new(call: &'a mut dyn FnMut(Request) -> Result<Reply, ApiError>) -> Self {
        Self { call }
    }
}

impl World for System<'_> {
    fn call(&mut self, request: Request) -> Result<Reply, ApiError> {
        (self.call)(request)
    }

    fn accounts_exist(&mut self, accounts: &[&str]) -> Vec<Result<bool, ApiError>> {
        let uids = pam_totp_nss::lookup_uids(accounts);
        accounts
            .iter()
            .map(|account| match uids.failed.get(*account) {
                Some(error) => Err(ApiError::new(
                    ErrorCode::Unavailable,
                    format!("cannot look up account '{}': {error}", sanitize(account)),
                )
                .with_target("account")),
                None => Ok(uids.found.contains_key(*account)),
            })
            .collect()
    }

    fn passwd_of(&mut self, account: &str) -> Result<Option<Passwd>, ApiError> {
        match pam_totp_nss::account(account) {
            Ok(found) => Ok(found.map(|found| Passwd {
                uid: found.uid,
                home: found.home,
            })),
            Err(error) => Err(ApiError::internal(format!(
                "cannot look up account '{}': {error}",
                sanitize(account)
            ))),
        }
    }

    fn caller_uid(&mut self) -> u32 {
        nix::unistd::getuid().as_raw()
    }

    fn read(&mut self, path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        files::read_file(path, limit)
    }

    fn read_secret_file(
        &mut self,
        path: &Path,
        limit: u64,
        owners: &Owners,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        files::read_secret_file(path, limit, owners)
    }
}
