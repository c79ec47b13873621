//! The bundled SQLite must sync with fdatasync(2), as distributions' SQLite builds do
//! (configure defines HAVE_FDATASYNC); built bare it falls back to fsync(2), which also commits
//! the inode's timestamps to the filesystem journal at every login. The flag comes from
//! `.cargo/config.toml` (`LIBSQLITE3_FLAGS`); this fails if a build loses it.

#![allow(clippy::expect_used)]

use std::process::Command;

#[test]
fn the_agent_syncs_its_database_with_fdatasync() {
    let binary = env!("CARGO_BIN_EXE_pam-totp-agent");
    let output = Command::new("nm")
        .args(["--dynamic", "--undefined-only", binary])
        .output()
        .expect("nm (binutils) runs");
    assert!(output.status.success(), "nm failed on {binary}");
    let symbols = String::from_utf8_lossy(&output.stdout);
    let imports = |name: &str| {
        symbols.lines().any(|line| {
            line.split_whitespace()
                .last()
                .and_then(|s| s.split('@').next())
                == Some(name)
        })
    };
    assert!(
        imports("fdatasync"),
        "the agent does not call fdatasync:\n{symbols}"
    );
    // Nothing else in the agent syncs a whole file, so fsync would be SQLite's fallback.
    assert!(
        !imports("fsync"),
        "the agent calls fsync (SQLite built without HAVE_FDATASYNC?)"
    );
}
