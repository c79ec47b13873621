//! `pam_totp.so`: asks the pam-totp agent to check a TOTP code at login.
//!
//! This file is only the libpam entry points. Option parsing lives in [`options`], the login
//! flow in [`core`] (tested with a scripted double), the libpam calls in [`handle`], the
//! socket path check in [`trust`].

pub mod core;
pub mod handle;
pub mod options;
pub mod trust;

use crate::core::{Flags, LogLevel, PamIo};
use crate::handle::HandleIo;
use crate::options::Options;
use crate::trust::TrustedClient;
use pam::constants::{PamFlag, PamResultCode, PAM_SILENT};
use pam::module::{PamHandle, PamHooks};
use pam::pam_hooks;
use pam_totp_proto::Client;
use std::ffi::CStr;

/// The module; `pam_hooks!` exports its hooks as `pam_sm_*` (inside `catch_unwind`).
pub struct PamTotp;

pam_hooks!(PamTotp);

impl PamHooks for PamTotp {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        handle::report_panics_to_syslog();
        let mut io = HandleIo::new(pamh);
        let options = match Options::from_cstrs(&args) {
            Ok(options) => options,
            Err(error) => {
                io.log(LogLevel::Err, &format!("bad module configuration: {error}"));
                return PamResultCode::PAM_SERVICE_ERR;
            }
        };
        // The client's deadline is per call, so the timeout bounds each agent exchange.
        let client = TrustedClient::new(Client::new(&options.socket, options.timeout));
        let flags = Flags {
            silent: flags & PAM_SILENT != 0,
        };
        handle::to_pam(core::authenticate(&mut io, &client, &options, flags))
    }

    /// Nothing to establish: the second factor grants no credentials of its own.
    fn sm_setcred(_pamh: &mut PamHandle, _args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        PamResultCode::PAM_SUCCESS
    }
}
