//! Local account and group lookups through NSS (getpwnam_r, getpwuid_r, getgrnam_r), shared by
//! the PAM module, the agent and the CLI, so each question is asked one way.
//!
//! Every single lookup uses the reentrant `_r` calls: thread-safe, no shared libc state, and
//! no thread of its own, so the PAM module can use them inside any host program. Only
//! [`uids_of`] enumerates (`getpwent`, which walks state shared by the whole process) and does
//! so under a process-wide mutex; the PAM module never calls it.

use nix::errno::Errno;
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

/// A local account as NSS returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The name as NSS spells it (it may differ from the name asked for: a case variant on
    /// hosts whose NSS folds case).
    pub name: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// The home directory.
    pub home: PathBuf,
}

/// Why NSS could not answer (not "no such account": that is `Ok(None)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The lookup failed (e.g. an unreachable directory service).
    Os(Errno),
    /// The entry's name is not UTF-8.
    NotUtf8,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Os(errno) => f.write_str(errno.desc()),
            Self::NotUtf8 => f.write_str("the account name NSS returned is not UTF-8"),
        }
    }
}

impl std::error::Error for Error {}

/// The account `name` resolves to (getpwnam_r), `Ok(None)` when NSS does not know it.
pub fn account(name: &str) -> Result<Option<Account>, Error> {
    // A name with a NUL cannot be asked for, so no account has it.
    let Ok(name) = CString::new(name) else {
        return Ok(None);
    };
    passwd_lookup(|entry, buffer, length, found| {
        // SAFETY: `name` is NUL-terminated and outlives the call; the caller guarantees the
        // other arguments (see `passwd_lookup`).
        unsafe { libc::getpwnam_r(name.as_ptr(), entry, buffer, length, found) }
    })
}

/// The account of `uid` (getpwuid_r), `Ok(None)` when NSS does not know it.
pub fn account_of_uid(uid: u32) -> Result<Option<Account>, Error> {
    passwd_lookup(|entry, buffer, length, found| {
        // SAFETY: the caller guarantees the arguments (see `passwd_lookup`).
        unsafe { libc::getpwuid_r(uid, entry, buffer, length, found) }
    })
}

/// The account name of `uid`, `None` when NSS does not know it (or cannot answer).
pub fn name_of(uid: u32) -> Option<String> {
    account_of_uid(uid)
        .ok()
        .flatten()
        .map(|account| account.name)
}

/// Whether the account with `uid` belongs to `group`, as its primary group or as a listed
/// (supplementary) member. `false` when NSS knows neither, or cannot answer.
pub fn is_member(uid: u32, group: &str) -> bool {
    let Some(account) = account_of_uid(uid).ok().flatten() else {
        return false;
    };
    let Some(group) = group_members(group).ok().flatten() else {
        return false;
    };
    account.gid == group.gid || group.members.contains(&account.name)
}

/// Below this many names, per-name lookups are cheaper than enumerating every account.
pub const BULK_LOOKUP_MIN: usize = 32;

/// What [`lookup_uids`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uids {
    /// The names NSS knows, with their uids.
    pub found: HashMap<String, u32>,
    /// The names whose lookup failed (neither found nor known to be missing).
    pub failed: HashMap<String, Error>,
}

/// The uids of many accounts at once; unknown names (and failed lookups) are left out. See
/// [`lookup_uids`].
pub fn uids_of(names: &[&str]) -> HashMap<String, u32> {
    lookup_uids(names).found
}

