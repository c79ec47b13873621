//! One builder per command: its arguments validated, its request, and how its reply is shown.

use super::account::{account, named};
use super::code::{code_arg, CodeArg};
use super::fields::parse_fields;
use super::{Plan, View};
use crate::args::EnrollArgs;
use crate::timefmt::{self, Zone};
use pam_totp_proto::validate::{self, MAX_LOG_LIMIT};
use pam_totp_proto::{ApiError, EnrollRequest, ProfileKind, Request, SecretString};

pub fn enroll(
    args: EnrollArgs,
    caller: impl FnOnce() -> Result<String, ApiError>,
    read_code: impl FnOnce() -> Result<SecretString, ApiError>,
) -> Result<Plan, ApiError> {
    validate::digits(args.digits)?;
    let kind = ProfileKind::from(args.kind);
    if kind == ProfileKind::Hotp && args.period.is_some() {
        return Err(ApiError::invalid(
            "period",
            "--period is only for TOTP profiles: an HOTP token's codes move on with each \
             press, not with time",
        ));
    }
    let period = args.period.unwrap_or(validate::DEFAULT_PERIOD);
    validate::period(period)?;
    validate::counter(kind, args.counter)?;
    if let Some(issuer) = &args.issuer {
        validate::issuer(issuer)?;
    }
    if let Some(comment) = &args.comment {
        validate::comment(comment)?;
    }
    if args.code.is_some() && !args.replace {
        return Err(ApiError::invalid(
            "replace",
            "--code is only used with --replace",
        ));
    }
    let code = args.code.map(code_arg).transpose()?;
    let own = args.user.is_none();
    let account = account(args.user, caller)?;
    Ok(Plan {
        request: Request::Enroll(EnrollRequest {
            account,
            kind,
            counter: args.counter,
            algorithm: args.algorithm.into(),
            digits: args.digits,
            period,
            issuer: args.issuer,
            comment: args.comment,
            replace: args.replace,
            code: code.map(|code| code.resolve(read_code)).transpose()?,
        }),
        view: View::Enroll { own },
    })
}

pub fn verify(
    user: Option<String>,
    code: Option<SecretString>,
    caller: impl FnOnce() -> Result<String, ApiError>,
    read_code: impl FnOnce() -> Result<SecretString, ApiError>,
) -> Result<Plan, ApiError> {
    // Without CODE the code is read, as with `-`.
    let code = code.map(code_arg).transpose()?.unwrap_or(CodeArg::Read);
    let account = account(user, caller)?;
    Ok(Plan {
        request: Request::Verify {
            account,
            code: code.resolve(read_code)?,
        },
        view: View::Verify,
    })
}

pub fn show(
    user: Option<String>,
    fields: Option<Vec<String>>,
    caller: impl FnOnce() -> Result<String, ApiError>,
) -> Result<Plan, ApiError> {
    let fields = fields.as_deref().map(parse_fields).transpose()?;
    Ok(Plan {
        request: Request::Show {
            account: account(user, caller)?,
        },
        view: View::Show { fields },
    })
}

pub fn list(fields: Option<Vec<String>>) -> Result<Plan, ApiError> {
    Ok(Plan {
        request: Request::List {
            after: None,
            limit: None,
        },
        view: View::List {
            fields: fields.as_deref().map(parse_fields).transpose()?,
        },
    })
}

pub fn disable(user: String) -> Result<Plan, ApiError> {
    Ok(Plan {
        request: Request::Disable {
            account: named(user)?,
        },
        view: View::Disable,
    })
}

pub fn enable(user: String) -> Result<Plan, ApiError> {
    Ok(Plan {
        request: Request::Enable {
            account: named(user)?,
        },
        view: View::Enable,
    })
}

pub fn unlock(user: String) -> Result<Plan, ApiError> {
    Ok(Plan {
        request: Request::Unlock {
            account: named(user)?,
        },
        view: View::Unlock,
    })
}

pub fn remove(
    user: Option<String>,
    code: Option<SecretString>,
    caller: impl FnOnce() -> Result<String, ApiError>,
    read_code: impl FnOnce() -> Result<SecretString, ApiError>,
) -> Result<Plan, ApiError> {
    let code = code.map(code_arg).transpose()?;
    let account = account(user, caller)?;
    Ok(Plan {
        request: Request::Remove {
            account,
            code: code.map(|code| code.resolve(read_code)).transpose()?,
        },
        view: View::Remove,
    })
}

pub fn codes(
    user: Option<String>,
    regenerate: bool,
    code: Option<SecretString>,
    caller: impl FnOnce() -> Result<String, ApiError>,
    read_code: impl FnOnce() -> Result<SecretString, ApiError>,
) -> Result<Plan, ApiError> {
    if !regenerate {
        return Err(ApiError::invalid(
            "regenerate",
            "codes needs --regenerate: emergency codes are shown only when created",
        ));
    }
    let code = code.map(code_arg).transpose()?;
    let account = account(user, caller)?;
    Ok(Plan {
        request: Request::RegenerateCodes {
            account,
            code: code.map(|code| code.resolve(read_code)).transpose()?,
        },
        view: View::Codes,
    })
}

pub fn set(
    user: Option<String>,
    comment: String,
    caller: impl FnOnce() -> Result<String, ApiError>,
) -> Result<Plan, ApiError> {
    validate::comment(&comment)?;
    Ok(Plan {
        request: Request::SetComment {
            account: account(user, caller)?,
            comment,
        },
        view: View::Set,
    })
}

pub fn log(user: Option<String>, since: Option<String>, limit: u32) -> Result<Plan, ApiError> {
    if !(1..=MAX_LOG_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("--limit must be 1 to {MAX_LOG_LIMIT}"),
        ));
    }
    let since = since
        .map(|text| timefmt::parse_since(&text, timefmt::unix_now(), Zone::Local))
        .transpose()?;
    // Without USER the agent decides: everyone's for administrators, else the caller's own.
    let account = user.map(named).transpose()?;
    Ok(Plan {
        request: Request::Log {
            account,
            since,
            limit,
            before: None,
        },
        view: View::Log,
    })
}
