//! The real [`PamIo`]: libpam through `pam-bindings`, plus the two libpam calls the bindings
//! lack (`pam_syslog`, and `pam_set_item` for PAM_AUTHTOK, whose binding type cannot be built).

use crate::core::{ItemKind, LogLevel, PamCode, PamIo};
use libc::{c_char, c_int, c_void};
use pam::constants::{PamResultCode, PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF};
use pam::conv::Conv;
use pam::items::{AuthTok, Item, ItemType, RHost, RUser, Service, Tty};
use pam::module::PamHandle;
use std::ffi::{CStr, CString};
use std::ops::Deref;
use zeroize::Zeroizing;

#[link(name = "pam")]
unsafe extern "C" {
    /// `void pam_syslog(const pam_handle_t *pamh, int priority, const char *fmt, ...)`:
    /// logs to LOG_AUTHPRIV with the "pam_totp(service:auth)" prefix.
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
}

pub struct HandleIo<'a> {
    pamh: &'a mut PamHandle,
}

impl<'a> HandleIo<'a> {
    pub fn new(pamh: &'a mut PamHandle) -> Self {
        Self { pamh }
    }

    fn conversation(
        &self,
        style: c_int,
        text: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, PamCode> {
        let conv = match self.pamh.get_item::<Conv>() {
            Ok(Some(conv)) => conv,
            Ok(None) => return Err(PamCode::ConvErr),
            Err(error) => return Err(from_pam(&error)),
        };
        match conv.send(style, text) {
            // Copied into a buffer that is wiped on drop; the binding wipes its own copy too.
            Ok(Some(answer)) => Ok(Some(Zeroizing::new(answer.as_bytes().to_vec()))),
            Ok(None) => Ok(None),
            Err(PamResultCode::PAM_BUF_ERR) => Err(PamCode::BufErr),
            Err(_) => Err(PamCode::ConvErr),
        }
    }
}

/// Reads a string item; a non-UTF-8 value (a strange tty or host name) is kept lossily, as it
/// is only recorded.
fn string_item<'a, T>(pamh: &'a PamHandle) -> Option<String>
where
    T: Item<'a> + Deref<Target = &'a CStr>,
{
    match pamh.get_item::<T>() {
        Ok(Some(item)) => Some(item.to_string_lossy().into_owned()),
        _ => None,
    }
}

impl PamIo for HandleIo<'_> {
    fn user(&mut self) -> Result<String, PamCode> {
        self.pamh.get_user(None).map_err(|error| from_pam(&error))
    }

    /// getpwnam_r through `pam-totp-nss`: thread-safe, no enumeration, no thread.
    fn lookup_account(&self, name: &str) -> Option<(String, u32)> {
        let account = pam_totp_nss::account(name).ok()??;
        Some((account.name, account.uid))
    }

    fn item(&self, which: ItemKind) -> Option<String> {
        match which {
            ItemKind::Service => string_item::<Service>(self.pamh),
            ItemKind::RHost => string_item::<RHost>(self.pamh),
            ItemKind::Tty => string_item::<Tty>(self.pamh),
            ItemKind::RUser => string_item::<RUser>(self.pamh),
        }
    }

    fn authtok(&self) -> Option<Zeroizing<Vec<u8>>> {
        match self.pamh.get_item::<AuthTok>() {
            Ok(Some(token)) => Some(Zeroizing::new(token.as_bytes().to_vec())),
            _ => None,
        }
    }

    fn set_authtok(&mut self, value: &[u8]) -> Result<(), PamCode> {
        if value.contains(&0) {
            return Err(PamCode::BufErr);
        }
        let mut token = Zeroizing::new(Vec::with_capacity(value.len() + 1));
        token.extend_from_slice(value);
        token.push(0);
        // SAFETY: `self.pamh` is the live handle libpam passed to this hook. `token` is
        // NUL-terminated with no interior NUL and outlives the call; libpam copies string items
        // (PAM_AUTHTOK is strdup'ed), so no pointer into `token` is kept after it is wiped.
        let rc = unsafe {
            pam_set_item(
                std::ptr::from_mut(self.pamh),
                ItemType::AuthTok as c_int,
                token.as_ptr().cast::<c_void>(),
            )
        };
        match PamResultCode::try_from(rc) {
            Ok(PamResultCode::PAM_SUCCESS) => Ok(()),
            Ok(error) => Err(from_pam(&error)),
            Err(_) => Err(PamCode::SystemErr),
        }
    }

    fn prompt_hidden(&mut self, text: &str) -> Result<Option<Zeroizing<Vec<u8>>>, PamCode> {
        self.conversation(PAM_PROMPT_ECHO_OFF, text)
    }

    fn show_error(&mut self, text: &str) {
        // Best effort: the login result is already decided, and an application without a
        // conversation for messages still gets the right PAM result.
        let _ = self.conversation(PAM_ERROR_MSG, text);
    }

    fn log(&self, level: LogLevel, text: &str) {
        // core escapes control characters, NUL included; this only guards the conversion.
        let Ok(line) = CString::new(text.replace('\0', "\\0")) else {
            return;
        };
        // SAFETY: `self.pamh` is the live handle libpam passed to this hook. The format is the
        // constant "%s" and its one argument is a NUL-terminated string that outlives the call,
        // so no user text is ever interpreted as a format.
        unsafe {
            pam_syslog(
                std::ptr::from_ref(&*self.pamh),
                priority(level),
                c"%s".as_ptr(),
                line.as_ptr(),
            );
        }
    }
}

