-- Accounts: identity and profile. Emails are stored lower-case; both email and user name are
-- unique case-insensitively.
CREATE TABLE auth.accounts (
    id           uuid PRIMARY KEY,
    email        text        NOT NULL,
    username     text        NOT NULL,
    display_name text,
    roles        text[]      NOT NULL DEFAULT ARRAY['user'],
    disabled     boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_email_key ON auth.accounts (lower(email));
CREATE UNIQUE INDEX accounts_username_key ON auth.accounts (lower(username));
CREATE INDEX accounts_created_at ON auth.accounts (created_at, id);

-- Credentials: one argon2id PHC string per account.
CREATE TABLE auth.credentials (
    account_id    uuid PRIMARY KEY REFERENCES auth.accounts (id) ON DELETE CASCADE,
    password_hash text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Refresh tokens: only SHA-256 hashes are stored. A family is one login session; every refresh
-- marks the token used and issues its successor in the same family. Presenting a used token
-- (outside the grace window) revokes the whole family (RFC 9700 section 4.14).
CREATE TABLE auth.refresh_tokens (
    id             uuid PRIMARY KEY,
    account_id     uuid        NOT NULL REFERENCES auth.accounts (id) ON DELETE CASCADE,
    family_id      uuid        NOT NULL,
    token_hash     bytea       NOT NULL UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    replaced_by    uuid,
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX refresh_tokens_live_by_account ON auth.refresh_tokens (account_id) WHERE revoked_at IS NULL;
CREATE INDEX refresh_tokens_family ON auth.refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON auth.refresh_tokens (expires_at);

-- Login throttling, per login name (known or not: no enumeration) and per client address.
CREATE TABLE auth.login_throttle (
    key               text PRIMARY KEY,
    failures          integer     NOT NULL,
    window_started_at timestamptz NOT NULL,
    locked_until      timestamptz
);

-- Requests applied, by request id, so a redelivered RPC request is never applied twice.
CREATE TABLE auth.processed_requests (
    request_id text PRIMARY KEY,
    method     text        NOT NULL,
    reply      jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_requests_created_at ON auth.processed_requests (created_at);
