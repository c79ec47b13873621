-- pgbench script (docs/bench/fleet-sql/pgbench.sh): one accepted login on the fleet store,
-- today's login: 9 round trips (resolve the account; START TRANSACTION; advisory lock; profile; source; UPDATE profile; DELETE source; INSERT audit; COMMIT).
\set n random(0, 99999)
\set t 1764000000 + random(0, 1000000)
SELECT account FROM profiles WHERE account = ('tb' || lpad(:n::text, 7, '0')) OR uid = 100000 + :n ORDER BY account = ('tb' || lpad(:n::text, 7, '0')) DESC, account LIMIT 1;
BEGIN;
SELECT pg_advisory_xact_lock(hashtextextended(('tb' || lpad(:n::text, 7, '0')), 0));
SELECT id, account, uid, owner, secret, algorithm, digits, period, issuer, comment, created_at, changed_at, verified_at, last_used_at, enabled, last_step, failed_attempts, locked_until, emergency_codes, skew_window FROM profiles WHERE account = ('tb' || lpad(:n::text, 7, '0'));
SELECT failures, blocked_until, last_failure_at FROM source_failures WHERE account = ('tb' || lpad(:n::text, 7, '0')) AND source = 'bench-host-a/local';
UPDATE profiles SET account = ('tb' || lpad(:n::text, 7, '0')), uid = 100000 + :n, owner = 'bench', secret = secret, algorithm = 'SHA1', digits = 6, period = 30, issuer = 'bench', comment = NULL, created_at = 1764000000, changed_at = 1764000000, verified_at = 1764000000, last_used_at = :t, enabled = true, last_step = :t / 30, failed_attempts = 0, locked_until = NULL, emergency_codes = '', skew_window = NULL WHERE account = ('tb' || lpad(:n::text, 7, '0'));
DELETE FROM source_failures WHERE account = ('tb' || lpad(:n::text, 7, '0')) AND source = 'bench-host-a/local';
INSERT INTO audit (at, host, account, uid, op, result, service, rhost, tty, ruser, caller_uid, caller_pid) VALUES (:t, 'bench-host-a', ('tb' || lpad(:n::text, 7, '0')), 100000 + :n, 'authenticate', 'success', 'pam-totp-bench', NULL, NULL, NULL, 0, 1234);
COMMIT;
