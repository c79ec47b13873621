//! The listening socket: from systemd (LISTEN_FDS) when socket-activated, else bound here.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot use the socket passed by systemd: {0}")]
    Activation(io::Error),
    #[error("another agent is already listening on {0}")]
    InUse(String),
    #[error("{0} exists and is not a socket")]
    NotASocket(String),
    #[error("cannot listen on {path}: {source}")]
    Bind { path: String, source: io::Error },
}

/// The listener, and the path to remove on exit when this process created it.
pub fn open(path: &Path) -> Result<(UnixListener, Option<PathBuf>), ListenError> {
    let mut passed = listenfd::ListenFd::from_env();
    if let Some(listener) = passed
        .take_unix_listener(0)
        .map_err(ListenError::Activation)?
    {
        return Ok((listener, None));
    }
    let shown = path.display().to_string();
    let bind_error = |source| ListenError::Bind {
        path: shown.clone(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.exists()) {
        // Every user must reach the socket, so its directory is 0755 whatever the umask.
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .and_then(|()| fs::set_permissions(parent, Permissions::from_mode(0o755)))
            .map_err(bind_error)?;
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ListenError::NotASocket(shown));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(ListenError::InUse(shown));
        }
        // A stale socket left by a crash.
        fs::remove_file(path).map_err(bind_error)?;
    }
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    fs::set_permissions(path, Permissions::from_mode(0o666)).map_err(bind_error)?;
    Ok((listener, Some(path.to_owned())))
}
