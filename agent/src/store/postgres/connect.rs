//! From the store URL to a pool of connections: libpq's URL syntax through `postgres`'s own
//! parser, plus the TLS modes it lacks (verify-ca, verify-full with `sslrootcert`), and
//! timeouts that keep every wait below the PAM module's deadline.

use crate::store::StoreError;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres::config::SslMode;
use postgres_openssl::MakeTlsConnector;
use std::time::Duration;
use zeroize::Zeroizing;

/// Connections each agent keeps at most (logins in flight at once; more wait their turn).
pub(super) const POOL_SIZE: u32 = 16;
/// Waiting for a connection (or for a down server to answer) gives up after this, so a login
/// fails closed well inside the module's 3 s default.
pub(super) const CHECKOUT_TIMEOUT: Duration = Duration::from_millis(1500);
/// A TCP connect to one host, unless the URL sets `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Server-side bounds on one statement, a lock wait, and a transaction left open by a stuck
/// agent (which would otherwise hold its account's lock).
const SESSION_OPTIONS: &str = "-c statement_timeout=2000 -c lock_timeout=1500 \
                               -c idle_in_transaction_session_timeout=5000";

/// How the connection is protected: libpq's `sslmode` values the agent supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    /// Encrypted, the server unauthenticated.
    Require,
    /// Encrypted, the server's certificate checked against the CA.
    VerifyCa,
    /// As verify-ca, and the certificate must name the host connected to (the default).
    VerifyFull,
}

/// A parsed store URL: what `postgres` connects with, and how TLS is checked.
pub struct StoreUrl {
    pub(super) config: postgres::Config,
    pub(super) tls: TlsMode,
    root_cert: Option<String>,
}

impl std::fmt::Debug for StoreUrl {
    /// Never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreUrl")
            .field("hosts", &self.config.get_hosts())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

fn invalid(message: String) -> StoreError {
    StoreError::Invalid(format!("store: {message}"))
}

/// `%XX` escapes in a URL query value.
fn percent_decode(value: &str) -> Result<String, StoreError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = value
                .get(index + 1..index + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("bad %-escape in {value:?}")))?;
            out.push(hex);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("{value:?} is not UTF-8")))
}

impl StoreUrl {
    /// Parses `postgres://USER[:PASSWORD]@HOST[:PORT][,HOST2[:PORT]...]/DB?PARAMS`.
    /// `password` (from `store_password_file`) wins over one in the URL.
    pub fn parse(url: &str, password: Option<&Zeroizing<String>>) -> Result<Self, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "the URL must start with postgres:// (postgres://USER@HOST[:PORT]/DB)".into(),
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut tls = TlsMode::VerifyFull;
        let mut root_cert = None;
        let mut passed_on = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    tls = match value {
                        "disable" => TlsMode::Disable,
                        "require" => TlsMode::Require,
                        "verify-ca" => TlsMode::VerifyCa,
                        "verify-full" => TlsMode::VerifyFull,
                        other => {
                            return Err(invalid(format!(
                                "sslmode {other:?} is not supported: use disable, require, \
                                 verify-ca or verify-full"
                            )))
                        }
                    }
                }
                "sslrootcert" => root_cert = Some(percent_decode(value)?),
                _ => passed_on.push(pair),
            }
        }
        let rest = if passed_on.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", passed_on.join("&"))
        };
        // `postgres`'s errors quote the offending option, never the password.
        let mut config: postgres::Config =
            rest.parse().map_err(|e| invalid(format!("bad URL: {e}")))?;
        if config.get_user().is_none() {
            return Err(invalid(
                "the URL names no user (postgres://USER@HOST/DB)".into(),
            ));
        }
        if config.get_dbname().is_none() {
            return Err(invalid(
                "the URL names no database (postgres://USER@HOST/DB)".into(),
            ));
        }
        if let Some(password) = password {
            config.password(password.as_bytes());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        // A peer that stops answering (a dead host, a cut link) is noticed in seconds, not
        // after the kernel's 15-minute retransmission limit.
        config.tcp_user_timeout(Duration::from_secs(2));
        config.keepalives_idle(Duration::from_secs(10));
        config.options(SESSION_OPTIONS);
        config.application_name("pam-totp-agent");
        config.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            _ => SslMode::Require,
        });
        Ok(Self {
            config,
            tls,
            root_cert,
        })
    }

    /// Whether a password is set (from the URL or the password file).
    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    /// Where the store is, for `status` and logs: `postgres://USER@HOST:PORT,.../DB` (never
    /// the password).
    pub fn location(&self) -> String {
        use postgres::config::Host;
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .zip(
                self.config
                    .get_ports()
                    .iter()
                    .chain(std::iter::repeat(&5432)),
            )
            .map(|(host, port)| match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        format!(
            "postgres://{}@{}/{}",
            self.config.get_user().unwrap_or_default(),
            hosts.join(","),
            self.config.get_dbname().unwrap_or_default()
        )
    }

    /// The OpenSSL connector for this URL's mode.
    pub(super) fn connector(&self) -> Result<MakeTlsConnector, StoreError> {
        let tls_error = |e: openssl::error::ErrorStack| invalid(format!("TLS setup: {e}"));
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(tls_error)?;
        match self.tls {
            TlsMode::Disable | TlsMode::Require => builder.set_verify(SslVerifyMode::NONE),
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                builder.set_verify(SslVerifyMode::PEER);
                match &self.root_cert {
                    Some(path) => builder
                        .set_ca_file(path)
                        .map_err(|e| invalid(format!("cannot load sslrootcert {path}: {e}")))?,
                    None => builder.set_default_verify_paths().map_err(tls_error)?,
                }
            }
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        let check_name = self.tls == TlsMode::VerifyFull;
        connector.set_callback(move |config, _| {
            config.set_verify_hostname(check_name);
            Ok(())
        });
        Ok(connector)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn tls_modes_and_root_cert_are_taken_out_of_the_url() {
        let url = StoreUrl::parse(
            "postgres://totp@db1:5433,db2/fleet?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem\
             &target_session_attrs=read-write&connect_timeout=3",
            None,
        )
        .unwrap();
        assert_eq!(url.tls, TlsMode::VerifyCa);
        assert_eq!(url.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(url.config.get_hosts().len(), 2);
        assert_eq!(url.config.get_ports(), &[5433, 5432]);
        assert_eq!(
            url.config.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        assert_eq!(url.config.get_dbname(), Some("fleet"));
    }

    #[test]
    fn the_default_is_verify_full_and_the_file_password_wins() {
        let password = Zeroizing::new("from-file".to_owned());
        let url = StoreUrl::parse("postgres://totp:inurl@db/fleet", Some(&password)).unwrap();
        assert_eq!(url.tls, TlsMode::VerifyFull);
        assert_eq!(url.config.get_password(), Some("from-file".as_bytes()));
        assert_eq!(
            url.config.get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
        assert!(!format!("{url:?}").contains("inurl"));
    }

    #[test]
    fn bad_urls_are_refused_by_name() {
        for (url, says) in [
            ("mysql://x@y/z", "postgres://"),
            ("postgres://db/fleet", "no user"),
            ("postgres://u@db", "no database"),
            ("postgres://u@db/f?sslmode=prefer", "sslmode"),
            ("postgres://u@db/f?sslrootcert=%zz", "escape"),
            ("postgres://u@db/f?bogus=1", "bad URL"),
        ] {
            let Err(StoreError::Invalid(message)) = StoreUrl::parse(url, None) else {
                panic!("{url} was accepted");
            };
            assert!(message.contains(says), "{url}: {message}");
        }
    }
}