fn priority(level: LogLevel) -> c_int {
    match level {
        LogLevel::Err => libc::LOG_ERR,
        LogLevel::Warning => libc::LOG_WARNING,
        LogLevel::Notice => libc::LOG_NOTICE,
        LogLevel::Info => libc::LOG_INFO,
        LogLevel::Debug => libc::LOG_DEBUG,
    }
}

/// libpam's number for a result.
pub fn to_pam(code: PamCode) -> PamResultCode {
    match code {
        PamCode::Success => PamResultCode::PAM_SUCCESS,
        PamCode::AuthErr => PamResultCode::PAM_AUTH_ERR,
        PamCode::Ignore => PamResultCode::PAM_IGNORE,
        PamCode::MaxTries => PamResultCode::PAM_MAXTRIES,
        PamCode::AuthInfoUnavail => PamResultCode::PAM_AUTHINFO_UNAVAIL,
        PamCode::ServiceErr => PamResultCode::PAM_SERVICE_ERR,
        PamCode::SystemErr => PamResultCode::PAM_SYSTEM_ERR,
        PamCode::BufErr => PamResultCode::PAM_BUF_ERR,
        PamCode::ConvErr => PamResultCode::PAM_CONV_ERR,
        PamCode::UserUnknown => PamResultCode::PAM_USER_UNKNOWN,
        PamCode::Abort => PamResultCode::PAM_ABORT,
    }
}

/// A libpam error as this module reports it; anything unexpected is a system error. Only
/// error paths call this, so even a "success" here must not become PAM_SUCCESS.
fn from_pam(code: &PamResultCode) -> PamCode {
    match code {
        PamResultCode::PAM_AUTH_ERR => PamCode::AuthErr,
        PamResultCode::PAM_USER_UNKNOWN => PamCode::UserUnknown,
        PamResultCode::PAM_SERVICE_ERR => PamCode::ServiceErr,
        PamResultCode::PAM_BUF_ERR => PamCode::BufErr,
        PamResultCode::PAM_CONV_ERR | PamResultCode::PAM_CONV_AGAIN => PamCode::ConvErr,
        PamResultCode::PAM_ABORT => PamCode::Abort,
        _ => PamCode::SystemErr,
    }
}

/// Sends a panic's place (file and line, never its message, which could quote a value) to
/// syslog (LOG_AUTHPRIV, where the module's other lines go) instead of the host's stderr: a
/// panic inside the module is a bug whose only trace an administrator would otherwise not
/// see, and the host's stderr may be the user's terminal (su, sudo). The hook belongs to this
/// module's own copy of Rust's runtime, so it touches no other Rust code in the host.
pub fn report_panics_to_syslog() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let place = info
                .location()
                .map_or_else(String::new, |at| format!(" at {}:{}", at.file(), at.line()));
            let Ok(line) = CString::new(format!(
                "pam_totp: internal error{place}; the login is refused (PAM_ABORT)"
            )) else {
                return;
            };
            // SAFETY: the format is the constant "%s" and its one argument a NUL-terminated
            // string that outlives the call.
            unsafe {
                libc::syslog(
                    libc::LOG_AUTHPRIV | libc::LOG_ERR,
                    c"%s".as_ptr(),
                    line.as_ptr(),
                );
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip_through_libpam_numbers() {
        for code in [
            PamCode::AuthErr,
            PamCode::UserUnknown,
            PamCode::ServiceErr,
            PamCode::BufErr,
            PamCode::ConvErr,
            PamCode::Abort,
            PamCode::SystemErr,
        ] {
            assert_eq!(from_pam(&to_pam(code)), code);
        }
        assert_eq!(from_pam(&PamResultCode::PAM_SUCCESS), PamCode::SystemErr);
        assert_eq!(to_pam(PamCode::Success) as i32, 0);
        assert_eq!(to_pam(PamCode::MaxTries) as i32, 11);
        assert_eq!(to_pam(PamCode::AuthInfoUnavail) as i32, 9);
        assert_eq!(to_pam(PamCode::Ignore) as i32, 25);
        assert_eq!(from_pam(&PamResultCode::PAM_CONV_AGAIN), PamCode::ConvErr);
        assert_eq!(
            from_pam(&PamResultCode::PAM_PERM_DENIED),
            PamCode::SystemErr
        );
    }
}
