//! Account and group lookups through NSS, behind a trait so the service can be unit-tested.

use nix::unistd::{Group, Uid, User};
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::sync::{Mutex, PoisonError};

pub trait Directory: Send + Sync {
    /// The uid of a local account, `None` when NSS does not know it.
    fn uid_of(&self, account: &str) -> Option<u32>;
    /// Whether the account with `uid` belongs to `group` (primary or supplementary).
    fn is_member(&self, uid: u32, group: &str) -> bool;
    /// The account name of a uid, `None` when NSS does not know it.
    fn name_of(&self, uid: u32) -> Option<String>;
    /// The uids of many accounts at once (bulk imports); unknown ones are left out.
    fn uids_of(&self, accounts: &[&str]) -> HashMap<String, u32> {
        accounts
            .iter()
            .filter_map(|account| Some(((*account).to_owned(), self.uid_of(account)?)))
            .collect()
    }
}

#[derive(Debug, Default)]
pub struct Nss;

impl Directory for Nss {
    fn uid_of(&self, account: &str) -> Option<u32> {
        User::from_name(account)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    }

    /// One pass over the account database instead of a lookup per name: with the files
    /// backend every `getpwnam` scans /etc/passwd, so per-name lookups are quadratic.
    /// Names the enumeration does not show (NSS sources that do not enumerate) are looked up
    /// one by one.
    fn uids_of(&self, accounts: &[&str]) -> HashMap<String, u32> {
        if accounts.len() < BULK_LOOKUP_MIN {
            return accounts
                .iter()
                .filter_map(|a| Some(((*a).to_owned(), self.uid_of(a)?)))
                .collect();
        }
        let wanted: HashSet<&str> = accounts.iter().copied().collect();
        let mut found = enumerate_accounts(&wanted);
        for account in accounts {
            if !found.contains_key(*account) {
                if let Some(uid) = self.uid_of(account) {
                    found.insert((*account).to_owned(), uid);
                }
            }
        }
        found
    }

    fn name_of(&self, uid: u32) -> Option<String> {
        User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    }

    fn is_member(&self, uid: u32, group: &str) -> bool {
        let Some(user) = User::from_uid(Uid::from_raw(uid)).ok().flatten() else {
            return false;
        };
        let Some(group) = Group::from_name(group).ok().flatten() else {
            return false;
        };
        user.gid == group.gid || group.mem.contains(&user.name)
    }
}

/// Below this many names, per-name lookups are cheaper than enumerating every account.
const BULK_LOOKUP_MIN: usize = 32;

/// `getpwent` walks shared state in libc: one enumeration at a time.
static ENUMERATION: Mutex<()> = Mutex::new(());

/// The uids of the `wanted` accounts that `getpwent` lists.
fn enumerate_accounts(wanted: &HashSet<&str>) -> HashMap<String, u32> {
    let _one_at_a_time = ENUMERATION.lock().unwrap_or_else(PoisonError::into_inner);
    let mut found = HashMap::new();
    // SAFETY: setpwent/getpwent/endpwent are only called here, under ENUMERATION, so no other
    // thread of this process moves the enumeration. Each returned entry is valid until the
    // next getpwent call, and we copy what we need out of it before then; `pw_name` is a
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_and_single_lookups_agree() {
        // root exists everywhere; the other names do not.
        let mut names: Vec<String> = (0..40).map(|i| format!("pamtotp-no-such-{i}")).collect();
        names.push("root".into());
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let found = Nss.uids_of(&refs);
        assert_eq!(found.len(), 1);
        assert_eq!(found.get("root"), Some(&0));
        assert_eq!(Nss.uid_of("root"), Some(0));
    }
}
