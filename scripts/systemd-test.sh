#!/usr/bin/env bash
# The package under a real systemd (issue 14, part 1), as root on Debian 12, on a machine
# without systemd as PID 1. A container boots from an overlay of this machine's own root
# (upper and work directories on a tmpfs, so the machine is not touched):
# `systemd-nspawn -D MERGED -b --private-network --register=no --keep-unit`; commands run in
# it through `nsenter` on its PID 1. Needs the .deb that scripts/package-test.sh builds
# (target/debian/pam-totp_*.deb). Each step prints PASS or FAIL; the first failure stops the
# run, and the container is powered off and the overlay removed whatever happens.
#   boot             the container reaches multi-user (running or degraded)
#   install          dpkg -i: the socket is enabled and listening, the agent not started yet
#   activation       the first connection starts the agent (Type=notify readiness reached),
#                    its lines reach the journal
#   operations       under the full hardening: enroll, verify, a login through pamtester and
#                    its replay refused, log, status, an import, and list with 1,200 profiles
#   restart          systemctl restart, and a SIGKILLed agent, both come back on the next
#                    connection
#   security         systemd-analyze security of the service (recorded; its exposure printed)
#   pam-auth-update  --enable pam-totp: a password + code login through common-auth passes, a
#                    wrong code fails, an unenrolled account passes under the profile's nullok;
#                    --disable restores common-auth byte for byte
#   fleet            the shipped fleet.conf drop-in: the agent reaches a PostgreSQL outside its
#                    sandbox (a cluster in the container on 127.0.0.1), with the password and
#                    key as systemd credentials; enroll, verify, a login, a replay refused
#   purge            dpkg --purge: common-auth as before, no unit or state left
set -uo pipefail
SUITE=systemd-test
# shellcheck source=scripts/steps.sh
. "$(dirname "${BASH_SOURCE[0]}")/steps.sh"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive
target="${CARGO_TARGET_DIR:-$root/target}"

tmp="$(mktemp -d /tmp/pam-totp-systemd-test.XXXXXX)"
merged="$tmp/merged"
account="ptsd$$"
plain="ptsdp$$"
service=pam-totp-systemd-test
nspawn_pid=""
leader=""

# A command inside the container (all of its namespaces, its root).
in_ct() { nsenter -t "$leader" -a "$@"; }

