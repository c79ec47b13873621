//! The fleet layer's PostgreSQL: a throwaway cluster (`pam-totp-testpg`: initdb + pg_ctl as
//! the `postgres` user on a free loopback port, `fsync` on, `synchronous_commit` on), the
//! fleet key and the role's password in root-only files for the agents, seeding through
//! `PgStore`, and what the server costs (CPU of the postmaster and every server process,
//! database size).

use crate::agent_proc::FleetAccess;
use pam_totp_agent::store::fleet_key::FleetKey;
use pam_totp_agent::store::postgres::StoreUrl;
use pam_totp_agent::store::{PgSettings, PgStore};
use pam_totp_testpg::{Cluster, Options};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

pub struct BenchCluster {
    cluster: Cluster,
    key: Zeroizing<[u8; 32]>,
    key_file: PathBuf,
    password_file: PathBuf,
    postmaster: u32,
}

/// Writes `bytes` to a new file of mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

impl BenchCluster {
    /// Starts a cluster whose data directory lies in `base` (the disk matters: every
    /// acknowledged login waits for PostgreSQL's WAL flush), and writes the fleet key and the
    /// password files into `secrets` (a private directory).
    pub fn start(base: &Path, secrets: &Path) -> Result<Self, String> {
        // testpg makes its directory in the temporary directory: point that at `base`. Nothing
        // else runs yet (no other thread reads the environment).
        let saved = std::env::var_os("TMPDIR");
        std::env::set_var("TMPDIR", base);
        let started = Cluster::start(Options::default());
        match saved {
            Some(value) => std::env::set_var("TMPDIR", value),
            None => std::env::remove_var("TMPDIR"),
        }
        let cluster = started.map_err(|e| format!("PostgreSQL: {e}"))?;
        let mut key = Zeroizing::new([0u8; 32]);
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(key.as_mut()))
            .map_err(|e| format!("read /dev/urandom: {e}"))?;
        let key_file = secrets.join("fleet.key");
        let password_file = secrets.join("store.password");
        write_private(&key_file, key.as_ref())?;
        write_private(
            &password_file,
            format!("{}\n", cluster.password()).as_bytes(),
        )?;
        let data = cluster
            .psql("SHOW data_directory")
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        let pid_file = Path::new(data.trim()).join("postmaster.pid");
        let postmaster = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok()))
            .ok_or_else(|| format!("no postmaster pid in {}", pid_file.display()))?;
        Ok(Self {
            cluster,
            key,
            key_file,
            password_file,
            postmaster,
        })
    }

    /// What an agent named `host` needs to use this cluster as its fleet store.
    pub fn access(&self, host: &str) -> FleetAccess {
        FleetAccess {
            url: self.cluster.url(),
            host: host.to_owned(),
            key_file: self.key_file.clone(),
            password_file: self.password_file.clone(),
        }
    }

    /// A store on the cluster with the agents' fleet key (creates the schema), for seeding.
    pub fn store(&self) -> Result<PgStore, String> {
        let password = Zeroizing::new(self.cluster.password().to_owned());
        let url = StoreUrl::parse(&self.cluster.url(), Some(&password))
            .map_err(|e| format!("store URL: {e}"))?;
        PgStore::open(PgSettings {
            url,
            key: FleetKey::from_bytes(&self.key),
            host: "pam-totp-bench-seed".into(),
            // The agents run with the default config.
            windows: pam_totp_agent::config::Config::default().windows(),
        })
        .map_err(|e| format!("open the fleet store: {e}"))
    }

    /// User + system CPU time of the postmaster and every server process it forked so far.
    pub fn server_cpu(&self) -> Duration {
        crate::procstat::tree_cpu(self.postmaster)
    }

    fn number(&self, sql: &str) -> u64 {
        self.cluster
            .psql(sql)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Bytes of the database (tables, indexes, TOAST; not the WAL).
    pub fn db_bytes(&self) -> u64 {
        self.number("SELECT pg_database_size(current_database())")
    }

    /// `server_version`, e.g. "15.14 (Debian 15.14-0+deb12u1)".
    pub fn version(&self) -> String {
        self.cluster
            .psql("SHOW server_version")
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    }
}
