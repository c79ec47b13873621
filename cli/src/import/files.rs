//! Reading the files an import comes from, as the calling user: a usersfile, and a file that
//! holds one account's secret (which must be the account's own, as
//! pam_google_authenticator requires).

use pam_totp_proto::text::sanitize;
use pam_totp_proto::{ApiError, ErrorCode};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// Who may own a file that holds an account's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owners {
    /// The account being imported, and its uid.
    pub account: String,
    pub uid: u32,
    /// The caller, for a file it named itself.
    pub caller: Option<u32>,
}

/// What [`check_secret_file`] looks at, from fstat(2) of the opened file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    pub regular: bool,
    pub uid: u32,
    /// The permission bits.
    pub mode: u32,
}

/// Refuses a file that is not the account's own to hold its secret: not a regular file
/// (`invalid_argument`, as before); owned by anyone but the account (or the caller, when
/// allowed); writable by group or others (`failed_precondition`: the file must be fixed, by
/// whoever may, before it can be imported).
pub fn check_secret_file(shown: &str, facts: FileFacts, owners: &Owners) -> Result<(), ApiError> {
    if !facts.regular {
        return Err(ApiError::invalid(
            "file",
            format!("{shown} is not a regular file"),
        ));
    }
    if facts.uid != owners.uid && Some(facts.uid) != owners.caller {
        let also = match owners.caller {
            Some(caller) if caller != owners.uid => " or by you",
            _ => "",
        };
        return Err(unsafe_file(format!(
            "{shown} is owned by uid {}: it must be owned by {}{also} (uid {}), as \
             pam_google_authenticator requires",
            facts.uid,
            sanitize(&owners.account),
            owners.uid
        )));
    }
    if facts.mode & 0o022 != 0 {
        return Err(unsafe_file(format!(
            "{shown} is writable by {} (mode {:04o}): someone else may have chosen its \
             secret; make it writable by its owner only (chmod go-w)",
            if facts.mode & 0o020 != 0 && facts.mode & 0o002 != 0 {
                "group and others"
            } else if facts.mode & 0o020 != 0 {
                "its group"
            } else {
                "others"
            },
            facts.mode & 0o7777
        )));
    }
    Ok(())
}

fn unsafe_file(message: String) -> ApiError {
    ApiError::new(ErrorCode::FailedPrecondition, message).with_target("file")
}

/// Reads a regular file of at most `limit` bytes as the calling user. A FIFO or device is
/// refused without blocking on it.
pub fn read_file(path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let shown = sanitize(&path.display().to_string());
    let file = open_file(path, &shown, nix::fcntl::OFlag::empty())?;
    let meta = file.metadata().map_err(|e| file_error(&shown, &e))?;
    if !meta.is_file() {
        return Err(ApiError::invalid(
            "file",
            format!("{shown} is not a regular file"),
        ));
    }
    read_opened(file, &meta, &shown, limit)
}

/// [`read_file`] for a file that holds an account's secret: a symbolic link is refused, not
/// followed, and [`check_secret_file`] looks at the file that was opened (fstat), so nothing
/// can be swapped in between the check and the read.
pub fn read_secret_file(
    path: &Path,
    limit: u64,
    owners: &Owners,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let shown = sanitize(&path.display().to_string());
    let file = open_file(path, &shown, nix::fcntl::OFlag::O_NOFOLLOW)?;
    let meta = file.metadata().map_err(|e| file_error(&shown, &e))?;
    let facts = FileFacts {
        regular: meta.is_file(),
        uid: meta.uid(),
        mode: meta.mode() & 0o7777,
    };
    check_secret_file(&shown, facts, owners)?;
    read_opened(file, &meta, &shown, limit)
}

/// Opens for reading without blocking (a FIFO) or taking a controlling terminal (a tty).
fn open_file(
    path: &Path,
    shown: &str,
    extra: nix::fcntl::OFlag,
) -> Result<std::fs::File, ApiError> {
    let flags = nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOCTTY | extra;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
        .map_err(|e| {
            if extra.contains(nix::fcntl::OFlag::O_NOFOLLOW)
                && e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32)
            {
                unsafe_file(format!(
                    "{shown} is a symbolic link, which is not followed: the file must be the \
                     account's own regular file (name the file itself if it is)"
                ))
            } else {
                file_error(shown, &e)
            }
        })
}

