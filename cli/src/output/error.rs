//! Errors as the contract shows them: one harmless line on stderr, and with `--json` the
//! error object on stdout.

use pam_totp_proto::text::sanitize;
use pam_totp_proto::ApiError;
use serde_json::Value;

#[derive(serde::Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    target: Option<&'a str>,
}

/// The message of an error as one harmless line.
pub fn error_message(error: &ApiError) -> String {
    let message = sanitize(error.message.trim());
    if message.is_empty() {
        error.code.as_str().to_owned()
    } else {
        message
    }
}

/// The contract's error object `{"code","message","target"}` as a JSON value.
pub fn error_object(error: &ApiError) -> Value {
    serde_json::json!({
        "code": error.code.as_str(),
        "message": error_message(error),
        "target": error.target,
    })
}

/// `{"error":{"code":..,"message":..,"target":..}}` and a newline.
pub fn error_json(error: &ApiError) -> String {
    let message = error_message(error);
    let envelope = ErrorEnvelope {
        error: ErrorBody {
            code: error.code.as_str(),
            message: &message,
            target: error.target.as_deref(),
        },
    };
    match serde_json::to_string(&envelope) {
        Ok(text) => text + "\n",
        Err(_) => format!(
            "{{\"error\":{{\"code\":\"{}\",\"message\":\"\",\"target\":null}}}}\n",
            error.code.as_str()
        ),
    }
}
