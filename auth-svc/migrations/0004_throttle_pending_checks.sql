-- Password checks in flight are counted apart from failures (auth-svc/src/throttle.rs).
--
-- A check used to reserve itself as a failure before hashing, and the pair's threshold-th
-- reservation set the lock: concurrent *correct* logins of one account from one address were
-- locked out for the lock's duration, with no wrong password given, and checks that never
-- finished (a replica stopped mid-hash) stayed counted as failures. Now a check reserves a
-- place in `pending`, which bounds how many checks may run at once (so parallel guesses still
-- cannot pass the threshold), and only a finished wrong password counts as a failure and sets
-- a lock. `pending_expires_at` forgets places never given back (a replica gone mid-check).
--
-- During a rolling upgrade a replica of the earlier version still counts its checks as
-- failures and ignores `pending`; both keep every limit, the earlier one as strictly as before.
ALTER TABLE auth.login_throttle
    ADD COLUMN pending integer NOT NULL DEFAULT 0,
    ADD COLUMN pending_expires_at timestamptz;
