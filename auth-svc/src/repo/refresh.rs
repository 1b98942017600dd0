//! `auth.refresh_tokens`: SHA-256 hashes of refresh tokens, each in a session (`family_id`).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A refresh token about to be stored: its id and hash (the token itself goes to the client).
pub(crate) struct NewRefreshToken {
    pub id: Uuid,
    pub hash: Vec<u8>,
}

/// A presented token spent for its successor: what [`replace`] and [`replace_if_live`] write.
pub(crate) struct Replacement<'a> {
    /// The presented token's id.
    pub spent: Uuid,
    pub successor: &'a NewRefreshToken,
    pub account: Uuid,
    pub session: Uuid,
    /// The successor's expiry.
    pub expires_at: DateTime<Utc>,
    /// The successor pair sealed for a retry within the grace window (stored on the
    /// successor's row).
    pub successor_sealed: Option<&'a [u8]>,
    /// The request id to record as applied (empty: none).
    pub request_id: &'a str,
}

/// A presented refresh token, locked with its session, and its account.
pub(crate) struct PresentedToken {
    pub id: Uuid,
    pub account_id: Uuid,
    /// Its session.
    pub family_id: Uuid,
    pub expires_at: DateTime<Utc>,
    /// When it was replaced by its successor.
    pub used_at: Option<DateTime<Utc>>,
    pub session_created_at: DateTime<Utc>,
    pub session_revoked: bool,
    pub roles: Vec<String>,
    pub disabled: bool,
    /// The database's clock (transaction start), the time every rule of the refresh uses.
    pub now: DateTime<Utc>,
}

/// Stores a refresh token of `session`.
pub(crate) async fn insert(
    db: impl PgExecutor<'_>,
    token: &NewRefreshToken,
    account: Uuid,
    session: Uuid,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO auth.refresh_tokens (id, account_id, family_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        token.id,
        account,
        session,
        &token.hash,
        expires_at
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The token hashed `hash` as it is now, nothing locked: what a refresh's fast path
/// ([`replace_if_live`]) reads before it signs the successor.
pub(crate) async fn peek_presented(
    db: impl PgExecutor<'_>,
    hash: &[u8],
) -> sqlx::Result<Option<PresentedToken>> {
    let found = peek_many(db, &[hash.to_vec()]).await?;
    Ok(found.into_iter().next().map(|(_, token)| token))
}

/// [`peek_presented`] for many hashes in one query: the tokens found, each with its hash.
pub(crate) async fn peek_many(
    db: impl PgExecutor<'_>,
    hashes: &[Vec<u8>],
) -> sqlx::Result<Vec<(Vec<u8>, PresentedToken)>> {
    let rows = sqlx::query!(
        r#"SELECT t.token_hash, t.id, t.account_id, t.family_id, t.expires_at, t.used_at,
                  s.created_at AS session_created_at,
                  s.revoked_at IS NOT NULL AS "session_revoked!",
                  a.roles, a.disabled, now() AS "now!"
             FROM auth.refresh_tokens t
            CROSS JOIN LATERAL (SELECT created_at, revoked_at FROM auth.sessions
                                 WHERE id = t.family_id LIMIT 1) s
            CROSS JOIN LATERAL (SELECT roles, disabled FROM auth.accounts
                                 WHERE id = t.account_id LIMIT 1) a
            WHERE t.token_hash = ANY($1)"#,
        hashes
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let token = PresentedToken {
                id: r.id,
                account_id: r.account_id,
                family_id: r.family_id,
                expires_at: r.expires_at,
                used_at: r.used_at,
                session_created_at: r.session_created_at,
                session_revoked: r.session_revoked,
                roles: r.roles,
                disabled: r.disabled,
                now: r.now,
            };
            (r.token_hash, token)
        })
        .collect())
}

