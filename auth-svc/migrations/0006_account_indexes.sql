-- Two reads of an account's rows that had no index:
--
-- * Accounts by role: a change to who is an administrator counts the enabled administrators
--   left (auth-svc/src/service/accounts.rs, under the administrators' lock), once per role
--   change, disabling or deletion by an administrator and per deleted own account. Without an
--   index that count read every account. `fastupdate = off`: a GIN index otherwise keeps new
--   entries in a pending list that every search reads in full until it is merged (by vacuum,
--   autoanalyze, or when it outgrows `gin_pending_list_limit`).
-- * Sessions by account, revoked ones included: deleting an account deletes its sessions
--   (ON DELETE CASCADE), and the only index by account was `sessions_live_by_account` (live
--   sessions): every deletion read the whole table of sessions. The index by (account,
--   revocation time) serves both the cascade and "the account's live sessions" (revoked_at IS
--   NULL), so it replaces the partial one.
--
-- During a rolling upgrade, replicas from before this migration run their own statements, which
-- the planner may then plan with these indexes. CREATE INDEX is not concurrent: while the indexes
-- build, writes to auth.accounts (registrations, profile changes) and auth.sessions (logins,
-- revocations) wait — seconds per million rows.
CREATE INDEX accounts_roles ON auth.accounts USING gin (roles) WITH (fastupdate = off);
CREATE INDEX sessions_by_account ON auth.sessions (account_id, revoked_at);
DROP INDEX auth.sessions_live_by_account;
