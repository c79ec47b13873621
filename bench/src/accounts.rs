//! The bench accounts in NSS. pam_totp.so resolves the user with getpwnam (every name of an
//! enrolled uid is held to its profile), so the PAM layer's accounts must exist: they are added
//! in one `newusers` call (uid 100000 + index, no home, no login shell, group nogroup) and
//! removed when the guard is dropped.

use crate::seed;
use crate::stats::Latency;
use std::ffi::CString;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The accounts `0..count`, removed on drop.
pub struct BenchAccounts {
    count: usize,
}

impl BenchAccounts {
    pub fn create(count: usize) -> Result<Self, String> {
        let mut lines = String::new();
        for index in 0..count {
            lines.push_str(&format!(
                "{}:*:{}:65534:pam-totp bench:/:/usr/sbin/nologin\n",
                seed::account(index),
                seed::uid(index)
            ));
        }
        let mut child = Command::new("newusers")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("newusers: {e} (package passwd)"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(lines.as_bytes())
                .map_err(|e| format!("newusers: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("newusers: {e}"))?;
        let guard = Self { count };
        if !out.status.success() {
            return Err(format!(
                "newusers failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(guard)
    }
}

impl BenchAccounts {
    /// Times one `getpwnam_r` of every account, in index order: the NSS lookup that
    /// pam_totp.so (issue 10: it resolves the user where the login happens) and
    /// pam_google_authenticator (to find the user's secret file) each make per login. With
    /// the `files` source glibc reads /etc/passwd from its start at every call, so the cost
    /// grows with the account's line number.
    pub fn lookup_latency(&self) -> Result<Latency, String> {
        let mut samples = Vec::with_capacity(self.count);
        let mut buffer = vec![0_u8; 16 * 1024];
        for index in 0..self.count {
            let name = CString::new(seed::account(index)).map_err(|e| e.to_string())?;
            // SAFETY: all-zero bytes are a valid `passwd` (null pointers, zero ids).
            let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            let started = Instant::now();
            // SAFETY: `name` is NUL-terminated; `entry`, `buffer` (with its true length) and
            // `found` outlive the call, which writes only into them.
            let rc = unsafe {
                libc::getpwnam_r(
                    name.as_ptr(),
                    &mut entry,
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    &mut found,
                )
            };
            let elapsed = started.elapsed();
            if rc != 0 || found.is_null() {
                return Err(format!(
                    "getpwnam_r({}) found nothing (rc {rc})",
                    seed::account(index)
                ));
            }
            samples.push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        }
        Ok(Latency::from_nanos(samples))
    }
}

impl Drop for BenchAccounts {
    fn drop(&mut self) {
        for index in 0..self.count {
            let _ = Command::new("userdel")
                .arg(seed::account(index))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
