#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::timefmt::Zone;
use pam_totp_proto::{
    profile_fields, Algorithm, AuditEntry, CodesReply, EnrollReply, ErrorCode, LogPage,
    ProfileKind, ProfileView, SecretString, StatusReply,
};
use serde_json::Value;

pub fn sample(account: &str) -> ProfileView {
    ProfileView {
        id: 7,
        account: account.into(),
        uid: 1000,
        kind: ProfileKind::Totp,
        counter: None,
        owner: "host1".into(),
        scope: "host".into(),
        verified: true,
        enabled: true,
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: Some(30),
        sha_fingerprint: "ab".repeat(32),
        comment: Some("phone".into()),
        created_at: "2024-01-01T00:00:00Z".into(),
        changed_at: "2024-01-01T00:00:00Z".into(),
        verified_at: Some("2024-01-01T00:01:00Z".into()),
        last_used_at: None,
        failed_attempts: 0,
        locked_until: None,
        blocked_sources: vec![],
        emergency_codes_remaining: 10,
        can: vec!["show".into(), "verify".into()],
    }
}

fn no_names(_: u32) -> Option<String> {
    None
}

/// Human output as off a terminal, in UTC.
fn plain() -> Human<'static> {
    Human {
        terminal: false,
        colour: false,
        zone: Zone::Fixed(chrono::FixedOffset::east_opt(0).unwrap()),
        user_name: &no_names,
    }
}

