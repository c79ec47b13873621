//! Arbitrary bytes as a request frame's payload, parsed as the agent does (`answer()` in
//! agent/src/server.rs): parsing never panics, and whatever parses survives a round trip
//! unchanged (same version, operation, account and JSON).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_totp_proto::frame::{read_frame, write_frame, MAX_FRAME_LEN};
use pam_totp_proto::{validate, Request, RequestEnvelope};
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    // Any payload the frame layer can carry arrives intact.
    if !data.is_empty() && data.len() <= MAX_FRAME_LEN {
        let mut wire = Vec::new();
        assert!(write_frame(&mut wire, data).is_ok());
        let back = read_frame(&mut Cursor::new(&wire), MAX_FRAME_LEN).ok();
        assert_eq!(back.as_deref(), Some(data));
    }

    let envelope = match serde_json::from_slice::<RequestEnvelope>(data) {
        Ok(envelope) => envelope,
        Err(error) => {
            // The agent reports only the position and class of the error.
            let _ = (error.classify(), error.line(), error.column());
            return;
        }
    };

    // What the agent logs before dispatch: one line, whatever the account name holds.
    let op = envelope.request.op();
    let account = envelope
        .request
        .account()
        .map(|a| format!(" account={a:?}"));
    let line = format!("op={op}{}", account.as_deref().unwrap_or_default());
    assert!(!line.chars().any(char::is_control), "log line {line:?}");

    // The checks the agent applies before acting must not panic on anything that parsed.
    if let Some(account) = envelope.request.account() {
        let _ = validate::account(account);
    }
    match &envelope.request {
        Request::Authenticate { code, .. } | Request::Verify { code, .. } => {
            let _ = validate::code(code.expose());
        }
        Request::Enroll(enroll) => {
            let _ = validate::digits(enroll.digits);
            let _ = validate::period(enroll.period);
            if let Some(issuer) = &enroll.issuer {
                let _ = validate::issuer(issuer);
            }
            if let Some(comment) = &enroll.comment {
                let _ = validate::comment(comment);
            }
        }
        Request::SetComment { comment, .. } => {
            let _ = validate::comment(comment);
        }
        _ => {}
    }

    // Round trip: serialize, parse again, and get the same request and the same JSON.
    let json = serde_json::to_vec(&envelope).expect("a parsed request serializes");
    let again: RequestEnvelope =
        serde_json::from_slice(&json).expect("a serialized request parses");
    assert_eq!(again.v, envelope.v);
    assert_eq!(again.request.op(), envelope.request.op());
    assert_eq!(again.request.account(), envelope.request.account());
    let json_again = serde_json::to_vec(&again).expect("a parsed request serializes");
    assert_eq!(json_again, json);
});
