//! Who may do what. Identity comes only from SO_PEERCRED; nothing the client says counts.

/// The connecting process, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
}

/// How the caller stands to the account a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Admin,
    /// The account itself.
    Owner,
    Stranger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Probe,
    Authenticate,
    Verify,
    Enroll,
    Show,
    List,
    Disable,
    Enable,
    Remove,
    Unlock,
    Codes,
    Set,
    Import,
    Log,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probe => "probe",
            Self::Authenticate => "authenticate",
            Self::Verify => "verify",
            Self::Enroll => "enroll",
            Self::Show => "show",
            Self::List => "list",
            Self::Disable => "disable",
            Self::Enable => "enable",
            Self::Remove => "remove",
            Self::Unlock => "unlock",
            Self::Codes => "codes",
            Self::Set => "set",
            Self::Import => "import",
            Self::Log => "log",
        }
    }
}

/// Operations listed in a profile's `can` field, in this order.
const PROFILE_OPS: [Op; 9] = [
    Op::Show,
    Op::Verify,
    Op::Enroll,
    Op::Disable,
    Op::Enable,
    Op::Remove,
    Op::Unlock,
    Op::Codes,
    Op::Set,
];

/// The caller is the account's owner when NSS maps the account to the caller's uid and, if a
/// profile exists, the profile was recorded for that same uid (a recycled uid gets nothing).
pub fn relation(
    is_admin: bool,
    peer_uid: u32,
    account_uid: Option<u32>,
    profile_uid: Option<u32>,
) -> Relation {
    if is_admin {
        Relation::Admin
    } else if account_uid == Some(peer_uid) && profile_uid.is_none_or(|uid| uid == peer_uid) {
        Relation::Owner
    } else {
        Relation::Stranger
    }
}

/// The contract's table. Conditions on owners (a code for remove, codes and replacing an
/// active profile; `self_enroll` for enroll) are the service's to check.
pub fn permits(relation: Relation, op: Op, self_enroll: bool) -> bool {
    match relation {
        Relation::Admin => true,
        Relation::Owner => match op {
            Op::Probe
            | Op::Authenticate
            | Op::Verify
            | Op::Show
            | Op::Remove
            | Op::Codes
            | Op::Set
            | Op::Log => true,
            Op::Enroll | Op::Import => self_enroll,
            Op::List | Op::Disable | Op::Enable | Op::Unlock => false,
        },
        Relation::Stranger => false,
    }
}

/// The `can` field: what this caller may do with the profile.
pub fn can(relation: Relation, self_enroll: bool) -> Vec<String> {
    PROFILE_OPS
        .iter()
        .filter(|op| permits(relation, **op, self_enroll))
        .map(|op| op.as_str().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_needs_both_nss_and_recorded_uid() {
        assert_eq!(relation(true, 5, None, None), Relation::Admin);
        assert_eq!(relation(false, 1000, Some(1000), None), Relation::Owner);
        assert_eq!(
            relation(false, 1000, Some(1000), Some(1000)),
            Relation::Owner
        );
        // Recycled uid: the profile belongs to an earlier holder of the name.
        assert_eq!(
            relation(false, 1000, Some(1000), Some(1001)),
            Relation::Stranger
        );
        assert_eq!(relation(false, 1000, Some(1001), None), Relation::Stranger);
        assert_eq!(relation(false, 1000, None, None), Relation::Stranger);
    }

    #[test]
    fn permission_table() {
        let all = [
            Op::Import,
            Op::Log,
            Op::Probe,
            Op::Authenticate,
            Op::Verify,
            Op::Enroll,
            Op::Show,
            Op::List,
            Op::Disable,
            Op::Enable,
            Op::Remove,
            Op::Unlock,
            Op::Codes,
            Op::Set,
        ];
        for op in all {
            assert!(permits(Relation::Admin, op, false), "admin {op:?}");
            assert!(!permits(Relation::Stranger, op, true), "stranger {op:?}");
        }
        let owner: Vec<Op> = all
            .into_iter()
            .filter(|op| permits(Relation::Owner, *op, true))
            .collect();
        assert_eq!(
            owner,
            [
                Op::Import,
                Op::Log,
                Op::Probe,
                Op::Authenticate,
                Op::Verify,
                Op::Enroll,
                Op::Show,
                Op::Remove,
                Op::Codes,
                Op::Set
            ]
        );
        assert!(!permits(Relation::Owner, Op::Enroll, false));
    }

    #[test]
    fn can_lists_profile_operations() {
        assert_eq!(
            can(Relation::Owner, true),
            ["show", "verify", "enroll", "remove", "codes", "set"]
        );
        assert_eq!(
            can(Relation::Owner, false),
            ["show", "verify", "remove", "codes", "set"]
        );
        assert_eq!(can(Relation::Admin, false).len(), 9);
        assert!(can(Relation::Stranger, true).is_empty());
    }
}
