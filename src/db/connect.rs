//! Opening one connection, the same way for the pool, migrations, checks and the embedded
//! cluster's set-up.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// Opens one connection, asking for untranslated server messages where the role may.
///
/// `lc_messages = 'C'` keeps error texts in English so that timeouts can be told apart (diesel
/// hides the SQLSTATE; see `db::fault`). A role that may not change it keeps
/// the server's setting.
pub async fn connect(url: &str) -> Result<AsyncPgConnection, diesel::ConnectionError> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    if conn.batch_execute("SET lc_messages TO 'C'").await.is_err() {
        log::debug!("could not set lc_messages; keeping the server's language for messages");
    }
    Ok(conn)
}
