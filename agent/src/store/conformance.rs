//! What every [`Store`] must do, as the service relies on it: one suite, run against each
//! backend. A new backend runs it by adding one `conformance!` line at the bottom, with a
//! function that opens a fresh, empty store (and a guard that cleans it up on drop).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::sync::{Arc, Barrier};

/// The host name every backend under test is opened with (a fleet store qualifies sources and
/// grace by it).
const HOST: &str = "conformance-host";

/// A profile of `account` with settings that differ from every default, so a round trip
/// proves each field is kept.
fn record(account: &str, uid: u32) -> ProfileRecord {
    let settings = CodeSettings {
        algorithm: Algorithm::Sha256,
        digits: 8,
        period: 45,
    };
    ProfileRecord {
        comment: Some("laptop".into()),
        verified_at: Some(110),
        last_used_at: Some(120),
        last_step: Some(7),
        failed_attempts: 2,
        locked_until: Some(130),
        emergency_codes: vec!["aa:bb".into(), "cc:dd".into()],
        window: Some(3),
        owner: Some(HOST.into()),
        ..ProfileRecord::new(
            account,
            uid,
            Zeroizing::new(vec![7; 20]),
            settings,
            "host",
            100,
        )
    }
}

fn event(account: &str, at: i64, result: AuditResult) -> AuditEvent {
    AuditEvent {
        id: 0,
        at,
        account: account.into(),
        uid: Some(1000),
        op: "authenticate".into(),
        result,
        service: Some("sshd".into()),
        rhost: Some("192.0.2.7".into()),
        tty: Some("ssh".into()),
        ruser: None,
        caller_uid: 0,
        caller_pid: 1,
        host: Some(HOST.into()),
    }
}

/// Applies `change` (and `source`'s record) to `account` in one transaction.
fn apply(
    store: &dyn Store,
    account: &str,
    source: Option<(&str, SourceRecord)>,
    change: impl FnOnce() -> Change + Send,
) -> Option<ProfileRecord> {
    let mut change = Some(change);
    store
        .transact(account, source.map(|(name, _)| name), &mut |_, _| Outcome {
            source: source.map(|(_, record)| record),
            ..Outcome::new(change.take().map_or(Change::Keep, |make| make()), None)
        })
        .unwrap()
}

fn create(store: &dyn Store, record: ProfileRecord) -> ProfileRecord {
    let account = record.account.clone();
    apply(store, &account, None, || Change::Create(Box::new(record))).unwrap()
}

/// The source record `transact` hands the decision (a clear one when there is none).
fn source_of(store: &dyn Store, account: &str, source: &str) -> SourceRecord {
    let mut seen = None;
    store
        .transact(account, Some(source), &mut |_, record| {
            seen = record.copied();
            Outcome::new(Change::Keep, None)
        })
        .unwrap();
    seen.unwrap()
}

pub fn profiles_are_created_updated_and_deleted(store: &dyn Store) {
    assert_eq!(store.get("alice").unwrap(), None);
    let created = create(store, record("alice", 1000));
    assert!(created.id > 0, "the store assigns an id");
    assert_eq!(store.get("alice").unwrap(), Some(created.clone()));
    // An update keeps the id whatever the record says.
    let mut changed = created.clone();
    changed.last_step = Some(42);
    changed.emergency_codes.pop();
    changed.id = 0;
    let updated = apply(store, "alice", None, || {
        Change::Update(Box::new(changed.clone()))
    });
    assert_eq!(updated.as_ref().map(|r| r.id), Some(created.id));
    let stored = store.get("alice").unwrap().unwrap();
    assert_eq!((stored.id, stored.last_step), (created.id, Some(42)));
    assert_eq!(stored.emergency_codes.len(), 1);
    // Creating again replaces it, with a new id.
    let replaced = create(store, record("alice", 1000));
    assert_ne!(replaced.id, created.id);
    assert_eq!(store.list(None, 10).unwrap().len(), 1);
    // Keep stores nothing; Delete removes.
    assert_eq!(
        apply(store, "alice", None, || Change::Keep).map(|r| r.id),
        Some(replaced.id)
    );
    assert_eq!(apply(store, "alice", None, || Change::Delete), None);
    assert_eq!(store.get("alice").unwrap(), None);
}

