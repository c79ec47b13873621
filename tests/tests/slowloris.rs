//! A local account holding hundreds of idle connections to the agent (a slowloris, run under
//! its own uid) cannot shut out root's logins, the CLI, or other accounts: the agent caps
//! connections per non-root uid, closing the extra ones at once, and closes idle connections
//! after its per-connection deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::faults::{field, holder_bin, Background};
use common::*;

use std::time::Duration;

/// Connections the attacker tries to hold, and for how long (seconds).
const HELD: u64 = 300;
const SECONDS: u64 = 25;

#[test]
fn held_connections_of_one_user_shut_out_no_one_else() {
    setup();
    let agent = Agent::start();
    let attacker = TestUser::new();
    let user = TestUser::new();
    let other = TestUser::new();
    let service = PamService::totp(&agent.socket, "");
    let (enrolled, _) = agent.enroll_active(&user.name, &[]);
    let (other_enrolled, _) = agent.enroll_active(&other.name, &[]);

    let mut command = as_user(&attacker.name, &holder_bin());
    command
        .arg(&agent.socket)
        .arg(HELD.to_string())
        .arg(SECONDS.to_string());
    let mut holder = Background::spawn(&mut command);
    let ready = holder
        .wait_line("ready", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{} never said it was ready", holder.command));
    eprintln!("holder: {ready}");

    // Over more than two of the agent's idle deadlines, while the connections are held:
    // root's logins, root's CLI, another account's CLI and its own login all get through.
    for round in 0..4 {
        pamtester(&service, &user.name, &enrolled.emergency_codes[round]).assert_success();
        agent.cli(&["show", &user.name]).ok();
        agent.cli_as(&other.name, &["show"]).ok();
        if round == 2 {
            let now = wait_for_fresh_step(30);
            pamtester_as(
                &other.name,
                &service,
                &other.name,
                &other_enrolled.code(now),
            )
            .assert_success();
        }
        std::thread::sleep(Duration::from_secs(3));
    }

    let summary = holder
        .wait_line("summary", Duration::from_secs(SECONDS + 30))
        .unwrap_or_else(|| panic!("{} printed no summary", holder.command));
    assert_eq!(holder.wait(Duration::from_secs(10)), Some(0), "{summary}");
    eprintln!("holder: {summary}");
    // Extra connections were closed at once; not all of them were held.
    assert!(
        field(&summary, "closed_at_once") > 0,
        "the agent never refused a connection of the attacker: {summary}"
    );
    assert!(
        field(&summary, "held_max") < HELD,
        "the attacker held every connection it asked for: {summary}"
    );
    // Held connections were closed after the deadline, not kept for ever.
    let idle_closed = field(&summary, "idle_closed");
    let idle_max_ms = field(&summary, "idle_max_ms");
    assert!(
        idle_closed > 0 && idle_max_ms <= 30_000,
        "idle connections were not closed by a deadline: {summary}"
    );

    // The agent is still well.
    agent.cli(&["list"]).ok();
}
