//! Answering a whole request. A worker never waits on a client: it answers only a request
//! read complete, and a reply the socket cannot take at once goes back to epoll to finish. So
//! a peer that trickles bytes or never reads holds a connection slot (capped per uid), never
//! a worker.

use super::frames::{Progress, ReplyWriter, RequestReader};
use super::slots::Slot;
use crate::authz::Peer;
use crate::service::Service;
use pam_totp_proto::{ApiError, RequestEnvelope, Response, PROTOCOL_VERSION};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// An accepted connection: its peer, its deadline (read the request, answer it) and its
/// place among the open connections, given back when this is dropped (closing the socket).
pub(super) struct Connection {
    pub(super) stream: UnixStream,
    pub(super) peer: Peer,
    pub(super) deadline: Instant,
    pub(super) _slot: Slot,
}

/// Answers a whole request and sends the reply as far as the socket takes it now; returns
/// the connection and the rest of its reply when the socket could not take it all.
pub(super) fn serve(
    connection: Connection,
    request: RequestReader,
    service: &Service,
) -> Option<(Connection, ReplyWriter)> {
    if Instant::now() >= connection.deadline {
        // Its client has given up (the module waits 3 s): deciding now would change state
        // nobody hears about.
        service.log_dropped(connection.peer, "timed out waiting for a worker");
        return None;
    }
    let response = answer(service, connection.peer, request.frame());
    drop(request);
    let mut reply = match ReplyWriter::encode(&response) {
        Ok(reply) => reply,
        Err(e) => {
            log::error!("cannot encode a reply: {e}");
            return None;
        }
    };
    drop(response);
    match reply.write_to(&connection.stream) {
        Ok(Progress::Done) => None,
        Ok(Progress::Waiting) => Some((connection, reply)),
        // Within the caller's budget: a user hanging up before every reply cannot flood the log.
        Err(e) => {
            service.log_dropped(connection.peer, &format!("cannot send reply: {e}"));
            None
        }
    }
}

fn answer(service: &Service, peer: Peer, frame: &[u8]) -> Response {
    let envelope: RequestEnvelope = match serde_json::from_slice(frame) {
        Ok(envelope) => envelope,
        // Only the position: serde's message can quote the input, which may hold a code.
        Err(e) => {
            return Response::Err(ApiError::invalid(
                "request",
                format!(
                    "malformed request ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            ))
        }
    };
    if envelope.v != PROTOCOL_VERSION {
        return Response::Err(ApiError::invalid(
            "v",
            format!(
                "protocol version {} is not supported (this agent speaks {PROTOCOL_VERSION})",
                envelope.v
            ),
        ));
    }
    // The service logs the request (one line) as it answers it.
    service.handle(peer, envelope.request).into()
}
