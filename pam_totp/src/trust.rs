//! The module talks only to a socket that no ordinary user could have planted: every directory
//! on its path must be root's, and none writable by others. Otherwise a local user could put a
//! fake agent there that says yes to every code.
//!
//! The directory check looks at the path before the connect, which then resolves the path
//! again: a symbolic link on the way (or one swapped in between) could lead the connect
//! somewhere else. So the connection itself is checked too: the process listening on it
//! (`SO_PEERCRED`) must be root, before a byte of the request (which may carry a code) is sent.

use crate::core::Agent;
use pam_totp_proto::{Client, ClientError, Reply, Request};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// Why a directory cannot be trusted, from its owner and mode. `parent` is the socket's own
/// directory: there even a sticky bit is not enough, since anyone could create the socket's
/// name while the agent is down.
pub fn judge(dir: &Path, owner: u32, mode: u32, parent: bool) -> Result<(), String> {
    if owner != 0 {
        return Err(format!(
            "{} is owned by uid {owner}, not root",
            dir.display()
        ));
    }
    let writable = mode & GROUP_OR_OTHER_WRITE != 0;
    if writable && (parent || mode & STICKY == 0) {
        return Err(format!(
            "{} (mode {:04o}) is writable by users other than root",
            dir.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// Checks the socket's directory and every directory above it (symbolic links resolved).
pub fn check_socket_path(socket: &Path) -> Result<(), String> {
    let parent = socket
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let parent = std::fs::canonicalize(parent)
        .map_err(|e| format!("cannot resolve {}: {e}", parent.display()))?;
    for (index, dir) in parent.ancestors().enumerate() {
        let meta =
            std::fs::metadata(dir).map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
        judge(dir, meta.uid(), meta.mode(), index == 0)?;
    }
    Ok(())
}

/// The agent client, refusing (as "unavailable") to talk through an untrusted path or to a
/// socket whose listening process is not root.
pub struct TrustedClient {
    client: Client,
    socket: PathBuf,
}

impl TrustedClient {
    /// Wraps `client`, which from now on talks only to a peer running as root.
    pub fn new(client: Client) -> Self {
        let socket = client.socket().to_owned();
        Self {
            client: client.require_peer_uid(0),
            socket,
        }
    }
}

impl Agent for TrustedClient {
    fn call(&self, request: Request) -> Result<Reply, ClientError> {
        check_socket_path(&self.socket).map_err(|reason| ClientError::Unavailable {
            socket: self.socket.clone(),
            reason: format!("refusing an untrusted socket path: {reason}"),
        })?;
        self.client.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_owned_unwritable_directories_are_trusted() {
        let dir = Path::new("/run/pam-totp");
        assert!(judge(dir, 0, 0o40755, true).is_ok());
        assert!(judge(dir, 0, 0o40700, true).is_ok());
        let refused = [
            (1000, 0o40755, true),
            (0, 0o40775, true),
            (0, 0o40757, true),
            (0, 0o41777, true), // sticky does not save the socket's own directory
            (0, 0o40777, false),
        ];
        for (owner, mode, parent) in refused {
            assert!(
                judge(dir, owner, mode, parent).is_err(),
                "{owner} {mode:o} {parent}"
            );
        }
        // /tmp above the socket's directory: sticky, so others cannot rename what is root's.
        assert!(judge(Path::new("/tmp"), 0, 0o41777, false).is_ok());
    }

    #[test]
    fn the_whole_path_is_checked() {
        // The test's own temp dir is as trusted as its owner: refused unless it is root's.
        let dir = std::env::temp_dir().join(format!("pam-totp-trust-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let verdict = check_socket_path(&dir.join("agent.sock"));
        let is_root = std::fs::metadata(&dir)
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let _ = std::fs::remove_dir(&dir);
        assert_eq!(verdict.is_ok(), is_root, "{verdict:?}");
        assert!(check_socket_path(Path::new("/nonexistent/dir/agent.sock")).is_err());
    }

    #[test]
    fn the_trusted_client_talks_only_to_a_root_peer() {
        let client = Client::new(
            "/run/pam-totp/agent.sock",
            std::time::Duration::from_secs(1),
        );
        assert_eq!(client.required_peer_uid(), None);
        let trusted = TrustedClient::new(client);
        assert_eq!(trusted.client.required_peer_uid(), Some(0));
        assert_eq!(trusted.socket, Path::new("/run/pam-totp/agent.sock"));
    }
}
