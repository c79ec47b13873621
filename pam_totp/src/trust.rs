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
///
/// The usual path (`/run/pam-totp/agent.sock`) names no symbolic link, no `.` and no `..`:
/// then one lstat(2) per directory shows both that the path is already the resolved one and
/// what to judge, with no realpath(3) (a readlink(2) per component) before the stats. Any
/// other path is resolved first, and the resolved directories are checked.
pub fn check_socket_path(socket: &Path) -> Result<(), String> {
    let parent = socket
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Some(stats) = plain_directories(parent) {
        for (index, (dir, owner, mode)) in stats.iter().enumerate() {
            judge(dir, *owner, *mode, index == 0)?;
        }
        return Ok(());
    }
    let parent = std::fs::canonicalize(parent)
        .map_err(|e| format!("cannot resolve {}: {e}", parent.display()))?;
    for (index, dir) in parent.ancestors().enumerate() {
        let meta =
            std::fs::metadata(dir).map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
        judge(dir, meta.uid(), meta.mode(), index == 0)?;
    }
    Ok(())
}

/// Owner and mode of `dir` and of each directory above it (nearest first), when `dir` is an
/// absolute path without `.`, `..` or repeated slashes and each of them is a directory, not a
/// symbolic link: then `dir` is its own resolved path. `None` otherwise, or on any error (the
/// caller then resolves the path and reports what fails).
fn plain_directories(dir: &Path) -> Option<Vec<(&Path, u32, u32)>> {
    use std::path::Component;
    let mut components = dir.components();
    if components.next() != Some(Component::RootDir)
        || !components.all(|c| matches!(c, Component::Normal(_)))
        // components() hides "a//b", "a/./b" and a trailing "/": only a path it would print
        // back unchanged is taken as is.
        || dir.as_os_str().len() != dir.components().collect::<PathBuf>().as_os_str().len()
    {
        return None;
    }
    dir.ancestors()
        .map(|ancestor| {
            let meta = std::fs::symlink_metadata(ancestor).ok()?;
            meta.is_dir().then(|| (ancestor, meta.uid(), meta.mode()))
        })
        .collect()
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
    fn a_path_with_links_or_dots_is_resolved_before_it_is_judged() {
        // Plain paths are judged from one lstat per directory, nearest first.
        let stats = plain_directories(Path::new("/usr/share"));
        let dirs: Option<Vec<&Path>> = stats.map(|s| s.iter().map(|(d, _, _)| *d).collect());
        assert_eq!(
            dirs,
            Some(vec![
                Path::new("/usr/share"),
                Path::new("/usr"),
                Path::new("/")
            ])
        );
        for odd in [
            "/usr/./share",
            "/usr//share",
            "/usr/share/",
            "/usr/share/..",
            "usr",
        ] {
            assert!(plain_directories(Path::new(odd)).is_none(), "{odd}");
        }
        // A symbolic link anywhere on the path: resolved first.
        let base = std::env::temp_dir().join(format!("pam-totp-trust-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let real = base.join("real");
        let link = base.join("link");
        assert!(std::fs::create_dir_all(real.join("sub")).is_ok());
        assert!(std::os::unix::fs::symlink(&real, &link).is_ok());
        assert!(plain_directories(&link.join("sub")).is_none());
        assert!(plain_directories(&link).is_none());
        assert!(plain_directories(&real.join("sub")).is_some());
        // Either way the verdict is the one for the resolved directories.
        let through_link = check_socket_path(&link.join("sub/agent.sock"));
        let direct = check_socket_path(&real.join("sub/agent.sock"));
        let _ = std::fs::remove_dir_all(&base);
        assert_eq!(
            through_link.is_ok(),
            direct.is_ok(),
            "{through_link:?} {direct:?}"
        );
        // A missing directory is not plain; the resolution then names the failure.
        assert!(plain_directories(Path::new("/nonexistent/dir")).is_none());
    }

    #[test]
    fn a_symlink_to_an_untrusted_directory_is_refused() {
        // /tmp is sticky and root's (trusted above a socket's directory), but not as the
        // socket's own directory: reached through a link, it is judged as what it is.
        let link = std::env::temp_dir().join(format!("pam-totp-trust-tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&link);
        assert!(std::os::unix::fs::symlink("/tmp", &link).is_ok());
        let verdict = check_socket_path(&link.join("agent.sock"));
        let _ = std::fs::remove_file(&link);
        let tmp_sticky = std::fs::metadata("/tmp").is_ok_and(|m| m.mode() & 0o1022 == 0o1022);
        if tmp_sticky {
            assert!(
                verdict.as_ref().is_err_and(|e| e.starts_with("/tmp ")),
                "{verdict:?}"
            );
        }
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