cleanup() {
    local status=$?
    if [ -n "$leader" ] && kill -0 "$leader" 2>/dev/null; then
        in_ct systemctl poweroff --no-block >/dev/null 2>&1 || true
    fi
    if [ -n "$nspawn_pid" ]; then
        for _ in $(seq 1 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$nspawn_pid" 2>/dev/null || true
    fi
    # A container that never powered off outlives a killed nspawn: end its PID 1 (and with
    # it every process of its PID namespace).
    if [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ]; then
        kill -KILL "$leader" 2>/dev/null
    fi
    mountpoint -q "$merged" && umount "$merged"
    mountpoint -q "$tmp" && umount "$tmp"
    rm -rf "$tmp"
    finish_steps "$status"
    exit "$status"
}
trap cleanup EXIT
trap 'failed="${failed:-interrupted}"; exit 130' INT TERM

# The code of the time step at offset $2 (in steps) from now, for base32 secret $1.
code_at() { oathtool --totp --base32 -N "@$(( $(date +%s) + $2 * 30 ))" "$1"; }
# Waits until at least 5 s remain in the current 30 s step.
clear_of_step_boundary() { while [ $(( 30 - $(date +%s) % 30 )) -le 5 ]; do sleep 1; done; }

deb="$(ls "$target"/debian/pam-totp_*_amd64.deb 2>/dev/null | head -n1)"

boot() {
    [ -n "$deb" ] || fail "no .deb in $target/debian (scripts/package-test.sh builds it)"
    command -v systemd-nspawn >/dev/null || fail "systemd-nspawn missing (package systemd-container)"
    mount -t tmpfs -o size=2G,mode=0755 pam-totp-systemd-test "$tmp"
    mkdir -p "$tmp/upper" "$tmp/work" "$merged"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$tmp/upper,workdir=$tmp/work" "$merged"
    # Debian's build and CI images forbid starting services from maintainer scripts; the
    # container is a real system.
    rm -f "$merged/usr/sbin/policy-rc.d"
    cp "$deb" "$merged/root/pam-totp.deb"
    setsid systemd-nspawn -q -D "$merged" -b --private-network --register=no --keep-unit \
        -M "pamtotp$$" </dev/null >"$tmp/console.log" 2>&1 &
    echo $! > "$tmp/nspawn.pid"
}

# The container's PID 1 (systemd), once it is there.
find_leader() {
    nspawn_pid="$(cat "$tmp/nspawn.pid")"
    for _ in $(seq 1 100); do
        leader="$(pgrep -P "$nspawn_pid" -x systemd | head -n1)"
        [ -n "$leader" ] && return 0
        sleep 0.2
    done
    return 1
}

wait_booted() {
    local state="" left give_up=$((SECONDS + 120))
    # `--wait` waits for the boot only once systemctl reaches PID 1; until the new systemd
    # has opened its socket, systemctl fails at once (empty, or "offline"), so ask again.
    while left=$((give_up - SECONDS)); [ "$left" -gt 0 ]; do
        # (`timeout 0` would mean no limit at all: `left` is at least 1 here.)
        state="$(timeout "$left" nsenter -t "$leader" -a \
            systemctl is-system-running --wait 2>/dev/null)" || true
        case "$state" in "" | offline) sleep 0.5 ;; *) break ;; esac
    done
    log "system state: $state"
    case "$state" in
        running | degraded) ;;
        *) tail -n 30 "$tmp/console.log" | sed 's/^/    | /' >&2; fail "the container did not boot" ;;
    esac
    in_ct systemctl --failed --no-legend | sed 's/^/    | failed unit (not ours): /'
    ! in_ct systemctl --failed --no-legend | grep -q pam-totp || fail "a pam-totp unit failed"
}

install() {
    in_ct dpkg -i /root/pam-totp.deb >"$tmp/dpkg.log" 2>&1 \
        || { tail -n 20 "$tmp/dpkg.log" | sed 's/^/    | /' >&2; fail "dpkg -i failed"; }
    [ "$(in_ct systemctl is-enabled pam-totp-agent.socket)" = enabled ] || fail "socket not enabled"
    [ "$(in_ct systemctl is-active pam-totp-agent.socket)" = active ] || fail "socket not listening"
    local state
    state="$(in_ct systemctl is-active pam-totp-agent.service || true)"
    [ "$state" = inactive ] || fail "the agent runs before any connection ($state)"
    log "socket enabled and listening, agent not started"
}

activation() {
    in_ct pam-totp status | sed 's/^/    | /'
    [ "$(in_ct systemctl is-active pam-totp-agent.service)" = active ] \
        || fail "the first connection did not start the agent"
    [ "$(in_ct systemctl show -p Type --value pam-totp-agent.service)" = notify ] \
        || fail "the service is not Type=notify"
    in_ct journalctl -u pam-totp-agent.service --no-pager -o cat | sed 's/^/    | journal: /'
    in_ct journalctl -u pam-totp-agent.service --no-pager -o cat \
        | grep -q "listening on the socket passed by systemd" || fail "no start line in the journal"
}

