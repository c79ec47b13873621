# Sourced by scripts/package-test.sh and scripts/systemd-test.sh: steps that print PASS or FAIL
# with their time, the first failure ending the run, and a summary in cargo's format so that
# scripts/test.sh counts the steps in its total. The sourcing script sets SUITE (its name),
# calls `finish_steps STATUS [NOTE]` last in its EXIT trap and exits with what it returns.
failed=""
passed=0
started_at=$(date +%s)

log() { printf '    %s\n' "$*"; }
fail() { echo "    error: $*" >&2; return 1; }

# step NAME FUNCTION: runs FUNCTION (in a subshell, with `set -e`), prints PASS or FAIL with its
# time; a failure ends the run.
step() {
    local name=$1 fn=$2 begin status
    begin=$(date +%s)
    echo "--- $name"
    ( set -e; "$fn" )
    status=$?
    if [ "$status" -eq 0 ]; then
        printf 'PASS %-16s (%d s)\n' "$name" $(( $(date +%s) - begin ))
        passed=$((passed + 1))
    else
        printf 'FAIL %-16s (%d s)\n' "$name" $(( $(date +%s) - begin ))
        failed=$name
        exit 1
    fi
}

# finish_steps STATUS [NOTE]: prints the summary; sets `status` to the run's exit status.
finish_steps() {
    status=$1
    local elapsed=$(( $(date +%s) - started_at ))
    if [ -n "$failed" ]; then
        echo "$SUITE: FAIL ($failed) after $elapsed s${2:+; $2}"
        echo "test result: FAILED. $passed passed; 1 failed; ($SUITE steps)"
        [ "$status" -ne 0 ] || status=1
    elif [ "$status" -eq 0 ]; then
        echo "$SUITE: PASS (all steps) in $elapsed s"
        echo "test result: ok. $passed passed; 0 failed; ($SUITE steps)"
    fi
}