pub fn the_kind_of_a_profile_round_trips(store: &dyn Store) {
    // An HOTP profile whose last counter is far beyond any time step.
    let hotp = ProfileRecord {
        kind: ProfileKind::Hotp,
        last_step: Some(1 << 40),
        window: None,
        ..record("hazel", 1600)
    };
    let created = create(store, hotp.clone());
    assert_eq!(created.kind, ProfileKind::Hotp);
    let stored = store.get("hazel").unwrap().unwrap();
    assert_eq!(
        stored,
        ProfileRecord {
            id: created.id,
            ..hotp
        }
    );
    // An update keeps it; listing shows it; a TOTP profile beside it stays TOTP.
    let mut advanced = stored.clone();
    advanced.last_step = Some((1 << 40) + 3);
    apply(store, "hazel", None, || {
        Change::Update(Box::new(advanced.clone()))
    });
    assert_eq!(store.get("hazel").unwrap(), Some(advanced));
    create(store, record("hugo", 1601));
    let kinds: Vec<(String, ProfileKind)> = store
        .list(None, 10)
        .unwrap()
        .into_iter()
        .map(|r| (r.account, r.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("hazel".to_owned(), ProfileKind::Hotp),
            ("hugo".to_owned(), ProfileKind::Totp)
        ]
    );
    // A counter has no clock to be ahead of.
    assert_eq!(store.profile_counts(1_000_000, 1).unwrap().clock_ahead, 0);
}

pub fn names_are_held_to_the_profile_of_their_uid(store: &dyn Store) {
    create(store, record("zed", 1500));
    // Its own name; another name of the same uid; a name of nobody enrolled.
    assert_eq!(store.profile_account("zed", Some(1500)).unwrap(), "zed");
    assert_eq!(
        store.profile_account("zedalias", Some(1500)).unwrap(),
        "zed"
    );
    assert_eq!(store.profile_account("amy", Some(1600)).unwrap(), "amy");
    assert_eq!(store.profile_account("amy", None).unwrap(), "amy");
    // A name with its own profile keeps it, even if another profile has its uid.
    create(store, record("zedalias", 1500));
    assert_eq!(
        store.profile_account("zedalias", Some(1500)).unwrap(),
        "zedalias"
    );
}

pub fn lists_page_in_account_order(store: &dyn Store) {
    for i in (0..25).rev() {
        create(store, record(&format!("user{i:02}"), 2000 + i));
    }
    let first = store.list(None, 10).unwrap();
    let rest = store
        .list(first.last().map(|r| r.account.as_str()), 100)
        .unwrap();
    assert_eq!((first.len(), rest.len()), (10, 15));
    let accounts: Vec<&str> = first
        .iter()
        .chain(&rest)
        .map(|r| r.account.as_str())
        .collect();
    assert!(accounts.is_sorted());
    assert_eq!(accounts.first(), Some(&"user00"));
}

