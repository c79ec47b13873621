#!/usr/bin/env bash
# Builds what the packages and `make install` ship: the release binaries
# (cargo build --release --workspace, which also builds the pam-totp-xtask helper), then
# into $TARGET/release/pam-totp-assets/:
#   man/         pam-totp.1 and one page per subcommand, pam-totp-agent.8 (generated from
#                the clap definitions), pam_totp.8 (packaging/man/pam_totp.8.in); each also
#                as .gz for the packages
#   completions/ bash/pam-totp, zsh/_pam-totp, fish/pam-totp.fish (clap_complete)
#   bin/         stripped copies of pam-totp-agent, pam-totp and pam_totp.so (for the rpm
#                and `make install`; cargo-deb strips by itself)
# $TARGET is CARGO_TARGET_DIR or target/. Prints the assets directory on its last line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
cargo="${CARGO:-cargo}"
target="${CARGO_TARGET_DIR:-$root/target}"
release="$target/release"
out="$release/pam-totp-assets"

"$cargo" build --release --workspace >&2
for f in pam-totp-agent pam-totp libpam_totp.so pam-totp-xtask; do
    [ -e "$release/$f" ] || { echo "assets.sh: $release/$f was not built" >&2; exit 1; }
done

rm -rf "$out"
mkdir -p "$out/bin"
"$release/pam-totp-xtask" assets "$out" >/dev/null
for page in "$out"/man/*.[18]; do
    gzip -9 -n -c "$page" > "$page.gz"
done
strip --strip-all -o "$out/bin/pam-totp-agent" "$release/pam-totp-agent"
strip --strip-all -o "$out/bin/pam-totp" "$release/pam-totp"
strip --strip-unneeded -o "$out/bin/pam_totp.so" "$release/libpam_totp.so"
chmod 0755 "$out/bin/pam-totp-agent" "$out/bin/pam-totp"
chmod 0644 "$out/bin/pam_totp.so"
echo "$out"
