#!/usr/bin/env bash
# pam-totp end-to-end demo on the release build: a private agent, a demo account, enrollment,
# verification, a real login through libpam (pamtester) and a refused replay.
# Run as root on Debian: installs missing packages, builds the release binaries
# (cargo build --workspace --release), then narrates each step. `make demo` runs this script.
# Leaves nothing behind: the agent, the temp dir, the PAM service file and the demo account
# (when this script created it) are removed on exit. Exits non-zero when a step misbehaves.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$root/target}/release"
agent_bin="$bin/pam-totp-agent"
cli_bin="$bin/pam-totp"
module="$bin/libpam_totp.so"
account=pamtotpdemo
service="pam-totp-demo-$$"
service_file="/etc/pam.d/$service"

say() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nDEMO FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (the demo creates an account and a PAM service)"

say "Installing missing test tools and building the release binaries"
bash "$root/scripts/install-test-deps.sh"
if [ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
(cd "$root" && cargo build --workspace --release)
for f in "$agent_bin" "$cli_bin" "$module"; do
    [ -e "$f" ] || fail "$f is missing: run 'cargo build --workspace --release' (or 'make demo')"
done
for tool in pamtester oathtool useradd userdel; do
    command -v "$tool" >/dev/null 2>&1 \
        || fail "$tool is missing: run scripts/install-test-deps.sh"
done

tmp="$(mktemp -d /tmp/pam-totp-demo.XXXXXX)"
chmod 0700 "$tmp"
mkdir -m 0700 "$tmp/state"
socket="$tmp/agent.sock"
db="$tmp/state/profiles.sqlite3"
config="$tmp/agent.toml"
log="$tmp/agent.log"
agent_pid=""
created_account=no

cleanup() {
    status=$?
    if [ -n "$agent_pid" ]; then
        kill -TERM "$agent_pid" 2>/dev/null || true
        wait "$agent_pid" 2>/dev/null || true
    fi
    rm -f "$service_file"
    if [ "$created_account" = yes ]; then
        userdel "$account" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cli() { "$cli_bin" --socket "$socket" "$@"; }

say "Starting pam-totp-agent on a private socket and database ($tmp)"
printf 'window = 1\n\n[lockout]\nthreshold = 5\nbase_seconds = 30\nmax_seconds = 900\n' > "$config"
"$agent_bin" --socket "$socket" --db "$db" --config "$config" 2>"$log" &
agent_pid=$!
ready=no
for _ in $(seq 1 100); do
    if cli --json list >/dev/null 2>&1; then ready=yes; break; fi
    kill -0 "$agent_pid" 2>/dev/null || { cat "$log" >&2; fail "the agent exited at startup"; }
    sleep 0.1
done
[ "$ready" = yes ] || { cat "$log" >&2; fail "the agent does not answer on $socket"; }
echo "agent pid $agent_pid, socket $socket"

say "Creating the demo account '$account'"
if getent passwd "$account" >/dev/null; then
    echo "account $account already exists: using it"
else
    useradd -M -s /usr/sbin/nologin -c "pam-totp demo" "$account"
    created_account=yes
    echo "created $account (no home, no shell)"
fi

say "Enrolling $account: pam-totp enroll $account"
enroll_json="$(cli --json enroll "$account")" || fail "enroll failed"
json_string() { printf '%s' "$enroll_json" | grep -o "\"$1\":\"[^\"]*\"" | head -n1 | cut -d'"' -f4; }
secret="$(json_string secret)"
uri="$(json_string otpauth_uri)"
[ -n "$secret" ] && [ -n "$uri" ] || fail "enroll printed no secret or URI: $enroll_json"
codes="$(printf '%s' "$enroll_json" | grep -o '"emergency_codes":\[[^]]*\]' | grep -o '[0-9]\{8\}' | wc -l)"
echo "secret (shown once):     $secret"
echo "otpauth URI (for an app): $uri"
echo "emergency codes issued:  $codes (shown once, stored only as salted hashes)"
echo "The profile is pending until a first code is verified:"
cli show "$account" --fields account,verified,enabled,algorithm,digits,period

# Codes for three consecutive 30 s steps; stay clear of a step boundary.
while [ $(( 30 - $(date +%s) % 30 )) -le 5 ]; do sleep 1; done
now="$(date +%s)"
previous="$(oathtool --totp --base32 -N "@$((now - 30))" "$secret")"
current="$(oathtool --totp --base32 -N "@$now" "$secret")"

say "Verifying with the authenticator's code of the previous step ($previous): pam-totp verify"
cli verify "$account" "$previous" || fail "verify refused a correct code"

say "Logging in through libpam: $service = 'auth required libpam_totp.so socket=...'"
printf '# pam-totp demo (removed on exit)\nauth required %s socket=%s\n' "$module" "$socket" > "$service_file"
echo "typing the current code $current at the prompt:"
if ! printf '%s\n' "$current" | pamtester -v "$service" "$account" authenticate; then
    fail "login with a correct code was refused"
fi

say "Replaying the same code $current: it must be refused"
if printf '%s\n' "$current" | pamtester -v "$service" "$account" authenticate; then
    fail "a replayed code was accepted"
fi
echo "(refused, as it should be: a code is accepted once)"

say "The profile now: pam-totp show $account"
cli show "$account"

say "Demo finished: every step behaved as expected."
