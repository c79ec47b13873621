//! Account and group lookups through NSS, behind a trait so the service can be unit-tested.
//! The lookups themselves are `pam-totp-nss`'s, shared with the PAM module and the CLI.

use std::collections::HashMap;

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

/// The host's NSS.
#[derive(Debug, Default)]
pub struct Nss;

impl Directory for Nss {
    fn uid_of(&self, account: &str) -> Option<u32> {
        pam_totp_nss::account(account)
            .ok()
            .flatten()
            .map(|account| account.uid)
    }

    /// One pass over the account database for many names (see [`pam_totp_nss::uids_of`]).
    fn uids_of(&self, accounts: &[&str]) -> HashMap<String, u32> {
        pam_totp_nss::uids_of(accounts)
    }

    fn name_of(&self, uid: u32) -> Option<String> {
        pam_totp_nss::name_of(uid)
    }

    fn is_member(&self, uid: u32, group: &str) -> bool {
        pam_totp_nss::is_member(uid, group)
    }
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