/// 32 threads check-and-update one account at once: every update sees the one before (no
/// lost update), and of 32 logins racing to use one step exactly one wins.
pub fn racing_transactions_are_serialized(store: &dyn Store) {
    create(store, record("race", 3000));
    let threads = 32;
    let barrier = Barrier::new(threads);
    let winners = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                barrier.wait();
                let mut won = false;
                store
                    .transact("race", None, &mut |current, _| {
                        let mut record = current.cloned().unwrap();
                        record.failed_attempts += 1;
                        // Decided from the arguments alone: a retried run decides again.
                        won = record.last_step < Some(100);
                        if won {
                            record.last_step = Some(100);
                        }
                        Outcome::new(Change::Update(Box::new(record)), None)
                    })
                    .unwrap();
                if won {
                    winners.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    let stored = store.get("race").unwrap().unwrap();
    assert_eq!(stored.failed_attempts, 2 + 32);
    assert_eq!(winners.into_inner(), 1);
}

pub fn sources_are_kept_blocked_listed_cleared_and_forgotten(store: &dyn Store) {
    create(store, record("erin", 4000));
    let blocked = SourceRecord {
        failures: 5,
        blocked_until: Some(1_000_030),
        last_failure_at: 1_000_000,
    };
    let longer = SourceRecord {
        blocked_until: Some(1_000_900),
        ..blocked
    };
    apply(store, "erin", Some(("rhost:198.51.100.7", blocked)), || {
        Change::Keep
    });
    apply(store, "erin", Some(("rhost:203.0.113.9", longer)), || {
        Change::Keep
    });
    assert_eq!(source_of(store, "erin", "rhost:198.51.100.7"), blocked);
    // Unknown sources read as clear.
    assert_eq!(source_of(store, "erin", "local"), SourceRecord::default());
    // Blocked at a time: longest-blocked first, bounded, expired ones left out.
    let listed = store.blocked_sources("erin", 1_000_010, 10).unwrap();
    // A store may qualify the names (a fleet store prefixes its host: `HOST/rhost:...`).
    let names: Vec<&str> = listed
        .iter()
        .map(|(name, _)| name.trim_start_matches(&format!("{HOST}/")))
        .collect();
    assert_eq!(names, ["rhost:203.0.113.9", "rhost:198.51.100.7"]);
    assert_eq!(
        store.blocked_sources("erin", 1_000_010, 1).unwrap().len(),
        1
    );
    assert_eq!(
        store.blocked_sources("erin", 1_000_100, 10).unwrap().len(),
        1
    );
    // A clear record is no record.
    apply(
        store,
        "erin",
        Some(("rhost:198.51.100.7", SourceRecord::default())),
        || Change::Keep,
    );
    assert_eq!(
        store.blocked_sources("erin", 1_000_010, 10).unwrap().len(),
        1
    );
    // A stale, unblocked source is forgotten a day later.
    let stale = SourceRecord {
        failures: 2,
        blocked_until: None,
        last_failure_at: 1_000_000,
    };
    apply(store, "erin", Some(("uid:1000", stale)), || Change::Keep);
    let much_later = SourceRecord {
        failures: 1,
        blocked_until: None,
        last_failure_at: 1_000_000 + 2 * 24 * 60 * 60,
    };
    apply(store, "erin", Some(("local", much_later)), || Change::Keep);
    assert_eq!(
        source_of(store, "erin", "uid:1000"),
        SourceRecord::default()
    );
    // clear_sources forgets them all; so does creating the profile anew.
    store
        .transact("erin", None, &mut |_, _| Outcome {
            clear_sources: true,
            ..Outcome::new(Change::Keep, None)
        })
        .unwrap();
    assert!(store.blocked_sources("erin", 0, 10).unwrap().is_empty());
    apply(store, "erin", Some(("local", much_later)), || Change::Keep);
    create(store, record("erin", 4000));
    assert_eq!(source_of(store, "erin", "local"), SourceRecord::default());
}

pub fn audit_rows_are_appended_paged_and_pruned(store: &dyn Store) {
    create(store, record("fay", 1000));
    // An audit row commits with its transaction.
    store
        .transact("fay", None, &mut |_, _| {
            Outcome::new(
                Change::Keep,
                Some(event("fay", 1_000, AuditResult::Success)),
            )
        })
        .unwrap();
    for (at, account, result) in [
        (2_000, "fay", AuditResult::WrongCode),
        (3_000, "gus", AuditResult::Grace),
        (4_000, "fay", AuditResult::Replay),
        (5_000, "fay", AuditResult::UnknownAccount),
    ] {
        store.audit(&event(account, at, result)).unwrap();
    }
    let query = |account: Option<&str>, since, before, limit| AuditQuery {
        account: account.map(str::to_owned),
        since,
        before,
        limit,
    };
    let page = store
        .audit_log(&query(Some("fay"), Some(1_500), None, 10))
        .unwrap();
    let results: Vec<AuditResult> = page.iter().map(|e| e.result).collect();
    assert_eq!(
        results,
        [
            AuditResult::UnknownAccount,
            AuditResult::Replay,
            AuditResult::WrongCode
        ]
    );
    assert_eq!(page[0].service.as_deref(), Some("sshd"));
    // Pages follow each other by id.
    let first = store.audit_log(&query(None, None, None, 2)).unwrap();
    let next = store
        .audit_log(&query(None, None, first.last().map(|e| e.id), 10))
        .unwrap();
    assert_eq!((first.len(), next.len()), (2, 3));
    assert!(first
        .iter()
        .chain(&next)
        .map(|e| e.id)
        .is_sorted_by(|a, b| a > b));
    // Counts come from the vocabulary.
    assert_eq!(
        store.recent_attempts(1_500).unwrap(),
        AttemptTally {
            logins: 1,
            failures: 2
        }
    );
    // Pruning by age, then by rows (the oldest go first).
    assert_eq!(store.prune_audit(2_500, u64::MAX).unwrap(), 2);
    assert_eq!(store.prune_audit(i64::MIN, 1).unwrap(), 2);
    let left = store.audit_log(&query(None, None, None, 10)).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].result, AuditResult::UnknownAccount);
}

