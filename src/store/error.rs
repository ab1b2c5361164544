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
    #[error("a precondition of the request is false")]
    PreconditionFailed(crate::domain::PreconditionFailed),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}