/// The token hashed `hash`, locked together with its session row (`FOR UPDATE`, the session
/// first: the order [`replace_if_live`] takes them in), so refreshes of one token run one at a
/// time and a refresh and a revocation of its session are serialised. The session and account
/// are named by key (from the token's row, whose session and account never change) rather than
/// joined to it, so that every plan finds each row by its own key — joined, a plan may find the
/// token among all of its session's tokens instead.
pub(crate) async fn lock_presented(
    db: impl PgExecutor<'_>,
    hash: &[u8],
) -> sqlx::Result<Option<PresentedToken>> {
    sqlx::query_as!(
        PresentedToken,
        r#"SELECT t.id, t.account_id, t.family_id, t.expires_at, t.used_at,
                  s.created_at AS session_created_at,
                  s.revoked_at IS NOT NULL AS "session_revoked!",
                  a.roles, a.disabled, now() AS "now!"
             FROM auth.refresh_tokens t, auth.sessions s, auth.accounts a
            WHERE t.token_hash = $1
              AND s.id = (SELECT family_id FROM auth.refresh_tokens WHERE token_hash = $1)
              AND a.id = (SELECT account_id FROM auth.refresh_tokens WHERE token_hash = $1)
              FOR UPDATE OF s, t"#,
        hash
    )
    .fetch_optional(db)
    .await
}

/// The successor pair of the spent token `spent`, sealed with a key derived from that token: on
/// the successor's row, or on the spent token's own for tokens spent before migration 0003.
/// Read by a statement of its own, after the token is locked, so that a successor committed
/// while the lock was awaited is seen (a locking read sees the locked rows' latest versions,
/// not rows that appeared meanwhile).
pub(crate) async fn sealed_successor(
    db: impl PgExecutor<'_>,
    spent: Uuid,
) -> sqlx::Result<Option<Vec<u8>>> {
    let sealed = sqlx::query_scalar!(
        r#"SELECT COALESCE((SELECT c.sealed_pair FROM auth.refresh_tokens c
                              WHERE c.id = t.replaced_by),
                            t.successor_sealed) AS sealed
             FROM auth.refresh_tokens t
            WHERE t.id = $1"#,
        spent
    )
    .fetch_optional(db)
    .await?;
    Ok(sealed.flatten())
}

/// Spends the presented token for its successor (same account and session), the successor's row
/// keeping the sealed pair for a retry within the grace window, and records the request id as
/// applied, in one statement.
/// False when the request id was applied already (by an earlier or concurrent delivery): then
/// nothing is written. An empty request id is not recorded.
pub(crate) async fn replace(db: impl PgExecutor<'_>, r: &Replacement<'_>) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"WITH claim AS (
             INSERT INTO auth.processed_requests (request_id, method)
             SELECT $8, 'auth.refresh' WHERE $8 <> ''
             ON CONFLICT (request_id) DO NOTHING
             RETURNING 1
         ), go AS (
             SELECT 1 WHERE $8 = '' OR EXISTS (SELECT 1 FROM claim)
         ), child AS (
             INSERT INTO auth.refresh_tokens
                    (id, account_id, family_id, token_hash, expires_at, sealed_pair)
             SELECT $2, $3, $4, $5, $6, $7 FROM go
         ), spent AS (
             UPDATE auth.refresh_tokens SET used_at = now(), replaced_by = $2
              WHERE id = $1 AND EXISTS (SELECT 1 FROM go)
         )
         SELECT EXISTS (SELECT 1 FROM go) AS "applied!""#,
        r.spent,
        r.successor.id,
        r.account,
        r.session,
        &r.successor.hash,
        r.expires_at,
        r.successor_sealed,
        r.request_id
    )
    .fetch_one(db)
    .await
}