operations() {
    in_ct useradd -M -s /usr/sbin/nologin "$account"
    local json secret code
    json="$(in_ct pam-totp --json enroll "$account")" || fail "enroll failed"
    secret="$(printf '%s' "$json" | grep -o '"secret":"[^"]*"' | head -n1 | cut -d'"' -f4)"
    [ -n "$secret" ] || fail "enroll printed no secret"
    echo "$secret" > "$tmp/secret"
    clear_of_step_boundary
    code="$(code_at "$secret" -1)"
    printf '%s\n' "$code" | in_ct pam-totp verify "$account" - >/dev/null || fail "verify failed"
    printf 'auth required pam_totp.so\naccount required pam_permit.so\n' \
        > "$merged/etc/pam.d/$service"
    code="$(code_at "$secret" 0)"
    printf '%s\n' "$code" | in_ct pamtester "$service" "$account" authenticate 2>&1 \
        | sed 's/^/    | /'
    printf '%s\n' "$code" | in_ct pamtester "$service" "$account" authenticate >/dev/null 2>&1 \
        && fail "a code was accepted twice"
    in_ct pam-totp log "$account" | sed 's/^/    | /'
    in_ct pam-totp --json log "$account" | grep -q '"result":"success"' \
        || fail "the login is not in the audit log"
    in_ct pam-totp list | grep -q "$account" || fail "list does not show the profile"
    # A google-authenticator file, imported under the hardening (its directory is root's).
    printf 'JBSWY3DPEHPK3PXP\n" TOTP_AUTH\n' > "$merged/root/ga-$plain"
    chmod 0400 "$merged/root/ga-$plain"
    in_ct useradd -M -s /usr/sbin/nologin "$plain"
    in_ct pam-totp import google-authenticator "$plain" "/root/ga-$plain" | sed 's/^/    | /'
    in_ct pam-totp --json show "$plain" | grep -q '"verified":true' || fail "import did not take"
    in_ct pam-totp remove "$plain" >/dev/null
    # Many profiles: 1,200 accounts imported from a pam_oath usersfile, all listed (more than
    # one page of the agent's answers).
    local many=1200 i
    for i in $(seq 1 "$many"); do
        printf 'ptsdm%s-%s:*:%s:65534::/:/usr/sbin/nologin\n' "$$" "$i" $((300000 + i))
    done | in_ct newusers
    for i in $(seq 1 "$many"); do
        printf 'HOTP/T30\tptsdm%s-%s\t-\t%040d\n' "$$" "$i" "$i"
    done > "$merged/root/users.oath"
    chmod 0600 "$merged/root/users.oath"
    in_ct pam-totp import oath /root/users.oath | tail -n1 | sed 's/^/    | /'
    [ "$(in_ct pam-totp --json list | grep -o '"account":"ptsdm' | wc -l)" -eq "$many" ] \
        || fail "list does not show the $many imported profiles"
    if in_ct journalctl -u pam-totp-agent.service --no-pager -o cat | grep -q -- "$code"; then
        fail "a code reached the journal"
    fi
    in_ct journalctl -u pam-totp-agent.service --no-pager -o cat | grep -q 'login result=success' \
        || fail "no login line in the journal"
}

main_pid() { in_ct systemctl show -p MainPID --value pam-totp-agent.service; }

restart() {
    local before after
    before="$(main_pid)"
    in_ct systemctl restart pam-totp-agent.service
    in_ct pam-totp status >/dev/null || fail "no answer after systemctl restart"
    after="$(main_pid)"
    [ "$after" != "$before" ] && [ "$after" != 0 ] || fail "restart kept pid $before"
    in_ct kill -KILL "$after"
    for _ in $(seq 1 50); do
        [ "$(in_ct systemctl is-active pam-totp-agent.service || true)" != active ] && break
        sleep 0.1
    done
    in_ct pam-totp status >/dev/null || fail "no answer after the agent was killed"
    [ "$(main_pid)" != "$after" ] || fail "the killed agent did not come back"
    in_ct pam-totp --json show "$account" | grep -q '"verified":true' || fail "the profile was lost"
    log "restart: pid $before -> $after; SIGKILL: $after -> $(main_pid)"
}

security() {
    in_ct systemd-analyze security --no-pager pam-totp-agent.service >"$tmp/security.log" 2>&1 \
        || true
    grep -E '^(✗|→)' "$tmp/security.log" | sed 's/^/    | /'
    grep -q 'Overall exposure level for pam-totp-agent.service' "$tmp/security.log" \
        || fail "systemd-analyze security printed no verdict"
}

pam_auth_update() {
    local before
    before="$(in_ct sha256sum /etc/pam.d/common-auth)"
    in_ct pam-auth-update --enable pam-totp
    in_ct grep -q 'pam_totp.so nullok' /etc/pam.d/common-auth || fail "common-auth has no pam_totp"
    printf '@include common-auth\naccount required pam_permit.so\n' > "$merged/etc/pam.d/$service"
    for user in "$account" "$plain"; do
        in_ct usermod -s /bin/sh "$user" 2>/dev/null || in_ct useradd -M -s /bin/sh "$user"
        printf '%s:Pw-%s-9\n' "$user" "$user" | in_ct chpasswd
    done
    local secret code
    secret="$(cat "$tmp/secret")"
    clear_of_step_boundary
    code="$(code_at "$secret" 1)"
    printf 'Pw-%s-9\n000000\n' "$account" | in_ct pamtester "$service" "$account" authenticate \
        >/dev/null 2>&1 && fail "a wrong code passed common-auth"
    printf 'Pw-%s-9\n%s\n' "$account" "$code" | in_ct pamtester "$service" "$account" authenticate \
        2>&1 | sed 's/^/    | /'
    printf 'Pw-%s-9\n%s\n' "$account" "$code" | in_ct pamtester "$service" "$account" authenticate \
        >/dev/null 2>&1 && fail "a replayed code passed common-auth"
    # Password + code: the success above is checked through the audit trail.
    in_ct pam-totp --json log "$account" | grep -o '"result":"[a-z_]*"' | sort | uniq -c \
        | sed 's/^/    | /'
    [ "$(in_ct pam-totp --json log "$account" | grep -o '"result":"success"' | wc -l)" -ge 2 ] \
        || fail "the password + code login did not pass"
    printf 'Pw-%s-9\n' "$plain" | in_ct pamtester "$service" "$plain" authenticate >/dev/null 2>&1 \
        || fail "an unenrolled account did not pass under nullok"
    in_ct pam-auth-update --disable pam-totp
    [ "$(in_ct sha256sum /etc/pam.d/common-auth)" = "$before" ] \
        || fail "--disable did not restore common-auth byte for byte"
    echo "$before" > "$tmp/common-auth.sha256"
    log "enable: password + code passes, wrong code and replay fail, nullok lets $plain in; disable: common-auth restored"
}

# The fleet drop-in: the agent, sandboxed as shipped plus packaging/systemd/fleet.conf, reaches
# a PostgreSQL outside its sandbox (a throwaway cluster in the container, on 127.0.0.1) with
# the password and the key handed over as systemd credentials. Everything is put back after.
fleet() {
    local bin pg=/var/tmp/pam-totp-pg port=5439 secret code
    bin="$(in_ct sh -c 'ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1')"
    [ -n "$bin" ] || fail "no PostgreSQL server in the container"
    in_ct install -d -o postgres -m 0700 "$pg"
    echo superpw > "$merged$pg/superuser-password"
    in_ct chown postgres "$pg/superuser-password"
    in_ct runuser -u postgres -- "$bin/initdb" -D "$pg/data" -A scram-sha-256 \
        --pwfile="$pg/superuser-password" -U postgres >/dev/null
    in_ct runuser -u postgres -- "$bin/pg_ctl" -D "$pg/data" -l "$pg/log" -w \
        -o "-p $port -k $pg -c listen_addresses=127.0.0.1" start >/dev/null
    in_ct runuser -u postgres -- env PGPASSWORD=superpw psql -q -h "$pg" -p "$port" -U postgres \
        -c "CREATE ROLE pamtotp LOGIN PASSWORD 'fleet-pw'" -c "CREATE DATABASE pamtotp OWNER pamtotp"
    cp "$merged/etc/pam-totp/agent.toml" "$tmp/agent.toml"
    (umask 077 && head -c 32 /dev/urandom > "$merged/etc/pam-totp/fleet.key" \
        && echo fleet-pw > "$merged/etc/pam-totp/store-password")
    cat >> "$merged/etc/pam-totp/agent.toml" <<TOML
store = "postgres://pamtotp@127.0.0.1:$port/pamtotp?sslmode=disable"
store_password_file = "/run/credentials/pam-totp-agent.service/store-password"
store_key_file = "/run/credentials/pam-totp-agent.service/store-key"
host_name = "container-a"
TOML
    in_ct install -D -m 0644 /usr/share/doc/pam-totp/examples/fleet.conf \
        /etc/systemd/system/pam-totp-agent.service.d/fleet.conf
    in_ct systemctl daemon-reload
    in_ct systemctl restart pam-totp-agent.service
    in_ct pam-totp status | sed 's/^/    | /'
    in_ct pam-totp status | grep -qi 'postgres' || fail "the agent is not on the fleet store"
    local user="ptsdf$$"
    in_ct useradd -M -s /usr/sbin/nologin "$user"
    secret="$(in_ct pam-totp --json enroll "$user" | grep -o '"secret":"[^"]*"' | head -n1 | cut -d'"' -f4)"
    [ -n "$secret" ] || fail "enroll on the fleet store failed"
    clear_of_step_boundary
    printf '%s\n' "$(code_at "$secret" -1)" | in_ct pam-totp verify "$user" - >/dev/null
    printf 'auth required pam_totp.so\naccount required pam_permit.so\n' \
        > "$merged/etc/pam.d/$service"
    code="$(code_at "$secret" 0)"
    printf '%s\n' "$code" | in_ct pamtester "$service" "$user" authenticate >/dev/null 2>&1 \
        || fail "a login through the fleet store was refused"
    printf '%s\n' "$code" | in_ct pamtester "$service" "$user" authenticate >/dev/null 2>&1 \
        && fail "a code was accepted twice through the fleet store"
    [ "$(in_ct runuser -u postgres -- env PGPASSWORD=fleet-pw psql -qtA -h "$pg" -p "$port" \
        -U pamtotp -d pamtotp -c "SELECT count(*) FROM profiles WHERE account = '$user'")" = 1 ] \
        || fail "the profile is not in PostgreSQL"
    log "status, enroll, verify and a login (replay refused) through PostgreSQL on 127.0.0.1:$port"
    # Back to the packaged setup.
    in_ct rm -f /etc/systemd/system/pam-totp-agent.service.d/fleet.conf \
        /etc/pam-totp/fleet.key /etc/pam-totp/store-password
    in_ct rmdir /etc/systemd/system/pam-totp-agent.service.d
    cp "$tmp/agent.toml" "$merged/etc/pam-totp/agent.toml"
    in_ct systemctl daemon-reload
    in_ct systemctl restart pam-totp-agent.service
    in_ct pam-totp status | grep -qi 'sqlite' || fail "the agent did not return to SQLite"
    in_ct userdel "$user"
    in_ct runuser -u postgres -- "$bin/pg_ctl" -D "$pg/data" -w stop >/dev/null
}

purge() {
    in_ct pam-auth-update --enable pam-totp
    in_ct dpkg --purge pam-totp >"$tmp/purge.log" 2>&1 \
        || { tail -n 20 "$tmp/purge.log" | sed 's/^/    | /' >&2; fail "dpkg --purge failed"; }
    [ "$(in_ct sha256sum /etc/pam.d/common-auth)" = "$(cat "$tmp/common-auth.sha256")" ] \
        || fail "purge did not restore common-auth"
    local left
    left="$(in_ct sh -c 'ls -d /usr/lib/systemd/system/pam-totp* /var/lib/pam-totp /etc/pam-totp /run/pam-totp 2>/dev/null' || true)"
    [ -z "$left" ] || fail "left behind: $left"
    in_ct systemctl is-active pam-totp-agent.socket >/dev/null && fail "the socket still listens"
    return 0
}

step boot boot
find_leader || { failed=boot; exit 1; }
step booted wait_booted
step install install
step activation activation
step operations operations
step restart restart
step security security
step pam-auth-update pam_auth_update
step fleet fleet
step purge purge
