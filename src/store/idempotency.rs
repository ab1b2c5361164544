//! Idempotency keys (IETF draft-ietf-httpapi-idempotency-key-header): a write sent with a key
//! runs once; its answer is stored in the same transaction as the write, and every retry with
//! the key gets that answer back.
//!
//! In one READ COMMITTED transaction:
//! 1. `pg_try_advisory_xact_lock(class, hashtext(scope:key))`: not granted means another request
//!    with this key is running now, on this instance or another ([`StoreError::KeyInProgress`]).
//!    The two-`int4` form of the lock lives apart from the products' `bigint` keys.
//! 2. The stored answer, if the key has one that has not expired: replayed, unless the request
//!    differs ([`StoreError::KeyReused`]). An expired one is deleted.
//! 3. The write, then its answer inserted; `COMMIT` makes both durable together.

use std::time::Duration;

use diesel::sql_types::{BigInt, Bool, Bytea, Integer, SmallInt, Text};
use diesel::{OptionalExtension as _, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::{Preconditions, ProductInput};
use crate::store::error::StoreError;
use crate::store::locks::{TxSettings, bound_waits};
use crate::store::models::Upserted;
use crate::store::upsert::{upsert_batch_in, upsert_in};

/// The lock class of idempotency keys, the first `int4` of their advisory locks ("idem").
const LOCK_CLASS: i32 = 0x6964_656d;

/// A request's idempotency key, with whose it is and what the request was.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyKey<'a> {
    /// Whose key: a fingerprint of the caller's credentials, or `""`.
    pub scope: &'a str,
    /// The key as the client sent it (unquoted).
    pub key: &'a str,
    /// SHA-256 of the request (method, path, body).
    pub fingerprint: &'a [u8],
}

/// An answer as stored for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// The headers worth replaying, by name.
    pub headers: Vec<(String, String)>,
    /// The body's bytes.
    pub body: Vec<u8>,
}

/// What became of a request with an idempotency key.
#[derive(Debug, Clone)]
pub enum Idempotent<T> {
    /// The first: the write ran, and its answer is stored.
    Ran(T, StoredResponse),
    /// A retry: the stored answer of the first.
    Replayed(StoredResponse),
}

#[derive(QueryableByName)]
struct Granted {
    #[diesel(sql_type = Bool)]
    granted: bool,
}

#[derive(QueryableByName)]
struct StoredRow {
    #[diesel(sql_type = Bytea)]
    fingerprint: Vec<u8>,
    #[diesel(sql_type = SmallInt)]
    status: i16,
    #[diesel(sql_type = Text)]
    headers: String,
    #[diesel(sql_type = Bytea)]
    body: Vec<u8>,
    #[diesel(sql_type = Bool)]
    live: bool,
}

/// The write a request with an idempotency key makes.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// One upsert (`POST /products`), under its preconditions.
    One {
        input: &'a ProductInput,
        preconditions: &'a Preconditions,
    },
    /// A batch (`POST /products/batch`).
    Batch(&'a [ProductInput]),
}

/// What the write did.
#[derive(Debug, Clone)]
pub enum Written {
    /// One upsert, and how long its lock took.
    One(Box<Upserted>, Option<Duration>),
    /// Each upsert of a batch, in order.
    Batch(Vec<Upserted>),
}

/// The answer of a write, as it will be replayed.
pub type Respond = dyn Fn(&Written) -> StoredResponse + Send + Sync;

/// Runs `write` once for `key`, in a transaction that also stores its answer (`respond` writes
/// it) for `ttl`; or replays the answer stored by an earlier request with the key. An answer is
/// stored only when the write succeeds: a failed one (a 412, a 503) leaves the key free, so a
/// retry runs again.
///
/// # Errors
/// [`StoreError::KeyInProgress`] while another request with the key runs;
/// [`StoreError::KeyReused`] when the key's stored answer is for another request; what the
/// upsert fails with. Nothing is written in any of these cases.
pub async fn run_once(
    conn: &mut AsyncPgConnection,
    settings: &TxSettings,
    key: IdempotencyKey<'_>,
    ttl: Duration,
    write: Write<'_>,
    respond: &Respond,
) -> Result<Idempotent<Written>, StoreError> {
    conn.build_transaction()
        .read_committed()
        .run(async |conn: &mut AsyncPgConnection| {
            bound_waits(conn, settings).await?;
            let lock: Granted = diesel::sql_query(
                "SELECT pg_catalog.pg_try_advisory_xact_lock($1, \
                 pg_catalog.hashtext($2 || ':' || $3)) AS granted",
            )
            .bind::<Integer, _>(LOCK_CLASS)
            .bind::<Text, _>(key.scope)
            .bind::<Text, _>(key.key)
            .get_result(conn)
            .await?;
            if !lock.granted {
                return Err(StoreError::KeyInProgress);
            }
            let stored: Option<StoredRow> = diesel::sql_query(
                "SELECT fingerprint, status, headers::text AS headers, body, \
                 expires_at > now() AS live \
                 FROM idempotency_keys WHERE scope = $1 AND key = $2",
            )
            .bind::<Text, _>(key.scope)
            .bind::<Text, _>(key.key)
            .get_result(conn)
            .await
            .optional()?;
            match stored {
                Some(row) if row.live => {
                    if row.fingerprint != key.fingerprint {
                        return Err(StoreError::KeyReused);
                    }
                    return Ok(Idempotent::Replayed(StoredResponse {
                        status: u16::try_from(row.status).unwrap_or(500),
                        headers: serde_json::from_str(&row.headers).unwrap_or_default(),
                        body: row.body,
                    }));
                }
                Some(_) => {
                    diesel::sql_query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2")
                        .bind::<Text, _>(key.scope)
                        .bind::<Text, _>(key.key)
                        .execute(conn)
                        .await?;
                }
                None => {}
            }
            let done = match write {
                Write::One {
                    input,
                    preconditions,
                } => {
                    let (upserted, waited) =
                        upsert_in(conn, settings, input, preconditions).await?;
                    Written::One(Box::new(upserted), waited)
                }
                Write::Batch(inputs) => {
                    Written::Batch(upsert_batch_in(conn, settings, inputs, false).await?)
                }
            };
            let response = respond(&done);
            let headers = serde_json::to_string(&response.headers).unwrap_or_else(|_| "[]".into());
            diesel::sql_query(
                "INSERT INTO idempotency_keys \
                 (scope, key, fingerprint, status, headers, body, expires_at) \
                 VALUES ($1, $2, $3, $4, $5::jsonb, $6, now() + $7 * interval '1 millisecond')",
            )
            .bind::<Text, _>(key.scope)
            .bind::<Text, _>(key.key)
            .bind::<Bytea, _>(key.fingerprint)
            .bind::<SmallInt, _>(i16::try_from(response.status).unwrap_or(i16::MAX))
            .bind::<Text, _>(headers)
            .bind::<Bytea, _>(&response.body)
            .bind::<BigInt, _>(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
            .execute(conn)
            .await?;
            Ok(Idempotent::Ran(done, response))
        })
        .await
}

/// Deletes up to `limit` expired keys, oldest first; how many it deleted.
///
/// # Errors
/// The database error.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM idempotency_keys WHERE (scope, key) IN (\
         SELECT scope, key FROM idempotency_keys WHERE expires_at <= now() \
         ORDER BY expires_at LIMIT $1)",
    )
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}
