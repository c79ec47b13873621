//! The bench accounts in NSS. pam_totp.so resolves the user with getpwnam (every name of an
//! enrolled uid is held to its profile), so the PAM layer's accounts must exist: they are added
//! in one `newusers` call (uid 100000 + index, no home, no login shell, group nogroup) and
//! removed when the guard is dropped.

use crate::seed;
use std::io::Write;
use std::process::{Command, Stdio};

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
