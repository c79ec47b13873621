#!/usr/bin/env bash
# The packaging check CI runs (issue 6), as root on Debian, on a machine without systemd as
# PID 1. Each step prints PASS or FAIL; the first failure stops the run with a non-zero exit.
#   build-deb       make deb (release build, man pages, completions, cargo-deb)
#   lintian         lintian on the .deb: errors fail, warnings are shown
#   build-rpm       make rpm; rpm -qlp shows the files at Fedora's paths, the scriptlets and
#                   the config file
#   make-install    make install PREFIX=/usr/local DESTDIR=<temp dir>
#   dpkg-install    dpkg -i (missing dependencies from apt); files in place, the socket enabled
#                   by deb-systemd-helper; no file in /etc/pam.d changed
#   systemd-verify  systemd-analyze verify of the installed units (where it exists), and of
#                   the service with the shipped fleet.conf example applied as a drop-in
#   agent           /usr/sbin/pam-totp-agent started by hand with its default socket and
#                   database and the shipped /etc/pam-totp/agent.toml
#   enroll-verify   a throwaway account enrolled with /usr/bin/pam-totp, verified with a code
#                   from oathtool
#   pam-login       a login through a PAM service naming bare pam_totp.so (pamtester) with a
#                   fresh code; the same code again is refused
#   pam.d-unchanged no file in /etc/pam.d changed (besides the test service, added and removed)
#   dpkg-purge      dpkg --purge; nothing of the package is left behind
# The machine is left as it was found, also when a step fails: the agent is stopped, the
# account, the PAM service, the package and its state are removed (trap). Packages this
# script installs with apt (lintian, rpm, pamtester, oathtool, make) and the cargo tools
# (cargo-deb, cargo-generate-rpm) stay. It refuses to run where pam-totp is already installed
# or its default paths are in use, rather than touch them.
set -uo pipefail
SUITE=package-test
# shellcheck source=scripts/steps.sh
. "$(dirname "${BASH_SOURCE[0]}")/steps.sh"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
export DEBIAN_FRONTEND=noninteractive
target="${CARGO_TARGET_DIR:-$root/target}"

pkg=pam-totp
agent=/usr/sbin/pam-totp-agent
cli=/usr/bin/pam-totp
module=/usr/lib/x86_64-linux-gnu/security/pam_totp.so
units=(/usr/lib/systemd/system/pam-totp-agent.socket /usr/lib/systemd/system/pam-totp-agent.service
    /usr/lib/systemd/system/pam-totp-metrics.service /usr/lib/systemd/system/pam-totp-metrics.timer)
state_dirs=(/var/lib/pam-totp /etc/pam-totp /run/pam-totp)
service="pam-totp-pkgtest-$$"
service_file="/etc/pam.d/$service"
account="ptpkg$$"

tmp="$(mktemp -d /tmp/pam-totp-package-test.XXXXXX)"
agent_log="$tmp/agent.log"

# Steps run in subshells (so that `set -e` holds inside them); what cleanup must undo is
# recorded as marker files in $tmp, written before the action they undo.
mark() { touch "$tmp/mark.$1"; }
unmark() { rm -f "$tmp/mark.$1"; }
marked() { [ -e "$tmp/mark.$1" ]; }

cleanup() {
    local status=$? pid
    pid="$(cat "$tmp/agent.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$service_file"
    if marked account; then
        userdel "$account" 2>/dev/null || true
    fi
    if marked installed && dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -qv 'not-installed'; then
        dpkg --purge "$pkg" >/dev/null 2>&1 || true
    fi
    if marked state; then
        rm -rf "${state_dirs[@]}"
    fi
    rm -rf "$tmp"
    finish_steps "$status" "the machine was restored"
    exit "$status"
}
trap cleanup EXIT
trap 'failed="${failed:-interrupted}"; exit 130' INT TERM

# Shows the tail of a log when a command fails.
quiet() {
    local out="$tmp/quiet.log"
    if ! "$@" >"$out" 2>&1; then
        tail -n 40 "$out" | sed 's/^/    | /' >&2
        return 1
    fi
}

ensure_packages() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]} (apt)"
        quiet apt-get update
        quiet apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

