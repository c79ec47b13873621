//! Which store the agent opens, from its command line and config: the SQLite file of one
//! host, or a fleet store (PostgreSQL) with its password and key read from root-only files.

use crate::args::Args;
use crate::config::{check_host_name, Config};
use crate::fsperm;
use crate::store::fleet_key::FleetKey;
use crate::store::postgres::StoreUrl;
use crate::store::{PgSettings, PgStore, SqliteStore, Store};
use std::error::Error;
use std::io::Read as _;
use std::path::Path;
use zeroize::Zeroizing;

/// The store as opened, and where it is (for `status`; never a password).
pub struct Opened {
    pub store: Box<dyn Store>,
    pub location: String,
}

/// This agent's name: `--host-name`, else `host_name` in the config, else the host name.
pub fn host_name(args: &Args, config: &Config) -> Result<String, String> {
    if let Some(name) = args.host_name.as_ref().or(config.host_name.as_ref()) {
        check_host_name(name)?;
        return Ok(name.clone());
    }
    Ok(nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| check_host_name(h).is_ok())
        .unwrap_or_else(|| "localhost".into()))
}

/// The fleet store's URL, if one is chosen (`--store` wins over the config's `store`).
pub fn fleet_url<'a>(args: &'a Args, config: &'a Config) -> Option<&'a str> {
    args.store.as_deref().or(config.store.as_deref())
}

/// Reads a root-only file holding the store role's password (one line).
fn read_password(path: &Path) -> Result<Zeroizing<String>, Box<dyn Error>> {
    let mut file = fsperm::open_secret_file(path, "store password file")?;
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)
        .map_err(|e| format!("cannot read store_password_file {}: {e}", path.display()))?;
    let password = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned());
    if password.is_empty() {
        return Err(format!("store_password_file {} is empty", path.display()).into());
    }
    Ok(password)
}

/// Everything a fleet store needs, checked: the URL, the password file, the key file.
pub fn fleet_settings(
    url: &str,
    config: &Config,
    host: &str,
) -> Result<PgSettings, Box<dyn Error>> {
    let password = config
        .store_password_file
        .as_deref()
        .map(read_password)
        .transpose()?;
    let key_path = config.store_key_file.as_deref().ok_or(
        "a fleet store needs store_key_file in the config: a root-only file of 32 random bytes \
         (head -c 32 /dev/urandom), the same on every host of the fleet",
    )?;
    Ok(PgSettings {
        url: StoreUrl::parse(url, password.as_ref())?,
        key: FleetKey::load(key_path)?,
        host: host.to_owned(),
        windows: config.windows(),
    })
}

/// Warns when the command line carries the store's password: every local user sees argv.
fn warn_of_password_in_argv(args: &Args) {
    let in_argv = args
        .store
        .as_deref()
        .and_then(|url| StoreUrl::parse(url, None).ok())
        .is_some_and(|url| url.has_password());
    if in_argv {
        log::warn!(
            "the --store URL carries a password, which every local user can read in the \
             process list: put it in store_password_file instead"
        );
    }
}

/// Opens the store the agent was told to use.
pub fn open(args: &Args, config: &Config, host: &str, now: i64) -> Result<Opened, Box<dyn Error>> {
    if let Some(url) = fleet_url(args, config) {
        warn_of_password_in_argv(args);
        let settings = fleet_settings(url, config, host)?;
        let location = settings.url.location();
        let store = PgStore::open(settings)?;
        return Ok(Opened {
            store: Box::new(store),
            location,
        });
    }
    fsperm::prepare_database(&args.db)?;
    let store = SqliteStore::open(&args.db)?;
    if let Some((taken, profiles)) = store.forget_history_if_restored(now, config.windows())? {
        log::warn!(
            "{} is a restored backup (taken at Unix time {taken}): codes used since then are \
             not recorded in it, so every time step up to now + the window, and every HOTP \
             counter up to the next one + the look-ahead, is treated as used ({profiles} \
             profiles)",
            args.db.display()
        );
    }
    Ok(Opened {
        store: Box::new(store),
        location: args.db.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn password_file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join(format!("password-{mode:o}-{}", text.len()));
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn the_password_file_is_one_private_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = password_file(dir.path(), "s3cret pass\n", 0o600);
        assert_eq!(read_password(&good).unwrap().as_str(), "s3cret pass");
        let loose = password_file(dir.path(), "s3cret\n", 0o644);
        let error = read_password(&loose).unwrap_err().to_string();
        assert!(
            error.contains("store password file") && error.contains("0644"),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "{error}");
        let empty = password_file(dir.path(), "\n", 0o400);
        let error = read_password(&empty).unwrap_err().to_string();
        assert!(error.contains("empty"), "{error}");
    }

    #[test]
    fn a_fleet_store_needs_a_key_file() {
        let config = Config::default();
        let error = fleet_settings("postgres://u@db/fleet", &config, "h")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("store_key_file"), "{error}");
    }
}
