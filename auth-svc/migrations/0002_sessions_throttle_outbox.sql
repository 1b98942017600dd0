-- Sessions: one row per login (a refresh-token family). Revocation is recorded here, and a
-- refresh locks its session row while it creates the successor, so a revocation (which
-- updates the row) and a concurrent refresh are serialised: no child token can appear in a
-- session that is being revoked. The absolute session lifetime counts from created_at.
CREATE TABLE auth.sessions (
    id             uuid PRIMARY KEY,
    account_id     uuid        NOT NULL REFERENCES auth.accounts (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX sessions_live_by_account ON auth.sessions (account_id) WHERE revoked_at IS NULL;

INSERT INTO auth.sessions (id, account_id, created_at, revoked_at, revoked_reason)
SELECT family_id,
       (array_agg(account_id))[1],
       min(created_at),
       CASE WHEN bool_and(revoked_at IS NOT NULL) THEN max(revoked_at) END,
       CASE WHEN bool_and(revoked_at IS NOT NULL) THEN max(revoked_reason) END
  FROM auth.refresh_tokens
 GROUP BY family_id;

-- Revocation now lives on the session; a spent token keeps its successor's answer, sealed
-- with a key derived from the spent token (a retry within the grace window gets the same
-- successor, never a new one).
DROP INDEX auth.refresh_tokens_live_by_account;
ALTER TABLE auth.refresh_tokens
    DROP COLUMN revoked_at,
    DROP COLUMN revoked_reason,
    ADD COLUMN successor_sealed bytea,
    ADD CONSTRAINT refresh_tokens_session_fkey
        FOREIGN KEY (family_id) REFERENCES auth.sessions (id) ON DELETE CASCADE;

-- Throttling keys are now (account, address) pairs, accounts and addresses with new meanings:
-- start from empty counters.
DELETE FROM auth.login_throttle;
ALTER TABLE auth.login_throttle ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX login_throttle_updated_at ON auth.login_throttle (updated_at);

-- Domain events, written in the transaction of the change they describe and deleted by the
-- relay once the broker confirmed them.
CREATE TABLE auth.outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid        NOT NULL,
    routing_key text        NOT NULL,
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