# Checksums and modes of everything in /etc/pam.d.
pam_d_snapshot() {
    (cd /etc/pam.d && find . -mindepth 1 -printf '%p %y %m %l\n' | sort
     find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

preconditions() {
    [ "$(id -u)" -eq 0 ] || fail "run as root (installs a package, adds an account and a PAM service)"
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -qv 'not-installed'; then
        fail "$pkg is already installed here ($(dpkg-query -W -f='${Status}' "$pkg")); this test would remove it"
    fi
    local path
    for path in "${state_dirs[@]}" "$agent" "$cli" "$module" "${units[@]}"; do
        [ ! -e "$path" ] || fail "$path exists: pam-totp is installed or running here; this test would remove it"
    done
    ! getent passwd "$account" >/dev/null || fail "account $account exists"
    ensure_packages make lintian rpm pamtester oathtool passwd
    log "machine is clean; tools present"
}

build_deb() {
    quiet make -C "$root" deb
    version="$("$target/release/pam-totp" --version | awk '{print $2}')"
    deb="$target/debian/${pkg}_${version}_amd64.deb"
    [ -f "$deb" ] || fail "$deb was not built"
    head -n1 "$root/packaging/debian/changelog" | grep -q "^$pkg ($version) " \
        || fail "packaging/debian/changelog has no entry for $version: add one"
    echo "$deb" > "$tmp/deb"
    echo "$version" > "$tmp/version"
    log "built $deb ($(du -k "$deb" | cut -f1) KiB)"
}

run_lintian() {
    local deb out status=0
    deb="$(cat "$tmp/deb")"
    out="$tmp/lintian.log"
    # --fail-on error: only errors fail; every tag is shown.
    lintian --fail-on error --display-info "$deb" >"$out" 2>&1 || status=$?
    grep -v 'running with root privileges' "$out" | sed 's/^/    | /' || true
    log "$(grep -c '^E:' "$out") errors, $(grep -c '^W:' "$out") warnings, $(grep -c '^I:' "$out") info"
    [ "$status" -eq 0 ] || fail "lintian reports errors (exit $status)"
}

build_rpm() {
    local version rpm listing path
    version="$(cat "$tmp/version")"
    quiet make -C "$root" rpm
    rpm="$target/generate-rpm/${pkg}-${version}-1.x86_64.rpm"
    [ -f "$rpm" ] || fail "$rpm was not built"
    listing="$(rpm -qlp "$rpm")" || fail "rpm -qlp cannot read $rpm"
    for path in /usr/lib64/security/pam_totp.so /usr/sbin/pam-totp-agent /usr/bin/pam-totp \
        /etc/pam-totp/agent.toml "${units[@]}" \
        /usr/share/man/man1/pam-totp.1.gz /usr/share/man/man1/pam-totp-enroll.1.gz \
        /usr/share/man/man8/pam-totp-agent.8.gz /usr/share/man/man8/pam_totp.8.gz \
        /usr/share/bash-completion/completions/pam-totp /usr/share/zsh/site-functions/_pam-totp \
        /usr/share/fish/vendor_completions.d/pam-totp.fish /usr/share/licenses/pam-totp/COPYRIGHT \
        /usr/share/doc/pam-totp/examples/fail2ban/filter.d/pam-totp.conf \
        /usr/share/doc/pam-totp/examples/fleet.conf; do
        grep -qx "$path" <<<"$listing" || fail "$path is not in the rpm"
    done
    rpm -qp --configfiles "$rpm" | grep -qx /etc/pam-totp/agent.toml \
        || fail "agent.toml is not a config file in the rpm"
    rpm -qp --scripts "$rpm" | grep -q 'systemctl --no-reload preset pam-totp-agent.socket' \
        || fail "the rpm's %post scriptlet is missing"
    rpm -qp --requires "$rpm" | grep -q '^libpam.so.0' || fail "the rpm does not require libpam"
    log "$rpm: $(wc -l <<<"$listing") files at Fedora's paths, scriptlets and config file present"
}

make_install() {
    local dest="$tmp/destdir" path
    quiet make -C "$root" install PREFIX=/usr/local DESTDIR="$dest" PAMDIR=/usr/lib/x86_64-linux-gnu/security
    for path in usr/local/sbin/pam-totp-agent usr/local/bin/pam-totp \
        usr/lib/x86_64-linux-gnu/security/pam_totp.so etc/pam-totp/agent.toml \
        usr/local/lib/systemd/system/pam-totp-agent.socket \
        usr/local/lib/systemd/system/pam-totp-agent.service \
        usr/local/share/man/man1/pam-totp.1 usr/local/share/man/man8/pam_totp.8 \
        usr/local/share/man/man8/pam-totp-agent.8 \
        usr/local/share/bash-completion/completions/pam-totp \
        usr/local/share/zsh/site-functions/_pam-totp \
        usr/local/share/fish/vendor_completions.d/pam-totp.fish \
        usr/local/share/doc/pam-totp/examples/fleet.conf; do
        [ -f "$dest/$path" ] || fail "make install did not install /$path"
    done
    grep -qx 'ExecStart=/usr/local/sbin/pam-totp-agent' \
        "$dest/usr/local/lib/systemd/system/pam-totp-agent.service" \
        || fail "make install did not point ExecStart at /usr/local/sbin"
    log "make install PREFIX=/usr/local DESTDIR=...: $(find "$dest" -type f | wc -l) files"
}

dpkg_install() {
    local deb path
    deb="$(cat "$tmp/deb")"
    pam_d_snapshot > "$tmp/pam.d.before"
    if [ -e /var/lib/pam/seen ]; then cp /var/lib/pam/seen "$tmp/pam-seen.before"; fi
    # From here on, the state directories are ours to remove (preconditions: none existed).
    mark state
    mark installed
    if ! dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1; then
        log "dpkg -i left dependencies missing: apt-get -f install"
        quiet apt-get install -f -y --no-install-recommends
    fi
    sed 's/^/    | /' "$tmp/dpkg.log"
    dpkg-query -W -f='${Status}' "$pkg" | grep -q 'install ok installed' || fail "$pkg is not installed"
    for path in "$agent" "$cli" "$module" "${units[@]}" /etc/pam-totp/agent.toml \
        /usr/share/pam-configs/pam-totp /usr/share/man/man8/pam_totp.8.gz \
        /usr/share/man/man8/pam-totp-agent.8.gz /usr/share/man/man1/pam-totp.1.gz \
        /usr/share/bash-completion/completions/pam-totp \
        /usr/share/zsh/vendor-completions/_pam-totp \
        /usr/share/fish/vendor_completions.d/pam-totp.fish \
        /usr/share/doc/pam-totp/copyright /usr/share/doc/pam-totp/changelog.gz \
        /usr/share/doc/pam-totp/examples/fail2ban/filter.d/pam-totp.conf \
        /usr/share/doc/pam-totp/examples/fail2ban/jail.d/pam-totp.conf \
        /usr/share/doc/pam-totp/examples/fleet.conf; do
        [ -e "$path" ] || fail "$path is missing after dpkg -i"
    done
    cmp -s "$root/packaging/systemd/fleet.conf" /usr/share/doc/pam-totp/examples/fleet.conf \
        || fail "the installed fleet.conf example differs from packaging/systemd/fleet.conf"
    grep -qx /etc/pam-totp/agent.toml /var/lib/dpkg/info/$pkg.conffiles \
        || fail "agent.toml is not a conffile"
    grep -qx 'Default: no' /usr/share/pam-configs/pam-totp || fail "the pam-auth-update profile is not Default: no"
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        [ -L /etc/systemd/system/sockets.target.wants/pam-totp-agent.socket ] \
            || fail "deb-systemd-helper did not enable pam-totp-agent.socket"
        log "pam-totp-agent.socket enabled (sockets.target.wants), not started: systemd is not running"
    fi
    dpkg -L "$pkg" > "$tmp/files"
    pam_d_snapshot > "$tmp/pam.d.installed"
    diff -u "$tmp/pam.d.before" "$tmp/pam.d.installed" | sed 's/^/    | /'
    cmp -s "$tmp/pam.d.before" "$tmp/pam.d.installed" || fail "installing changed /etc/pam.d"
    log "installed $(grep -c . "$tmp/files") paths; /etc/pam.d unchanged by the install"
}

systemd_verify() {
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        log "systemd-analyze not found: skipped"
        return 0
    fi
    local out="$tmp/verify.log"
    # Without systemd as PID 1 this checks syntax, ExecStart, the man pages in Documentation=
    # and the socket/service pairing, not the sandbox at run time.
    if ! SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "${units[@]}" >"$out" 2>&1; then
        sed 's/^/    | /' "$out"
        fail "systemd-analyze verify found problems"
    fi
    sed 's/^/    | /' "$out"
    log "systemd-analyze verify: units clean"
    # The fleet store's drop-in, applied as an admin would: copies of the installed service and
    # socket with the shipped example in pam-totp-agent.service.d/ beside them (verify reads
    # drop-ins next to the unit files it is given). systemd only warns about an unknown key
    # or a bad value (and exits 0), so any message naming the drop-in fails the step.
    local units_dir="$tmp/fleet-units" dropin=/usr/share/doc/pam-totp/examples/fleet.conf
    mkdir -p "$units_dir/pam-totp-agent.service.d"
    cp /usr/lib/systemd/system/pam-totp-agent.service /usr/lib/systemd/system/pam-totp-agent.socket \
        "$units_dir/"
    cp "$dropin" "$units_dir/pam-totp-agent.service.d/fleet.conf"
    if ! SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$units_dir/pam-totp-agent.service" \
            "$units_dir/pam-totp-agent.socket" >"$out" 2>&1 || grep -q 'fleet\.conf' "$out"; then
        sed 's/^/    | /' "$out"
        fail "systemd-analyze verify: the fleet.conf drop-in has problems"
    fi
    # ... and the check can see them: a copy with a bad address must be reported.
    printf 'IPAddressAllow=db1.example.org\n' >> "$units_dir/pam-totp-agent.service.d/fleet.conf"
    SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$units_dir/pam-totp-agent.service" \
        "$units_dir/pam-totp-agent.socket" >"$out" 2>&1 || true
    grep -q 'fleet\.conf' "$out" || fail "systemd-analyze verify did not read the drop-in beside the unit"
    log "systemd-analyze verify: the service with the fleet.conf drop-in clean"
}

start_agent() {
    # Defaults only: /run/pam-totp/agent.sock, /var/lib/pam-totp/profiles.sqlite3 and the
    # shipped /etc/pam-totp/agent.toml (so this also proves the agent accepts that file).
    "$agent" >"$agent_log" 2>&1 &
    local pid=$! ready=no
    echo "$pid" > "$tmp/agent.pid"
    for _ in $(seq 1 100); do
        if "$cli" --json list >/dev/null 2>&1; then ready=yes; break; fi
        kill -0 "$pid" 2>/dev/null || { sed 's/^/    | /' "$agent_log"; fail "the agent exited at startup"; }
        sleep 0.1
    done
    [ "$ready" = yes ] || { sed 's/^/    | /' "$agent_log"; fail "the agent does not answer on /run/pam-totp/agent.sock"; }
    [ "$(stat -c %a /var/lib/pam-totp)" = 700 ] || fail "/var/lib/pam-totp is not 0700"
    [ "$(stat -c %a /var/lib/pam-totp/profiles.sqlite3)" = 600 ] || fail "the database is not 0600"
    [ "$(stat -c %a /run/pam-totp/agent.sock)" = 666 ] || fail "the socket is not 0666"
    log "agent pid $pid: $(head -n1 "$agent_log")"
}

# The code of the time step at offset $2 (in steps) from now, for base32 secret $1.
code_at() { oathtool --totp --base32 -N "@$(( $(date +%s) + $2 * 30 ))" "$1"; }

# Waits until at least 5 s remain in the current 30 s step.
clear_of_step_boundary() { while [ $(( 30 - $(date +%s) % 30 )) -le 5 ]; do sleep 1; done; }

enroll_verify() {
    mark account
    useradd -M -s /usr/sbin/nologin -c "pam-totp package test" "$account"
    local json secret code
    json="$("$cli" --json enroll "$account")" || fail "pam-totp enroll failed"
    secret="$(printf '%s' "$json" | grep -o '"secret":"[^"]*"' | head -n1 | cut -d'"' -f4)"
    [ -n "$secret" ] || fail "enroll printed no secret"
    echo "$secret" > "$tmp/secret"
    "$cli" show "$account" --fields account,verified | sed 's/^/    | /'
    clear_of_step_boundary
    # The previous step's code: the login below uses the current one (codes are single-use).
    code="$(code_at "$secret" -1)"
    "$cli" verify "$account" "$code" | sed 's/^/    | /'
    "$cli" --json show "$account" | grep -q '"verified":true' || fail "the profile is not active"
    log "enrolled and verified $account through $cli"
}

pam_login() {
    printf '# pam-totp package test (removed when the test ends)\nauth required pam_totp.so\naccount required pam_permit.so\n' \
        > "$service_file"
    local secret code
    secret="$(cat "$tmp/secret")"
    clear_of_step_boundary
    code="$(code_at "$secret" 0)"
    if ! printf '%s\n' "$code" | pamtester "$service" "$account" authenticate >"$tmp/pamtester.log" 2>&1; then
        sed 's/^/    | /' "$tmp/pamtester.log"
        fail "the login with a fresh code was refused"
    fi
    sed 's/^/    | /' "$tmp/pamtester.log"
    if printf '%s\n' "$code" | pamtester "$service" "$account" authenticate >/dev/null 2>&1; then
        fail "the same code was accepted twice"
    fi
    log "login through /etc/pam.d/$service ('auth required pam_totp.so'): accepted; replay refused"
    rm -f "$service_file"
    userdel "$account"
    unmark account
    local pid
    pid=$(cat "$tmp/agent.pid")
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    ! kill -0 "$pid" 2>/dev/null || fail "the agent did not stop on SIGTERM"
    rm -f "$tmp/agent.pid"
    grep -q 'pam-totp-agent: stopped' "$agent_log" || fail "the agent did not stop cleanly"
    [ ! -e /run/pam-totp/agent.sock ] || fail "the agent left its socket behind"
    log "agent stopped on SIGTERM and removed its socket"
}

pam_d_unchanged() {
    pam_d_snapshot > "$tmp/pam.d.after"
    diff -u "$tmp/pam.d.before" "$tmp/pam.d.after" | sed 's/^/    | /'
    cmp -s "$tmp/pam.d.before" "$tmp/pam.d.after" || fail "files in /etc/pam.d changed"
    log "/etc/pam.d: $(find /etc/pam.d -type f | wc -l) files, none changed"
}

dpkg_purge() {
    if ! dpkg --purge "$pkg" >"$tmp/purge.log" 2>&1; then
        sed 's/^/    | /' "$tmp/purge.log"
        fail "dpkg --purge failed"
    fi
    sed 's/^/    | /' "$tmp/purge.log"
    unmark installed
    local left=() path
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -qv 'not-installed'; then
        left+=("dpkg status: $(dpkg-query -W -f='${Status}' "$pkg")")
    fi
    # Every file the package shipped, its own directories, its state, and the systemd
    # enablement and mask links deb-systemd-helper made.
    while IFS= read -r path; do
        if [ -e "$path" ] && [ ! -d "$path" ]; then left+=("$path"); fi
    done < "$tmp/files"
    for path in "${state_dirs[@]}" /usr/share/doc/pam-totp "$agent" "$cli" "$module" "${units[@]}"; do
        [ ! -e "$path" ] || left+=("$path")
    done
    while IFS= read -r path; do left+=("$path"); done \
        < <(find /etc/systemd /var/lib/systemd -name '*pam-totp*' 2>/dev/null)
    if [ -e "$tmp/pam-seen.before" ] && ! cmp -s "$tmp/pam-seen.before" /var/lib/pam/seen; then
        left+=("/var/lib/pam/seen differs from before the install")
    elif [ -e /var/lib/pam/seen ] && grep -qx "$pkg" /var/lib/pam/seen; then
        left+=("/var/lib/pam/seen still names $pkg")
    fi
    if [ "${#left[@]}" -gt 0 ]; then
        printf '    left behind: %s\n' "${left[@]}"
        fail "dpkg --purge left files behind"
    fi
    pam_d_snapshot > "$tmp/pam.d.purged"
    cmp -s "$tmp/pam.d.before" "$tmp/pam.d.purged" || fail "purging changed /etc/pam.d"
    log "purged: no file, unit, state or enablement of $pkg left; /etc/pam.d unchanged"
}

echo "package-test: .deb and .rpm of pam-totp, installed, used and purged ($(date -u +%FT%TZ))"
step preconditions preconditions
step build-deb build_deb
step lintian run_lintian
step build-rpm build_rpm
step make-install make_install
step dpkg-install dpkg_install
step systemd-verify systemd_verify
step agent start_agent
step enroll-verify enroll_verify
step pam-login pam_login
step pam.d-unchanged pam_d_unchanged
step dpkg-purge dpkg_purge
