//! Rendering of replies and errors: compact JSON (`--json`) or terse human text. JSON carries
//! the agent's values unchanged (times in RFC 3339 UTC); human text shows times in local time,
//! aligns tables, and is coloured only when [`Human::colour`] allows it.
//!
//! [`render`] takes each command's reply out of [`Reply`] as its own type (the one place a
//! reply of the wrong kind is caught: [`reply`]) and hands it to that command's renderer:
//! [`profile`] (show, list, the one-line results), [`secrets`] (enroll, codes), [`log`],
//! [`status`]; [`table`] aligns columns and [`error`] renders errors.

mod error;
mod log;
mod profile;
mod reply;
mod secrets;
mod status;
mod table;

pub use error::{error_json, error_message, error_object};

use crate::commands::View;
use crate::timefmt::Zone;
use pam_totp_proto::{ApiError, Reply};
use reply::{expect, Removed};
use serde::Serialize;
use zeroize::Zeroizing;

/// How human output looks on this run.
pub struct Human<'a> {
    /// stdout is a terminal (enroll draws its QR code only there).
    pub terminal: bool,
    /// Colour allowed (see [`crate::style::colour_allowed`]).
    pub colour: bool,
    /// The zone times are shown in.
    pub zone: Zone,
    /// The account name of a uid, when NSS knows it.
    pub user_name: &'a dyn Fn(u32) -> Option<String>,
}

/// The whole stdout text for a reply (ends with a newline). Zeroized after use because
/// enroll and codes output carries secrets.
pub fn render(
    view: &View,
    reply: Reply,
    json: bool,
    human: &Human<'_>,
) -> Result<Zeroizing<String>, ApiError> {
    match view {
        View::Enroll { own } => secrets::enrolled(&expect(reply)?, *own, json, human.terminal),
        View::Codes => secrets::codes(&expect(reply)?, json),
        View::Show { fields } => profile::show(&expect(reply)?, fields.as_deref(), json, human),
        View::List { fields } => {
            profile::list(&expect::<Vec<_>>(reply)?, fields.as_deref(), json, human)
        }
        View::Log => log::render(&expect(reply)?, json, human),
        View::Status => status::render(&expect(reply)?, json),
        View::Metrics => status::metrics(&expect(reply)?, json),
        View::Remove => profile::removed(&expect::<Removed>(reply)?.0, json),
        View::Verify => profile::changed(&expect(reply)?, json, |account, profile| {
            if profile.enabled {
                format!("Code accepted; profile for {account} is active.")
            } else {
                format!("Code accepted; profile for {account} is verified but disabled.")
            }
        }),
        View::Disable => profile::changed(&expect(reply)?, json, |account, _| {
            format!("Profile for {account} disabled.")
        }),
        View::Enable => profile::changed(&expect(reply)?, json, |account, _| {
            format!("Profile for {account} enabled.")
        }),
        View::Unlock => profile::changed(&expect(reply)?, json, |account, _| {
            format!("Profile for {account} unlocked.")
        }),
        View::Set => profile::changed(&expect(reply)?, json, |account, _| {
            format!("Comment for {account} updated.")
        }),
    }
}

/// `value` as one line of compact JSON, in zeroizing memory (it may carry secrets).
fn json_line(value: &impl Serialize) -> Result<Zeroizing<String>, ApiError> {
    let text = Zeroizing::new(
        serde_json::to_string(value)
            .map_err(|e| ApiError::internal(format!("cannot encode the output: {e}")))?,
    );
    // `to_string` leaves no room for the newline: push into a copy with room, so the secret
    // is never left behind by a reallocation.
    let mut out = Zeroizing::new(String::with_capacity(text.len() + 1));
    out.push_str(&text);
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests;