fn text(view: View, reply: Reply, json: bool) -> String {
    render(&view, reply, json, &plain()).unwrap().to_string()
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn show_json_is_the_whole_profile_in_contract_order() {
    let out = text(
        View::Show { fields: None },
        Reply::Profile(sample("alice")),
        true,
    );
    assert!(out.ends_with('\n') && out.lines().count() == 1);
    assert!(out.starts_with(
        "{\"id\":7,\"account\":\"alice\",\"uid\":1000,\"type\":\"totp\",\"owner\":\"host1\","
    ));
    assert!(out.ends_with(",\"emergency_codes_remaining\":10,\"can\":[\"show\",\"verify\"]}\n"));
    let value = parse(&out);
    assert_eq!(value["account"], "alice");
    assert_eq!(value["type"], "totp");
    assert_eq!(value["last_used_at"], Value::Null);
    // Every field but `counter`, which only HOTP profiles have.
    assert_eq!(value.as_object().unwrap().len(), profile_fields().len() - 1);
    assert!(value.get("counter").is_none());
}

/// An HOTP profile expecting counter 6 next.
fn hotp_sample(account: &str) -> ProfileView {
    ProfileView {
        kind: ProfileKind::Hotp,
        counter: Some(6),
        period: None,
        ..sample(account)
    }
}

#[test]
fn hotp_profiles_show_their_counter_and_no_period() {
    let out = text(
        View::Show { fields: None },
        Reply::Profile(hotp_sample("alice")),
        true,
    );
    assert!(
        out.starts_with(
            "{\"id\":7,\"account\":\"alice\",\"uid\":1000,\"type\":\"hotp\",\"counter\":6,"
        ),
        "{out}"
    );
    let value = parse(&out);
    assert_eq!(value.as_object().unwrap().len(), profile_fields().len());
    assert_eq!(value["period"], Value::Null);
    // Asked for by name, a TOTP profile's counter is null, an HOTP profile's period too.
    let view = View::List {
        fields: Some(vec!["account", "type", "counter", "period"]),
    };
    let out = text(
        view,
        Reply::Profiles(vec![sample("bob"), hotp_sample("alice")]),
        true,
    );
    assert_eq!(
        out,
        "[{\"account\":\"bob\",\"type\":\"totp\",\"counter\":null,\"period\":30},\
         {\"account\":\"alice\",\"type\":\"hotp\",\"counter\":6,\"period\":null}]\n"
    );
    let out = text(
        View::Show { fields: None },
        Reply::Profile(hotp_sample("alice")),
        false,
    );
    assert!(
        out.contains("\ntype:                      hotp\ncounter:                   6\n"),
        "{out}"
    );
    assert!(out.contains("\nperiod:                    -\n"), "{out}");
    let totp = text(
        View::Show { fields: None },
        Reply::Profile(sample("bob")),
        false,
    );
    assert!(!totp.contains("counter"), "{totp}");
    // Enrolling one says so instead of a period.
    let reply = EnrollReply {
        profile: hotp_sample("alice"),
        ..enrolled()
    };
    let out = text(View::Enroll { own: true }, Reply::Enrolled(reply), false);
    assert!(
        out.contains("Settings:  SHA1, 6 digits, HOTP, next counter 6\n"),
        "{out}"
    );
}

#[test]
fn fields_filter_and_order_json() {
    let out = text(
        View::Show {
            fields: Some(vec!["uid", "account", "can"]),
        },
        Reply::Profile(sample("alice")),
        true,
    );
    assert_eq!(
        out,
        "{\"uid\":1000,\"account\":\"alice\",\"can\":[\"show\",\"verify\"]}\n"
    );
    let out = text(
        View::List {
            fields: Some(vec!["account", "locked_until"]),
        },
        Reply::Profiles(vec![sample("alice"), sample("bob")]),
        true,
    );
    assert_eq!(
        out,
        "[{\"account\":\"alice\",\"locked_until\":null},\
         {\"account\":\"bob\",\"locked_until\":null}]\n"
    );
}

#[test]
fn show_text_is_aligned() {
    let out = text(
        View::Show {
            fields: Some(vec![
                "account",
                "last_used_at",
                "can",
                "emergency_codes_remaining",
            ]),
        },
        Reply::Profile(sample("alice")),
        false,
    );
    assert_eq!(
        out,
        "account:                   alice\n\
         last_used_at:              -\n\
         can:                       show,verify\n\
         emergency_codes_remaining: 10\n"
    );
}

#[test]
fn list_table_is_aligned() {
    let mut long = sample("maximilian");
    long.uid = 1_000_001;
    long.comment = None;
    long.locked_until = Some("2024-01-01T00:15:00Z".into());
    long.failed_attempts = 5;
    let out = text(
        View::List { fields: None },
        Reply::Profiles(vec![sample("al"), long]),
        false,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        "account     uid      verified  enabled  algorithm  digits  period  \
         failed_attempts  locked_until         comment"
    );
    assert_eq!(
        lines[1],
        "al          1000     true      true     SHA1       6       30      \
         0                -                    phone"
    );
    assert_eq!(
        lines[2],
        "maximilian  1000001  true      true     SHA1       6       30      \
         5                2024-01-01 00:15:00  -"
    );
    let column = lines[0].find("comment").unwrap();
    assert_eq!(lines[1].find("phone"), Some(column));
}

#[test]
fn human_times_are_local_json_times_are_utc() {
    let mut profile = sample("alice");
    profile.last_used_at = Some("2024-01-01T23:30:00Z".into());
    let view = View::Show {
        fields: Some(vec!["created_at", "last_used_at", "verified_at"]),
    };
    let plus_two = Human {
        zone: Zone::Fixed(chrono::FixedOffset::east_opt(7200).unwrap()),
        ..plain()
    };
    let out = render(&view, Reply::Profile(profile.clone()), false, &plus_two).unwrap();
    assert_eq!(
        out.as_str(),
        "created_at:   2024-01-01 02:00:00\n\
         last_used_at: 2024-01-02 01:30:00\n\
         verified_at:  2024-01-01 02:01:00\n"
    );
    let out = render(&view, Reply::Profile(profile), true, &plus_two).unwrap();
    assert_eq!(
        out.as_str(),
        "{\"created_at\":\"2024-01-01T00:00:00Z\",\"last_used_at\":\"2024-01-01T23:30:00Z\",\
         \"verified_at\":\"2024-01-01T00:01:00Z\"}\n"
    );
}

#[test]
fn colour_keeps_tables_aligned() {
    let mut disabled = sample("bob");
    disabled.enabled = false;
    disabled.verified = false;
    let coloured = Human {
        colour: true,
        ..plain()
    };
    let view = View::List {
        fields: Some(vec!["account", "verified", "enabled", "uid"]),
    };
    let reply = || Reply::Profiles(vec![sample("alice"), disabled.clone()]);
    let out = render(&view, reply(), false, &coloured).unwrap();
    assert!(out.contains("\u{1b}[32mtrue\u{1b}[0m"), "{out:?}");
    assert!(out.contains("\u{1b}[31mfalse\u{1b}[0m"), "{out:?}");
    let stripped = out
        .replace("\u{1b}[32m", "")
        .replace("\u{1b}[33m", "")
        .replace("\u{1b}[31m", "")
        .replace("\u{1b}[0m", "");
    assert_eq!(stripped, text(view.clone(), reply(), false));
    // No colour off a terminal, and never in JSON.
    assert!(!text(view.clone(), reply(), false).contains('\u{1b}'));
    let json = render(&view, reply(), true, &coloured).unwrap();
    assert!(!json.contains('\u{1b}'));
}

fn entry(time: &str, result: &str, caller_uid: u32) -> AuditEntry {
    AuditEntry {
        time: time.into(),
        host: Some("web1".into()),
        account: "alice".into(),
        op: "authenticate".into(),
        result: pam_totp_proto::AuditResult::parse(result),
        service: Some("sshd".into()),
        rhost: Some("192.0.2.7".into()),
        tty: None,
        caller_uid,
    }
}

#[test]
fn log_table_and_json() {
    let entries = vec![
        entry("2026-11-22T10:00:05Z", "wrong_code", 0),
        entry("2026-11-22T09:59:00Z", "success", 1001),
    ];
    fn names(uid: u32) -> Option<String> {
        (uid == 0).then(|| "root".to_owned())
    }
    let human = Human {
        user_name: &names,
        ..plain()
    };
    let out = render(
        &View::Log,
        Reply::Log(LogPage {
            entries: entries.clone(),
            next: None,
        }),
        false,
        &human,
    )
    .unwrap();
    assert_eq!(
        out.as_str(),
        "time                 host  account  op            service  rhost      tty  caller  result\n\
         2026-11-22 10:00:05  web1  alice    authenticate  sshd     192.0.2.7  -    root    wrong_code\n\
         2026-11-22 09:59:00  web1  alice    authenticate  sshd     192.0.2.7  -    1001    success\n"
    );
    let coloured = Human {
        colour: true,
        ..human
    };
    let out = render(
        &View::Log,
        Reply::Log(LogPage {
            entries: entries.clone(),
            next: None,
        }),
        false,
        &coloured,
    )
    .unwrap();
    assert!(out.contains("\u{1b}[31mwrong_code\u{1b}[0m"));
    assert!(out.contains("\u{1b}[32msuccess\u{1b}[0m"));
    let out = text(
        View::Log,
        Reply::Log(LogPage {
            entries,
            next: None,
        }),
        true,
    );
    let value = parse(&out);
    assert_eq!(value[0]["time"], "2026-11-22T10:00:05Z");
    assert_eq!(value[0]["caller_uid"], 0);
    assert_eq!(value[0]["tty"], Value::Null);
    let mut keys: Vec<&String> = value[0].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "account",
            "caller_uid",
            "host",
            "op",
            "result",
            "rhost",
            "service",
            "time",
            "tty"
        ]
    );
    assert_eq!(
        text(View::Log, Reply::Log(LogPage::default()), false),
        "No entries.\n"
    );
    assert_eq!(
        text(View::Log, Reply::Log(LogPage::default()), true),
        "[]\n"
    );
}