/// A refresh's fast path, one statement outside any transaction: what [`replace`] does, only
/// while the presented token is unspent and unexpired and its session live. The
/// session row is share-locked before the token (the order of [`lock_presented`]), so a
/// revocation waits for this statement as it waits for a locked refresh (the token's other
/// conditions wrapped in `IS TRUE`: searched by the index of expiry times, a plan read every
/// unexpired token). False when nothing was written (spent or revoked meanwhile): the caller
/// then takes the locked path, which tells a retry within the grace window from reuse.
pub(crate) async fn replace_if_live(
    db: impl PgExecutor<'_>,
    r: &Replacement<'_>,
) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"WITH spent AS (
             UPDATE auth.refresh_tokens t
                SET used_at = now(), replaced_by = $2
              WHERE t.id = $1 AND (t.used_at IS NULL AND t.expires_at >= now()) IS TRUE
                AND (SELECT s.revoked_at IS NULL FROM auth.sessions s
                      WHERE s.id = t.family_id FOR SHARE)
             RETURNING 1
         ), claim AS (
             INSERT INTO auth.processed_requests (request_id, method)
             SELECT $8, 'auth.refresh' FROM spent WHERE $8 <> ''
             ON CONFLICT (request_id) DO NOTHING
         ), child AS (
             INSERT INTO auth.refresh_tokens
                    (id, account_id, family_id, token_hash, expires_at, sealed_pair)
             SELECT $2, $3, $4, $5, $6, $7 FROM spent
         )
         SELECT EXISTS (SELECT 1 FROM spent) AS "spent!""#,
        r.spent,
        r.successor.id,
        r.account,
        r.session,
        &r.successor.hash,
        r.expires_at,
        r.successor_sealed,
        r.request_id
    )
    .fetch_one(db)
    .await
}

/// [`replace_if_live`] for many tokens in one statement: each presented token is spent for its
/// successor only where it is still unspent, unexpired and its session live (share-locked, as
/// there). The pairs (spent, successor) written.
pub(crate) async fn replace_many_if_live(
    db: impl PgExecutor<'_>,
    replacements: &[Replacement<'_>],
) -> sqlx::Result<Vec<(Uuid, Uuid)>> {
    let spent: Vec<Uuid> = replacements.iter().map(|r| r.spent).collect();
    let successors: Vec<Uuid> = replacements.iter().map(|r| r.successor.id).collect();
    let accounts: Vec<Uuid> = replacements.iter().map(|r| r.account).collect();
    let sessions: Vec<Uuid> = replacements.iter().map(|r| r.session).collect();
    let hashes: Vec<&[u8]> = replacements
        .iter()
        .map(|r| r.successor.hash.as_slice())
        .collect();
    let expiries: Vec<DateTime<Utc>> = replacements.iter().map(|r| r.expires_at).collect();
    let sealed: Vec<Option<&[u8]>> = replacements.iter().map(|r| r.successor_sealed).collect();
    let request_ids: Vec<&str> = replacements.iter().map(|r| r.request_id).collect();
    let rows = sqlx::query!(
        r#"WITH input AS (
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bytea[],
                                  $6::timestamptz[], $7::bytea[], $8::text[])
                    AS i (spent, successor, account, session, hash, expires_at, sealed,
                          request_id)
         ), spent AS (
             UPDATE auth.refresh_tokens t
                SET used_at = now(),
                    replaced_by = ($2::uuid[])[array_position($1::uuid[], t.id)]
              WHERE t.id = ANY($1) AND (t.used_at IS NULL AND t.expires_at >= now()) IS TRUE
                AND (SELECT s.revoked_at IS NULL FROM auth.sessions s
                      WHERE s.id = t.family_id FOR SHARE)
             RETURNING t.id, t.replaced_by
         ), done AS (
             SELECT i.* FROM input i
               JOIN spent ON spent.id = i.spent AND spent.replaced_by = i.successor
         ), claim AS (
             INSERT INTO auth.processed_requests (request_id, method)
             SELECT request_id, 'auth.refresh' FROM done WHERE request_id <> ''
             ON CONFLICT (request_id) DO NOTHING
         ), child AS (
             INSERT INTO auth.refresh_tokens
                    (id, account_id, family_id, token_hash, expires_at, sealed_pair)
             SELECT successor, account, session, hash, expires_at, sealed FROM done
         )
         SELECT spent AS "spent!", successor AS "successor!" FROM done"#,
        &spent,
        &successors,
        &accounts,
        &sessions,
        &hashes as &[&[u8]],
        &expiries,
        &sealed as &[Option<&[u8]>],
        &request_ids as &[&str]
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.spent, r.successor)).collect())
}