/// The contents of an opened regular file, at most `limit` bytes.
fn read_opened(
    file: std::fs::File,
    meta: &std::fs::Metadata,
    shown: &str,
    limit: u64,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    if meta.len() > limit {
        return Err(ApiError::invalid(
            "file",
            format!("{shown} is larger than {limit} bytes"),
        ));
    }
    let capacity = usize::try_from(meta.len()).unwrap_or(0).saturating_add(1);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| file_error(shown, &e))?;
    if bytes.len() as u64 > limit {
        return Err(ApiError::invalid(
            "file",
            format!("{shown} is larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

fn file_error(shown: &str, error: &std::io::Error) -> ApiError {
    match error.kind() {
        std::io::ErrorKind::NotFound => {
            ApiError::invalid("file", format!("cannot read {shown}: no such file"))
        }
        std::io::ErrorKind::PermissionDenied => ApiError::permission_denied(format!(
            "cannot read {shown}: permission denied (the file is read as the calling user)"
        ))
        .with_target("file"),
        _ => ApiError::invalid("file", format!("cannot read {shown}: {error}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_checks() {
        let owners = Owners {
            account: "alice".into(),
            uid: 1000,
            caller: Some(0),
        };
        let facts = |regular, uid, mode| FileFacts { regular, uid, mode };
        assert!(check_secret_file("f", facts(true, 1000, 0o400), &owners).is_ok());
        assert!(check_secret_file("f", facts(true, 0, 0o600), &owners).is_ok());
        assert!(check_secret_file("f", facts(true, 1000, 0o4755), &owners).is_ok());
        let error = check_secret_file("f", facts(false, 1000, 0o600), &owners).unwrap_err();
        assert_eq!(
            (error.code, error.target.as_deref()),
            (ErrorCode::InvalidArgument, Some("file"))
        );
        let error = check_secret_file("f", facts(true, 1001, 0o600), &owners).unwrap_err();
        assert_eq!(error.code, ErrorCode::FailedPrecondition);
        let own = Owners {
            caller: Some(1000),
            ..owners.clone()
        };
        let error = check_secret_file("f", facts(true, 0, 0o600), &own).unwrap_err();
        assert!(!error.message.contains("or by you"), "{}", error.message);
        let error = check_secret_file("f", facts(true, 1000, 0o660), &owners).unwrap_err();
        assert_eq!(error.code, ErrorCode::FailedPrecondition);
    }

    #[test]
    fn reading_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "hello").unwrap();
        assert_eq!(read_file(&path, 10).unwrap().as_slice(), b"hello");
        assert_eq!(
            read_file(&path, 4).unwrap_err().target.as_deref(),
            Some("file")
        );
        assert_eq!(
            read_file(dir.path(), 10).unwrap_err().target.as_deref(),
            Some("file")
        );
        let missing = read_file(&dir.path().join("none"), 10).unwrap_err();
        assert_eq!(
            (missing.code, missing.target.as_deref()),
            (ErrorCode::InvalidArgument, Some("file"))
        );
        // A FIFO is refused at once instead of blocking.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(
            read_file(&fifo, 10).unwrap_err().target.as_deref(),
            Some("file")
        );
    }

    #[test]
    fn reading_secret_files() {
        use std::os::unix::fs::PermissionsExt;
        let me = nix::unistd::getuid().as_raw();
        let mine = Owners {
            account: "me".into(),
            uid: me,
            caller: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ga");
        std::fs::write(&path, "hello").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_secret_file(&path, 10, &mine).unwrap().as_slice(),
            b"hello"
        );
        // A symbolic link to it is not followed, however good the file it names.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let error = read_secret_file(&link, 10, &mine).unwrap_err();
        assert_eq!(
            (error.code, error.target.as_deref()),
            (ErrorCode::FailedPrecondition, Some("file"))
        );
        assert!(error.message.contains("symbolic link"), "{}", error.message);
        // read_file (a usersfile) still follows links.
        assert_eq!(read_file(&link, 10).unwrap().as_slice(), b"hello");
        // The owner and mode of the opened file.
        let someone_else = Owners {
            uid: me.wrapping_add(1),
            ..mine.clone()
        };
        let error = read_secret_file(&path, 10, &someone_else).unwrap_err();
        assert_eq!(error.code, ErrorCode::FailedPrecondition);
        assert!(error.message.contains("owned by"), "{}", error.message);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let error = read_secret_file(&path, 10, &mine).unwrap_err();
        assert!(error.message.contains("writable"), "{}", error.message);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Size, missing files, directories and FIFOs as read_file.
        assert_eq!(
            read_secret_file(&path, 4, &mine)
                .unwrap_err()
                .target
                .as_deref(),
            Some("file")
        );
        let missing = read_secret_file(&dir.path().join("none"), 10, &mine).unwrap_err();
        assert_eq!(missing.code, ErrorCode::InvalidArgument);
        let error = read_secret_file(dir.path(), 10, &mine).unwrap_err();
        assert_eq!(
            (error.code, error.target.as_deref()),
            (ErrorCode::InvalidArgument, Some("file"))
        );
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(
            read_secret_file(&fifo, 10, &mine).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }
}
