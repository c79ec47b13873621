//! A CODE argument: given on the command line (checked at once), or `-` (read from standard
//! input, or typed at a prompt, once everything else passed; then checked the same way).

use crate::args::CODE_FROM_STDIN;
use pam_totp_proto::{validate, ApiError, SecretString};

fn check_code(code: &SecretString) -> Result<(), ApiError> {
    validate::code(code.expose())
}

/// A CODE argument: checked when it was given, read later when it is `-`.
pub enum CodeArg {
    Given(SecretString),
    Read,
}

pub fn code_arg(code: SecretString) -> Result<CodeArg, ApiError> {
    if code.expose() == CODE_FROM_STDIN {
        return Ok(CodeArg::Read);
    }
    check_code(&code)?;
    Ok(CodeArg::Given(code))
}

impl CodeArg {
    /// The code, read (and then checked) when it is not on the command line.
    pub fn resolve(
        self,
        read_code: impl FnOnce() -> Result<SecretString, ApiError>,
    ) -> Result<SecretString, ApiError> {
        match self {
            CodeArg::Given(code) => Ok(code),
            CodeArg::Read => {
                let code = read_code()?;
                check_code(&code)?;
                Ok(code)
            }
        }
    }
}
