//! Arbitrary bytes as the agent's reply payload, handled as the PAM module's client does
//! (`Client::call`, then the module's mapping): never panics, and a reply that parses
//! survives a round trip unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_totp_proto::{validate, ApiError, Reply, Response};

fuzz_target!(|data: &[u8]| {
    let response = match serde_json::from_slice::<Response>(data) {
        Ok(response) => response,
        Err(error) => {
            // The client's "undecodable reply" message.
            let _ = format!("undecodable reply: {error}");
            return;
        }
    };

    let json = serde_json::to_vec(&response).expect("a parsed reply serializes");
    let again: Response = serde_json::from_slice(&json).expect("a serialized reply parses");
    assert_eq!(again, response);

    // The module's use of a reply (pam_totp/src/core.rs): kind, digits, error mapping.
    match Result::<Reply, ApiError>::from(response) {
        Ok(reply) => {
            let _ = reply.kind();
            if let Reply::Probe(probe) = &reply {
                if validate::digits(probe.digits).is_ok() {
                    let _ = usize::from(probe.digits);
                }
            }
        }
        Err(api) => {
            let mut reason = format!("authenticate: {}: {}", api.code, api.message);
            if let Some(seconds) = api.retry_after {
                reason.push_str(&format!(" (retry after {seconds} s)"));
            }
            let _ = (reason, api.code.exit_code(), api.to_string(), api.target);
        }
    }
});