/// The uids of many accounts at once. From [`BULK_LOOKUP_MIN`] names on, one pass over the
/// account database (`getpwent`, under a process-wide mutex) instead of a lookup per name:
/// with the `files` backend every getpwnam scans /etc/passwd, so per-name lookups are
/// quadratic. Names the enumeration does not show (NSS sources that do not enumerate, e.g.
/// LDAP or SSSD without `enumerate`) are then looked up one by one.
pub fn lookup_uids(names: &[&str]) -> Uids {
    let mut uids = Uids::default();
    if names.len() >= BULK_LOOKUP_MIN {
        let wanted: HashSet<&str> = names.iter().copied().collect();
        uids.found = enumerate_uids(&wanted);
    }
    for name in names {
        if uids.found.contains_key(*name) || uids.failed.contains_key(*name) {
            continue;
        }
        match account(name) {
            Ok(Some(account)) => {
                uids.found.insert((*name).to_owned(), account.uid);
            }
            Ok(None) => {}
            Err(error) => {
                uids.failed.insert((*name).to_owned(), error);
            }
        }
    }
    uids
}

/// `getpwent` walks state shared by the whole process: one enumeration at a time.
static ENUMERATION: Mutex<()> = Mutex::new(());

/// The uids of the `wanted` accounts that `getpwent` lists.
fn enumerate_uids(wanted: &HashSet<&str>) -> HashMap<String, u32> {
    let _one_at_a_time = ENUMERATION.lock().unwrap_or_else(PoisonError::into_inner);
    let mut found = HashMap::new();
    // SAFETY: setpwent/getpwent/endpwent are only called here, under ENUMERATION, so no other
    // thread of this process moves the enumeration. Each returned entry is valid until the
    // next getpwent call, and what is needed is copied out of it before then; `pw_name` is a
    // NUL-terminated string for every entry glibc returns.
    unsafe {
        libc::setpwent();
        loop {
            let entry = libc::getpwent();
            if entry.is_null() {
                break;
            }
            let name = CStr::from_ptr((*entry).pw_name).to_string_lossy();
            if wanted.contains(name.as_ref()) {
                found.insert(name.into_owned(), (*entry).pw_uid);
            }
        }
        libc::endpwent();
    }
    found
}

/// A group's id and listed members.
struct Group {
    gid: u32,
    members: Vec<String>,
}

/// First size of the buffer the `_r` calls write an entry's strings into; an entry that does
/// not fit (ERANGE) is asked for again with a larger one, up to [`MAX_BUFFER`].
const FIRST_BUFFER: usize = 4096;
const MAX_BUFFER: usize = 1 << 20;

