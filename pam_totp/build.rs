//! Link options for `pam_totp.so` only (not for the crate's tests): what a host program pays to
//! dlopen the module, at every pam_start of sshd, sudo or su, is mostly the dynamic loader's
//! relocation work and the libraries the module pulls in.
//!
//! - `-z pack-relative-relocs` (DT_RELR, glibc 2.36+): the module's ~1,200 relative
//!   relocations become a compact bitmap the loader applies in a tight loop. The module then
//!   needs the version GLIBC_ABI_DT_RELR, so an older glibc refuses to load it (a clear
//!   dlopen error) rather than running it unrelocated; and it is only asked for when the build
//!   host's glibc has that version, as a distribution package is built for its own release.
//! - The unwinder (`_Unwind_*`, needed so a panic is caught at the FFI edge instead of
//!   aborting the host) is linked in from libgcc_eh.a instead of loading libgcc_s.so.1: C hosts
//!   such as sshd and su do not have libgcc_s loaded, so each dlopen of the module would load,
//!   relocate and unload it (about 60 symbol lookups). rustc names `-lgcc_s` itself, so a
//!   linker script of that name, found first on the cdylib's search path, hands the linker
//!   the static archive instead (what `gcc -shared -static-libgcc` does for C++ plugins). The
//!   unwinder finds the module's frames through dl_iterate_phdr and the module's
//!   .eh_frame_hdr, as the shared one does (GCC 12's, built against glibc 2.35+, asks
//!   `_dl_find_object` first, so the module then needs GLIBC_2.35). Without a libgcc_eh.a the
//!   module links libgcc_s as before.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    if glibc_has_dt_relr() {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    } else {
        println!("cargo:warning=glibc before 2.36: pam_totp.so keeps RELA relative relocations");
    }
    match static_unwinder() {
        Some(archive) => {
            let Some(dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
                return;
            };
            let script = dir.join("static-unwind");
            let written = std::fs::create_dir_all(&script).and_then(|()| {
                std::fs::write(
                    script.join("libgcc_s.so"),
                    format!("INPUT({})\n", archive.display()),
                )
            });
            match written {
                Ok(()) => println!("cargo:rustc-cdylib-link-arg=-L{}", script.display()),
                Err(e) => println!(
                    "cargo:warning=linking libgcc_s.so.1 (cannot write {}: {e})",
                    script.display()
                ),
            }
        }
        None => println!("cargo:warning=no libgcc_eh.a found: pam_totp.so links libgcc_s.so.1"),
    }
}

/// The C compiler's static unwinder archive, when it has one.
fn static_unwinder() -> Option<PathBuf> {
    compiler_file("libgcc_eh.a")
}

/// Whether the glibc the module links against defines the version GLIBC_ABI_DT_RELR (2.36+).
fn glibc_has_dt_relr() -> bool {
    compiler_file("libc.so.6")
        .and_then(|libc| std::fs::read(libc).ok())
        .is_some_and(|bytes| {
            let needle = b"GLIBC_ABI_DT_RELR";
            bytes.windows(needle.len()).any(|window| window == needle)
        })
}

/// A file the C compiler links with (`cc -print-file-name`), when it has one.
fn compiler_file(name: &str) -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let out = Command::new(cc)
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && path.is_absolute() && Path::new(&path).is_file()).then_some(path)
}
