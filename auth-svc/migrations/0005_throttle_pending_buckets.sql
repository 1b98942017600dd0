-- Places of password checks in flight are counted in two buckets of 60 s (auth-svc/src/throttle.rs)
-- instead of under one expiry time per key.
--
-- With one expiry per key, every new reservation pushed it forward, so on a key in steady use
-- (a shared proxy address, an account logging in often) a place never given back was never
-- forgotten. Now a place lives in the bucket of the minute it was taken and is forgotten when the
-- next bucket ends — one to two minutes later however busy the key — and counted as a failure
-- then, so a check whose failure could not be written still counts.
--
-- Migration 0004 said that during a rolling upgrade both versions keep every limit; not quite:
-- a replica from before 0004 ignores the places, so while both serve logins up to twice
-- `threshold - failures` checks of a pair can be in flight. The same holds across this one for a
-- replica of 0004, which writes `pending_expires_at` (gone) and is refused by its statements:
-- upgrade the replicas together, or accept failed logins until the old ones are gone.
--
-- Places held when this runs are dropped (their checks end against empty buckets).
ALTER TABLE auth.login_throttle
    DROP COLUMN pending_expires_at,
    ADD COLUMN pending_before integer NOT NULL DEFAULT 0,
    ADD COLUMN pending_epoch bigint NOT NULL DEFAULT 0;
UPDATE auth.login_throttle SET pending = 0 WHERE pending <> 0;