pub fn grace_is_read_from_root_callers_code_logins_at_one_place(store: &dyn Store) {
    let place = LoginPlace {
        service: Some("sudo"),
        rhost: None,
        tty: Some("/dev/pts/1"),
        ruser: Some("bob"),
    };
    let at_place = |at, result, caller_uid| AuditEvent {
        rhost: None,
        tty: Some("/dev/pts/1".into()),
        service: Some("sudo".into()),
        ruser: Some("bob".into()),
        caller_uid,
        ..event("hal", at, result)
    };
    store
        .audit(&at_place(100, AuditResult::Success, 0))
        .unwrap();
    store.audit(&at_place(200, AuditResult::Grace, 0)).unwrap();
    store
        .audit(&at_place(300, AuditResult::Success, 1000))
        .unwrap();
    store
        .audit(&AuditEvent {
            ruser: Some("carol".into()),
            ..at_place(400, AuditResult::EmergencyCode, 0)
        })
        .unwrap();
    assert_eq!(store.last_code_login("hal", &place).unwrap(), Some(100));
    store
        .audit(&at_place(500, AuditResult::EmergencyCode, 0))
        .unwrap();
    assert_eq!(store.last_code_login("hal", &place).unwrap(), Some(500));
    let elsewhere = LoginPlace {
        tty: Some("/dev/pts/2"),
        ..place
    };
    assert_eq!(store.last_code_login("hal", &elsewhere).unwrap(), None);
}

pub fn profiles_are_counted_by_state(store: &dyn Store) {
    let now = 1_000_000;
    let mut active = record("ida", 1);
    active.locked_until = Some(now + 60);
    active.last_step = Some(now / 45 + 10); // ahead of the clock beyond its window of 3
    let mut disabled = record("jon", 2);
    disabled.enabled = false;
    disabled.locked_until = None;
    let mut pending = record("kim", 3);
    pending.verified_at = None;
    pending.locked_until = None;
    for profile in [active, disabled, pending] {
        create(store, profile);
    }
    assert_eq!(
        store.profile_counts(now, 1).unwrap(),
        ProfileTally {
            pending: 1,
            active: 1,
            disabled: 1,
            locked: 1,
            clock_ahead: 1,
            blocked_sources: 0,
        }
    );
}

pub fn independent_jobs_commit_together(store: &dyn Store) {
    let mut jobs: Vec<(String, Box<Decision<'_>>)> = (0..5)
        .map(|i| {
            let account = format!("bulk{i}");
            let profile = record(&account, 5000 + i);
            let mut once = Some(profile);
            let decide: Box<Decision<'_>> = Box::new(move |current, _| {
                assert!(current.is_none());
                Outcome::new(
                    once.take()
                        .map_or(Change::Keep, |r| Change::Create(Box::new(r))),
                    None,
                )
            });
            (account, decide)
        })
        .collect();
    let stored = store.transact_each(&mut jobs).unwrap();
    assert_eq!(stored.len(), 5);
    assert!(stored.iter().all(|r| r.as_ref().is_some_and(|r| r.id > 0)));
    assert_eq!(store.list(None, 10).unwrap().len(), 5);
}