#[test]
fn log_never_prints_control_characters() {
    let mut evil = entry("2026-11-22T10:00:05Z", "success", 0);
    evil.rhost = Some("\u{1b}[2Jhost\n".into());
    let page = LogPage {
        entries: vec![evil],
        next: None,
    };
    let out = text(View::Log, Reply::Log(page), false);
    assert!(!out.contains('\u{1b}'));
    assert_eq!(out.lines().count(), 2);
}

#[test]
fn status_text_and_json() {
    let mut status = StatusReply {
        version: "0.1.0".into(),
        uptime_seconds: 3725,
        socket: "/run/pam-totp/agent.sock".into(),
        database: "/var/lib/pam-totp/profiles.sqlite3".into(),
        store: "sqlite".into(),
        profiles: Some(pam_totp_proto::ProfileCounts {
            pending: 1,
            active: 3,
            disabled: 0,
            locked: 2,
            clock_ahead: 0,
        }),
        last_hour: Some(pam_totp_proto::RecentAttempts {
            logins: 1,
            failures: 4,
        }),
    };
    assert_eq!(
        text(View::Status, Reply::Status(status.clone()), false),
        "version:   0.1.0\n\
         uptime:    1h 2m 5s\n\
         socket:    /run/pam-totp/agent.sock\n\
         database:  /var/lib/pam-totp/profiles.sqlite3\n\
         store:     sqlite\n\
         profiles:  1 pending, 3 active, 0 disabled, 2 locked\n\
         last hour: 1 login, 4 failures\n"
    );
    let value = parse(&text(View::Status, Reply::Status(status.clone()), true));
    assert_eq!(value["profiles"]["locked"], 2);
    assert_eq!(value["last_hour"]["failures"], 4);
    assert_eq!(value["uptime_seconds"], 3725);
    status.profiles = None;
    status.last_hour = None;
    let out = text(View::Status, Reply::Status(status.clone()), false);
    assert!(
        !out.contains("profiles:") && !out.contains("last hour"),
        "{out}"
    );
    let value = parse(&text(View::Status, Reply::Status(status), true));
    assert_eq!(value["profiles"], Value::Null);
}

#[test]
fn list_text_with_fields_and_empty() {
    let out = text(
        View::List {
            fields: Some(vec!["uid", "account"]),
        },
        Reply::Profiles(vec![sample("alice")]),
        false,
    );
    assert_eq!(out, "uid   account\n1000  alice\n");
    let out = text(View::List { fields: None }, Reply::Profiles(vec![]), false);
    assert_eq!(out, "No profiles.\n");
    let out = text(View::List { fields: None }, Reply::Profiles(vec![]), true);
    assert_eq!(out, "[]\n");
}

