//! Start-up checks of the server: what the locking design relies on must really be there.

use diesel_async::AsyncPgConnection;

use crate::db::connect::connect;
use crate::db::error::DbSetupError;
use crate::db::migrations::MIGRATION_LOCK_KEY;

/// Refuses servers that accept advisory-lock calls without enforcing them (some
/// PostgreSQL-compatible databases do): two sessions must not hold one lock at once.
pub async fn check_advisory_locks(url: &str) -> Result<(), DbSetupError> {
    #[derive(diesel::QueryableByName)]
    struct Granted {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        granted: bool,
    }
    // A key of this process's own, so that instances starting together do not see each other.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let key = MIGRATION_LOCK_KEY ^ (i64::from(std::process::id()) << 32) ^ i64::from(nanos);
    async fn try_lock(
        conn: &mut AsyncPgConnection,
        key: i64,
    ) -> Result<bool, diesel::result::Error> {
        use diesel_async::RunQueryDsl as _;
        let row: Granted = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS granted")
            .bind::<diesel::sql_types::BigInt, _>(key)
            .get_result(conn)
            .await?;
        Ok(row.granted)
    }
    let mut first = connect(url).await?;
    let mut second = connect(url).await?;
    let first_got_it = try_lock(&mut first, key).await?;
    let second_got_it = try_lock(&mut second, key).await?;
    // Both connections close here, releasing whatever they hold.
    if first_got_it && !second_got_it {
        Ok(())
    } else {
        Err(DbSetupError::AdvisoryLocksNotEnforced)
    }
}
