//! pam-totp-agent: the only holder of TOTP and HOTP secrets. It owns the store, authorizes
//! every request from the peer's SO_PEERCRED, and decides replay, lockout and audit
//! atomically.

pub mod args;
pub mod authz;
pub mod clock;
pub mod config;
pub mod directory;
pub mod fsperm;
pub mod listener;
pub mod migrate;
pub mod secret;
pub mod server;
pub mod service;
pub mod startup;
pub mod store;
pub mod totp;
mod view;
