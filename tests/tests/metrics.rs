//! `pam-totp metrics`: text that a real parser (Python's prometheus_client, Debian's
//! python3-prometheus-client) reads, whose counters move as logins happen; administrators
//! only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;

/// Parses OpenMetrics text with prometheus_client and prints every sample as JSON.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        samples.append([sample.name, sample.labels, sample.value])
print(json.dumps(samples))
"#;

/// The samples of `pam-totp metrics`, as the parser read them.
fn scrape(agent: &Agent) -> Vec<(String, Value, f64)> {
    let mut cli = Command::new(cli_bin());
    cli.arg("--socket").arg(&agent.socket).arg("metrics");
    let text = run(&mut cli, None, PROCESS_LIMIT);
    assert_eq!(text.code, 0, "pam-totp metrics failed: {}", text.output());
    assert!(text.stdout.ends_with("# EOF\n"), "{}", text.stdout);
    // Debian's python3, which python3-prometheus-client is installed for (not another
    // python3 that may come first on PATH).
    let python = std::path::Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "no /usr/bin/python3 (scripts/install-test-deps.sh)"
    );
    let mut parser = Command::new(python);
    parser.args(["-c", PARSE]);
    let parsed = run(&mut parser, Some(&text.stdout), PROCESS_LIMIT);
    assert_eq!(
        parsed.code,
        0,
        "the exposition does not parse: {}\n{}",
        parsed.output(),
        text.stdout
    );
    let samples: Vec<Value> = serde_json::from_str(&parsed.stdout).unwrap();
    samples
        .into_iter()
        .map(|s| {
            (
                s[0].as_str().unwrap().to_owned(),
                s[1].clone(),
                s[2].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The value of `name` with exactly `labels` (0 when absent: a counter not yet touched).
fn value(samples: &[(String, Value, f64)], name: &str, labels: Value) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && *l == labels)
        .map_or(0.0, |(_, _, v)| *v)
}

#[test]
fn the_exposition_parses_and_counts_logins() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    let name = user.name.as_str();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, now) = agent.enroll_active(name, &[]);

    let before = scrape(&agent);
    assert_eq!(
        value(
            &before,
            "pam_totp_profiles",
            serde_json::json!({"state": "active"})
        ),
        1.0
    );
    assert_eq!(
        value(
            &before,
            "pam_totp_store_up",
            serde_json::json!({"kind": "sqlite"})
        ),
        1.0
    );
    let success = serde_json::json!({"result": "success", "method": "totp"});
    let wrong = serde_json::json!({"result": "wrong_code", "method": "none"});

    pamtester(&service, name, &enrolled.code(now)).assert_success();
    let wrong_code = enrolled.wrong_codes(now, 1).remove(0);
    pamtester(&service, name, &wrong_code).assert_failure(PAM_AUTH_ERR_TEXT);

    let after = scrape(&agent);
    let moved = |name: &str, labels: &Value| {
        value(&after, name, labels.clone()) - value(&before, name, labels.clone())
    };
    assert_eq!(moved("pam_totp_login_attempts_total", &success), 1.0);
    assert_eq!(moved("pam_totp_login_attempts_total", &wrong), 1.0);
    assert_eq!(
        moved(
            "pam_totp_login_attempt_seconds_count",
            &serde_json::json!({})
        ),
        2.0
    );
    assert!(moved("pam_totp_commit_batch_jobs_count", &serde_json::json!({})) >= 2.0);
    assert!(moved("pam_totp_commit_seconds_count", &serde_json::json!({})) >= 2.0);
    assert_eq!(
        value(&after, "pam_totp_store_errors_total", serde_json::json!({})),
        0.0
    );
}

#[test]
fn only_administrators_read_the_metrics() {
    setup();
    let agent = Agent::start();
    let user = TestUser::new();
    agent
        .cli_as(&user.name, &["metrics"])
        .err(3, "permission_denied");
}
