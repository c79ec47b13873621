//! Account and group lookups through NSS, behind a trait so the service can be unit-tested.

use nix::unistd::{Group, Uid, User};

pub trait Directory: Send + Sync {
    /// The uid of a local account, `None` when NSS does not know it.
    fn uid_of(&self, account: &str) -> Option<u32>;
    /// Whether the account with `uid` belongs to `group` (primary or supplementary).
    fn is_member(&self, uid: u32, group: &str) -> bool;
    /// The account name of a uid, `None` when NSS does not know it.
    fn name_of(&self, uid: u32) -> Option<String>;
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
