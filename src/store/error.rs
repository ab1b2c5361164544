//! [`StoreError`]: the outcomes of a store call that are not its result.

/// Errors of the store that callers act on; everything else is a database error, classified by
/// [`crate::db::fault::classify`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no product with this id")]
    NotFound,
    #[error("product {existing_id} already has this key")]
    KeyConflict { existing_id: i64 },
    #[error("the row's key kept changing under concurrent writers")]
    KeyKeptMoving,
    #[error("another request with this idempotency key is running")]
    KeyInProgress,
    #[error("this idempotency key was used for another request")]
    KeyReused,
    /// The key a change would give the row is over `MAX_KEY_BYTES` (checked before the
    /// database is asked).
    #[error("brand, serial and manufacturer are too large together for the key index")]
    KeyTooLarge,
    /// A row's version is at 2^63-1 and cannot be raised (checked before the database is asked).
    #[error("a row's version is at its largest value")]
    VersionExhausted,
    #[error("a precondition of the request is false")]
    PreconditionFailed(crate::domain::PreconditionFailed),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}