/// Generates one `#[test]` per behaviour for a backend: `conformance!(name, open)`, where
/// `open()` returns `(guard, store)` for a fresh, empty store.
macro_rules! conformance {
    ($backend:ident, $open:path) => {
        mod $backend {
            use super::*;
            conformance!(@tests $open;
                profiles_are_created_updated_and_deleted,
                the_kind_of_a_profile_round_trips,
                names_are_held_to_the_profile_of_their_uid,
                lists_page_in_account_order,
                racing_transactions_are_serialized,
                sources_are_kept_blocked_listed_cleared_and_forgotten,
                audit_rows_are_appended_paged_and_pruned,
                grace_is_read_from_root_callers_code_logins_at_one_place,
                profiles_are_counted_by_state,
                independent_jobs_commit_together,
            );
            #[test]
            fn reads_see_only_committed_state_without_waiting() {
                let (_guard, store) = $open();
                super::reads_during_an_open_transaction(std::sync::Arc::new(store));
            }
        }
    };
    (@tests $open:path; $($behaviour:ident),* $(,)?) => {
        $(
            #[test]
            fn $behaviour() {
                let (_guard, store) = $open();
                super::$behaviour(&store);
            }
        )*
    };
}

/// During an open transaction, a read from another thread neither waits for it nor sees its
/// uncommitted change.
pub fn reads_during_an_open_transaction<S: Store + 'static>(store: Arc<S>) {
    let reader = Arc::clone(&store);
    let mut seen = None;
    let mut pending = Some(record("ivy", 6000));
    let mut jobs: Vec<(String, Box<Decision<'_>>)> = vec![
        (
            "ivy".into(),
            Box::new(move |_, _| {
                Outcome::new(
                    pending
                        .take()
                        .map_or(Change::Keep, |r| Change::Create(Box::new(r))),
                    None,
                )
            }),
        ),
        (
            "other".into(),
            Box::new(|_, _| {
                // ivy is created in this still-open transaction; read it from elsewhere.
                let reader = Arc::clone(&reader);
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(reader.get("ivy").map(|r| r.is_some()));
                });
                seen = Some(rx.recv_timeout(std::time::Duration::from_secs(5)));
                Outcome::new(Change::Keep, None)
            }),
        ),
    ];
    store.transact_each(&mut jobs).unwrap();
    drop(jobs);
    assert!(
        matches!(seen, Some(Ok(Ok(false)))),
        "the read waited for, or saw, the open transaction: {seen:?}"
    );
    assert!(store.get("ivy").unwrap().is_some());
}

fn open_sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("profiles.sqlite3")).unwrap();
    (dir, store)
}

conformance!(sqlite, open_sqlite);

/// A fresh database in a PostgreSQL cluster shared by the tests running at the same time
/// (started by the first, stopped when the last one's guard drops).
fn open_postgres() -> ((Arc<pam_totp_testpg::Cluster>, String), PgStore) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, Weak};
    static SHARED: Mutex<Weak<pam_totp_testpg::Cluster>> = Mutex::new(Weak::new());
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let cluster = {
        let mut shared = SHARED.lock().unwrap();
        shared.upgrade().unwrap_or_else(|| {
            let started = Arc::new(pam_totp_testpg::Cluster::start(Default::default()).unwrap());
            *shared = Arc::downgrade(&started);
            started
        })
    };
    let database = format!("conformance_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    cluster
        .psql(&format!("CREATE DATABASE {database} OWNER pamtotp"))
        .unwrap();
    let url = cluster.url().replace("/pamtotp?", &format!("/{database}?"));
    let password = Zeroizing::new(cluster.password().to_owned());
    let store = PgStore::open(PgSettings {
        url: postgres::StoreUrl::parse(&url, Some(&password)).unwrap(),
        key: fleet_key::FleetKey::from_bytes(&[9; 32]),
        host: HOST.into(),
        windows: Windows { totp: 1, hotp: 10 },
    })
    .unwrap();
    ((cluster, database), store)
}

conformance!(postgresql, open_postgres);