/// Runs one reentrant lookup (`getpwnam_r`, `getgrnam_r`, ...) with a buffer grown on ERANGE
/// and hands the entry it found to `read`, while the buffer its strings live in is alive.
///
/// `call` gets pointers to an entry to fill, a buffer and its true length, and the result
/// pointer, all valid for the call; it must pass them to a `_r` function of this shape and
/// return its result.
fn lookup_r<T, R>(
    call: impl Fn(*mut T, *mut libc::c_char, libc::size_t, *mut *mut T) -> libc::c_int,
    read: impl FnOnce(&T) -> Result<R, Error>,
) -> Result<Option<R>, Error> {
    let mut entry = std::mem::MaybeUninit::<T>::uninit();
    let mut found: *mut T = std::ptr::null_mut();
    let mut buffer = vec![0 as libc::c_char; FIRST_BUFFER];
    loop {
        let rc = call(
            entry.as_mut_ptr(),
            buffer.as_mut_ptr(),
            buffer.len(),
            &raw mut found,
        );
        // ERANGE: the entry does not fit; grow the buffer (bounded) and ask again.
        if rc == libc::ERANGE && buffer.len() < MAX_BUFFER {
            buffer.resize(buffer.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(Error::Os(Errno::from_raw(rc)));
        }
        if found.is_null() {
            return Ok(None);
        }
        // SAFETY: the call returned 0 with `found` non-null, so `found` points at `entry`,
        // now initialized, whose strings live in `buffer`, alive until this function returns.
        return read(unsafe { &*found }).map(Some);
    }
}

/// [`lookup_r`] for a passwd entry.
fn passwd_lookup(
    call: impl Fn(
        *mut libc::passwd,
        *mut libc::c_char,
        libc::size_t,
        *mut *mut libc::passwd,
    ) -> libc::c_int,
) -> Result<Option<Account>, Error> {
    lookup_r(call, |entry: &libc::passwd| {
        // SAFETY: `pw_name` and `pw_dir` of an entry a `_r` call filled are NUL-terminated
        // strings in its buffer, alive while `entry` is borrowed (see `lookup_r`).
        let (name, home) = unsafe { (CStr::from_ptr(entry.pw_name), CStr::from_ptr(entry.pw_dir)) };
        Ok(Account {
            name: name.to_str().map_err(|_| Error::NotUtf8)?.to_owned(),
            uid: entry.pw_uid,
            gid: entry.pw_gid,
            home: PathBuf::from(OsStr::from_bytes(home.to_bytes())),
        })
    })
}

/// The group named `name` (getgrnam_r), `Ok(None)` when NSS does not know it.
fn group_members(name: &str) -> Result<Option<Group>, Error> {
    let Ok(name) = CString::new(name) else {
        return Ok(None);
    };
    let call = |entry, buffer, length, found| {
        // SAFETY: `name` is NUL-terminated and outlives the call; `lookup_r` guarantees the
        // other arguments.
        unsafe { libc::getgrnam_r(name.as_ptr(), entry, buffer, length, found) }
    };
    lookup_r(call, |entry: &libc::group| {
        let mut members = Vec::new();
        let mut member = entry.gr_mem;
        // SAFETY: `gr_mem` of an entry a `_r` call filled is a NULL-terminated array of
        // NUL-terminated strings in its buffer, alive while `entry` is borrowed.
        unsafe {
            while !member.is_null() && !(*member).is_null() {
                members.push(CStr::from_ptr(*member).to_string_lossy().into_owned());
                member = member.add(1);
            }
        }
        Ok(Group {
            gid: entry.gr_gid,
            members,
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn root_is_uid_0_both_ways() {
        let root = account("root").unwrap().expect("root exists");
        assert_eq!((root.name.as_str(), root.uid, root.gid), ("root", 0, 0));
        assert_eq!(account_of_uid(0).unwrap(), Some(root));
        assert_eq!(name_of(0).as_deref(), Some("root"));
    }

    #[test]
    fn unknown_names_are_none_not_errors() {
        assert_eq!(account("pamtotp-no-such-user").unwrap(), None);
        assert_eq!(account("nul\0inside").unwrap(), None);
        assert_eq!(account_of_uid(4_000_000_000).unwrap_or(None), None);
        assert_eq!(name_of(4_000_000_000), None);
    }

    #[test]
    fn membership() {
        // root's primary group is root (gid 0).
        assert!(is_member(0, "root"));
        assert!(!is_member(0, "pamtotp-no-such-group"));
        assert!(!is_member(4_000_000_000, "root"));
    }

    #[test]
    fn bulk_and_single_lookups_agree() {
        // root exists everywhere; the other names do not.
        let mut names: Vec<String> = (0..40).map(|i| format!("pamtotp-no-such-{i}")).collect();
        names.push("root".into());
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(refs.len() >= BULK_LOOKUP_MIN);
        let found = uids_of(&refs);
        assert_eq!(found.len(), 1);
        assert_eq!(found.get("root"), Some(&0));
        // Few names: one by one, same answer.
        assert_eq!(uids_of(&["root", "pamtotp-no-such-x"]), found);
        let uids = lookup_uids(&refs);
        assert!(uids.failed.is_empty(), "{:?}", uids.failed);
    }

    #[test]
    fn enumeration_finds_root() {
        let wanted: HashSet<&str> = ["root"].into_iter().collect();
        // Empty only where the passwd source does not enumerate; names are then looked up
        // one by one.
        let found = enumerate_uids(&wanted);
        if !found.is_empty() {
            assert_eq!(found.get("root"), Some(&0));
        }
    }
}
