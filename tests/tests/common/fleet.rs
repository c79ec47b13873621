//! A fleet on one machine: a throwaway PostgreSQL cluster (`pam-totp-testpg`: initdb, pg_ctl,
//! a password role) and agents standing for hosts, each with its own socket, host name, and
//! copies of the fleet key and the role's password in root-only files, as the README's fleet
//! recipe sets them up.

use super::*;
pub use pam_totp_testpg::{Cluster, Options};

pub struct Fleet {
    pub cluster: Cluster,
    /// The fleet key every agent gets (32 random bytes).
    pub key: [u8; 32],
}

impl Fleet {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Self {
        setup();
        let cluster = Cluster::start(options).expect("cannot start a PostgreSQL cluster");
        let mut key = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut key))
            .expect("cannot read /dev/urandom");
        Self { cluster, key }
    }

    /// An agent named `host` on the cluster's URL, with [`DEFAULT_CONFIG`].
    pub fn agent(&self, host: &str) -> Agent {
        self.agent_on(host, &self.cluster.url(), DEFAULT_CONFIG)
    }

    /// An agent named `host` on `url`, with `config` plus the key and password files.
    pub fn agent_on(&self, host: &str, url: &str, config: &str) -> Agent {
        Agent::with_store(config, url, host, |state| self.secret_files(state))
    }

    /// Writes the key and password files (0600) into `dir`; returns their config lines.
    pub fn secret_files(&self, dir: &Path) -> String {
        let key = dir.join("fleet.key");
        let password = dir.join("store-password");
        for (path, bytes) in [
            (&key, &self.key[..]),
            (
                &password,
                format!("{}\n", self.cluster.password()).as_bytes(),
            ),
        ] {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut file| file.write_all(bytes))
                .expect("cannot write a fleet secret file");
        }
        format!(
            "store_key_file = {:?}\nstore_password_file = {:?}\n",
            key.display().to_string(),
            password.display().to_string()
        )
    }
}
