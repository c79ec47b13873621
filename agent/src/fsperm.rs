//! The database must be private to the agent: created 0600 in a 0700 directory, and refused
//! when its owner or mode would let another user read secrets or forge state.

use nix::unistd::geteuid;
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PermissionError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot inspect {path}: {source}")]
    Inspect {
        path: String,
        source: std::io::Error,
    },
    #[error("refusing to use {what} {path}: {reason}")]
    Unsafe {
        what: &'static str,
        path: String,
        reason: String,
    },
}

fn check_private(path: &Path, what: &'static str, want_dir: bool) -> Result<(), PermissionError> {
    let meta = std::fs::symlink_metadata(path).map_err(|source| PermissionError::Inspect {
        path: path.display().to_string(),
        source,
    })?;
    check_metadata(&meta, path, what, want_dir)
}

/// The rules of [`check_private`] on what `lstat` or `fstat` said.
fn check_metadata(
    meta: &std::fs::Metadata,
    path: &Path,
    what: &'static str,
    want_dir: bool,
) -> Result<(), PermissionError> {
    let shown = path.display().to_string();
    let unsafe_because = |reason: String| PermissionError::Unsafe {
        what,
        path: shown.clone(),
        reason,
    };
    if want_dir && !meta.is_dir() {
        return Err(unsafe_because("it is not a directory".into()));
    }
    if !want_dir && !meta.is_file() {
        return Err(unsafe_because(
            "it is not a regular file (symbolic links are refused)".into(),
        ));
    }
    let euid = geteuid().as_raw();
    if meta.uid() != euid {
        return Err(unsafe_because(format!(
            "it is owned by uid {}, not by the agent (uid {euid})",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        let fix = if want_dir { "0700" } else { "0600" };
        return Err(unsafe_because(format!(
            "its mode {mode:04o} lets other users read or write it (chmod {fix} {shown})"
        )));
    }
    Ok(())
}

/// Opens a file holding a secret (the fleet key, the fleet store's password): a regular file
/// (no symbolic link) of the agent's own, which group and others cannot read or write
/// (0600, or 0400 as systemd's `LoadCredential=` makes it). The checks are made on the
/// opened file, so it cannot be swapped in between; O_NONBLOCK keeps a FIFO put in its place
/// from hanging the agent (it is refused as no regular file).
pub fn open_secret_file(path: &Path, what: &'static str) -> Result<File, PermissionError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::ELOOP) {
                PermissionError::Unsafe {
                    what,
                    path: path.display().to_string(),
                    reason: "it is a symbolic link, not a regular file".into(),
                }
            } else {
                PermissionError::Inspect {
                    path: path.display().to_string(),
                    source,
                }
            }
        })?;
    let meta = file.metadata().map_err(|source| PermissionError::Inspect {
        path: path.display().to_string(),
        source,
    })?;
    check_metadata(&meta, path, what, false)?;
    Ok(file)
}

/// Creates the database directory (0700) and file (0600) when missing, and checks both.
pub fn prepare_database(db: &Path) -> Result<(), PermissionError> {
    let dir = match db.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| PermissionError::Create {
                path: dir.display().to_string(),
                source,
            })?;
    }
    check_private(dir, "database directory", true)?;
    if !db.exists() {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(db)
            .map_err(|source| PermissionError::Create {
                path: db.display().to_string(),
                source,
            })?;
    }
    check_private(db, "database", false)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = db.as_os_str().to_owned();
        side.push(suffix);
        let side = Path::new(&side);
        if side.exists() {
            check_private(side, "database journal", false)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_files_and_refuses_shared_ones() {
        let root = tempfile::tempdir().unwrap();
        let db = root.path().join("state/profiles.sqlite3");
        prepare_database(&db).unwrap();
        let dir_mode = std::fs::metadata(db.parent().unwrap()).unwrap().mode() & 0o777;
        let file_mode = std::fs::metadata(&db).unwrap().mode() & 0o777;
        assert_eq!((dir_mode, file_mode), (0o700, 0o600));

        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = prepare_database(&db).unwrap_err().to_string();
        assert!(
            error.contains("0644") && error.contains("other users"),
            "{error}"
        );
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();

        let dir = db.parent().unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let error = prepare_database(&db).unwrap_err().to_string();
        assert!(error.contains("database directory"), "{error}");
    }

    #[test]
    fn refuses_a_symlinked_database() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = root.path().join("real");
        std::fs::write(&target, b"").unwrap();
        let link = root.path().join("profiles.sqlite3");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(prepare_database(&link).is_err());
    }
}
