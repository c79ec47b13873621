-- pgbench script (docs/bench/fleet-sql/pgbench.sh): one accepted login on the fleet store,
-- 6 round trips: as today, but one SELECT for the profile and this host's source row (LEFT JOIN) and one statement for all writes (data-modifying CTEs).
\set n random(0, 99999)
\set t 1764000000 + random(0, 1000000)
SELECT account FROM profiles WHERE account = ('tb' || lpad(:n::text, 7, '0')) OR uid = 100000 + :n ORDER BY account = ('tb' || lpad(:n::text, 7, '0')) DESC, account LIMIT 1;
BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended(('tb' || lpad(:n::text, 7, '0')), 0));
SELECT p.id, p.account, p.uid, p.owner, p.secret, p.algorithm, p.digits, p.period, p.issuer, p.comment, p.created_at, p.changed_at, p.verified_at, p.last_used_at, p.enabled, p.last_step, p.failed_attempts, p.locked_until, p.emergency_codes, p.skew_window, s.failures, s.blocked_until, s.last_failure_at FROM profiles p LEFT JOIN source_failures s ON s.account = p.account AND s.source = 'bench-host-a/local' WHERE p.account = ('tb' || lpad(:n::text, 7, '0'));
WITH u AS (UPDATE profiles SET account = ('tb' || lpad(:n::text, 7, '0')), uid = 100000 + :n, owner = 'bench', secret = secret, algorithm = 'SHA1', digits = 6, period = 30, issuer = 'bench', comment = NULL, created_at = 1764000000, changed_at = 1764000000, verified_at = 1764000000, last_used_at = :t, enabled = true, last_step = :t / 30, failed_attempts = 0, locked_until = NULL, emergency_codes = '', skew_window = NULL WHERE account = ('tb' || lpad(:n::text, 7, '0')) RETURNING 1), d AS (DELETE FROM source_failures WHERE account = ('tb' || lpad(:n::text, 7, '0')) AND source = 'bench-host-a/local' RETURNING 1) INSERT INTO audit (at, host, account, uid, op, result, service, rhost, tty, ruser, caller_uid, caller_pid) VALUES (:t, 'bench-host-a', ('tb' || lpad(:n::text, 7, '0')), 100000 + :n, 'authenticate', 'success', 'pam-totp-bench', NULL, NULL, NULL, 0, 1234);
COMMIT;