#[test]
fn control_characters_never_reach_the_terminal() {
    let mut evil = sample("alice");
    evil.comment = Some("\u{1b}[2Jgotcha\n".into());
    let out = text(
        View::List { fields: None },
        Reply::Profiles(vec![evil]),
        false,
    );
    assert!(!out.contains('\u{1b}'));
    assert_eq!(out.lines().count(), 2);
}

fn enrolled() -> EnrollReply {
    EnrollReply {
        secret: SecretString::from("JBSWY3DPEHPK3PXP"),
        otpauth_uri: SecretString::from(
            "otpauth://totp/host1:alice?secret=JBSWY3DPEHPK3PXP&issuer=host1",
        ),
        emergency_codes: vec![
            SecretString::from("12345678"),
            SecretString::from("87654321"),
        ],
        profile: sample("alice"),
    }
}

#[test]
fn enroll_json_shape() {
    let out = text(
        View::Enroll { own: true },
        Reply::Enrolled(enrolled()),
        true,
    );
    assert!(out.starts_with(
        "{\"secret\":\"JBSWY3DPEHPK3PXP\",\"otpauth_uri\":\"otpauth://totp/host1:alice?"
    ));
    let value = parse(&out);
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4);
    assert_eq!(value["emergency_codes"][1], "87654321");
    assert_eq!(value["profile"]["account"], "alice");
}

#[test]
fn enroll_text_shows_the_qr_only_on_a_terminal() {
    let off = render(
        &View::Enroll { own: true },
        Reply::Enrolled(enrolled()),
        false,
        &plain(),
    )
    .unwrap();
    assert!(off.contains("Secret:    JBSWY3DPEHPK3PXP\n"));
    assert!(off.contains("  12345678\n"));
    assert!(off.contains("pam-totp verify CODE"));
    assert!(!off.contains('\u{2588}'));
    let tty = render(
        &View::Enroll { own: false },
        Reply::Enrolled(enrolled()),
        false,
        &Human {
            terminal: true,
            ..plain()
        },
    )
    .unwrap();
    assert!(tty.contains('\u{2588}'));
    assert!(tty.contains("pam-totp verify alice CODE"));
}

#[test]
fn simple_replies() {
    let out = text(View::Verify, Reply::Profile(sample("alice")), false);
    assert_eq!(out, "Code accepted; profile for alice is active.\n");
    let out = text(
        View::Remove,
        Reply::Removed {
            account: "alice".into(),
        },
        true,
    );
    assert_eq!(out, "{\"removed\":\"alice\"}\n");
    let out = text(
        View::Remove,
        Reply::Removed {
            account: "alice".into(),
        },
        false,
    );
    assert_eq!(out, "Profile for alice removed.\n");
    let out = text(View::Disable, Reply::Profile(sample("bob")), false);
    assert_eq!(out, "Profile for bob disabled.\n");
    let out = text(View::Unlock, Reply::Profile(sample("bob")), true);
    assert_eq!(parse(&out)["account"], "bob");
    let codes = CodesReply {
        emergency_codes: vec![SecretString::from("11112222")],
        profile: sample("bob"),
    };
    let out = text(View::Codes, Reply::Codes(codes.clone()), true);
    let value = parse(&out);
    assert_eq!(value["emergency_codes"], serde_json::json!(["11112222"]));
    assert_eq!(value["profile"]["account"], "bob");
    assert!(out.starts_with("{\"emergency_codes\":"));
    let out = text(View::Codes, Reply::Codes(codes), false);
    assert!(out.contains("  11112222\n"));
}

#[test]
fn a_mismatched_reply_is_internal() {
    let error = render(
        &View::Show { fields: None },
        Reply::Removed {
            account: "x".into(),
        },
        true,
        &plain(),
    )
    .err()
    .unwrap();
    assert_eq!(error.code, ErrorCode::Internal);
}

#[test]
fn error_json_shape() {
    let error = ApiError::not_found("no profile for alice");
    assert_eq!(
        error_json(&error),
        "{\"error\":{\"code\":\"not_found\",\"message\":\"no profile for alice\",\"target\":null}}\n"
    );
    let error = ApiError::rate_limited(30);
    let value = parse(&error_json(&error));
    let inner = value["error"].as_object().unwrap();
    assert_eq!(inner.len(), 3);
    assert_eq!(inner["code"], "rate_limited");
    let error = ApiError::invalid("digits", "digits must be 6 to 8\nreally");
    let value = parse(&error_json(&error));
    assert_eq!(value["error"]["target"], "digits");
    assert!(!error_message(&error).contains('\n'));
}
