//! Which account a command acts on: the one named (checked), else the caller's own.

use pam_totp_proto::{validate, ApiError};

/// An explicit account, checked.
pub fn named(user: String) -> Result<String, ApiError> {
    validate::account(&user)?;
    Ok(user)
}

/// The given account, or the caller's own.
pub fn account(
    user: Option<String>,
    caller: impl FnOnce() -> Result<String, ApiError>,
) -> Result<String, ApiError> {
    match user {
        Some(user) => named(user),
        None => named(caller()?),
    }
}

/// The account of the calling process's real uid, through NSS.
pub fn caller_account() -> Result<String, ApiError> {
    let uid = nix::unistd::getuid().as_raw();
    match pam_totp_nss::account_of_uid(uid) {
        Ok(Some(account)) => Ok(account.name),
        Ok(None) => Err(ApiError::internal(format!(
            "cannot resolve the calling user: uid {uid} has no account name"
        ))),
        Err(error) => Err(ApiError::internal(format!(
            "cannot resolve the calling user (uid {uid}): {error}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_user_resolves() {
        // The test runner's own uid normally has a passwd entry.
        if let Ok(name) = caller_account() {
            assert!(validate::account(&name).is_ok());
        }
    }
}
