//! Opening one connection, the same way for the pool, migrations, checks and the embedded
//! cluster's set-up: through a [`Tap`] that records the SQLSTATE of every server error.
//!
//! `DATABASE_URL` is read by tokio-postgres (a URL or `key=value` pairs). Several hosts
//! (`host=a,b` or `postgres://a,b/db`) are tried in order; with `target_session_attrs=read-write`
//! a host whose sessions are read-only (a hot standby) is skipped, so after a failover the next
//! connection finds the new primary. Connections are not encrypted (`sslmode=require` is
//! refused), as before.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, TargetSessionAttrs};
use tokio_postgres::{Config as PgConfig, NoTls};
use tokio_util::either::Either;

use crate::db::sqlstate::{SqlState, SqlStates, Tap};

/// What to tell an operator whose connections go through a transaction pooler that loses
/// prepared statements between transactions.
pub const POOLER_WITHOUT_PREPARED_STATEMENTS: &str = "the connection goes through a \
    transaction-pooling proxy that does not keep prepared statements (PgBouncer before 1.21 in \
    pool_mode = transaction, or max_prepared_statements = 0); product-service prepares its \
    statements, so set max_prepared_statements (PgBouncer 1.21 or later, e.g. 200) or use \
    pool_mode = session";

/// Whether a server error says that prepared statements do not survive between transactions:
/// 42P05 duplicate_prepared_statement (another client's `s0` on the same server connection) or
/// 26000 invalid_sql_statement_name (ours is on another server connection).
pub fn loses_prepared_statements(code: &SqlState) -> bool {
    matches!(code.code(), "42P05" | "26000")
}

/// What a connection attempt that timed out says (before the time it waited).
const NO_ANSWER: &str = "no answer within";

/// Whether `error` is [`connect`]'s: no host answered in time, at least one of them timed out
/// (a host unreachable, or a pooler waiting for a free server connection), rather than refused.
pub fn timed_out(error: &ConnectionError) -> bool {
    matches!(error, ConnectionError::BadConnection(why) if why.contains(NO_ANSWER))
}

/// Longest time to open one connection to one host, when the URL sets no `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection with the record of the server errors it received.
pub struct DbConnection {
    conn: AsyncPgConnection,
    sqlstates: SqlStates,
}

impl DbConnection {
    /// The SQLSTATEs of the server errors this connection received.
    pub fn sqlstates(&self) -> &SqlStates {
        &self.sqlstates
    }
}

impl Deref for DbConnection {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl DerefMut for DbConnection {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}

/// Opens one connection to `url` (see the module docs for hosts and session attributes).
///
/// # Errors
/// [`ConnectionError::InvalidConnectionUrl`] for a URL tokio-postgres cannot read;
/// [`ConnectionError::BadConnection`] naming each host's failure when none could be used.
pub async fn connect(url: &str) -> Result<AsyncPgConnection, ConnectionError> {
    Ok(connect_recording(url).await?.conn)
}

/// [`connect`], keeping the record of the connection's server errors.
///
/// # Errors
/// As [`connect`].
pub async fn connect_recording(url: &str) -> Result<DbConnection, ConnectionError> {
    Ok(connect_preferring(url, 0).await?.0)
}

/// [`connect_recording`], trying the hosts from the `first`-th on (then the ones before it);
/// returns the connection and the index of the host that took it, so that the next connection
/// can start there and not wait again for a dead host listed earlier.
///
/// # Errors
/// As [`connect`].
pub async fn connect_preferring(
    url: &str,
    first: usize,
) -> Result<(DbConnection, usize), ConnectionError> {
    let config = parse(url)?;
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        return Err(ConnectionError::InvalidConnectionUrl(
            "the connection string names no host (host=... or postgres://host/...)".to_owned(),
        ));
    }
    let ports = config.get_ports();
    let timeout = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT);
    let mut failures = Vec::new();
    let first = first % hosts.len();
    for i in (first..hosts.len()).chain(0..first) {
        let host = &hosts[i];
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        match tokio::time::timeout(timeout, connect_host(&config, host, port)).await {
            Ok(Ok(conn)) => return Ok((conn, i)),
            Ok(Err(why)) => failures.push(format!("{}: {why}", shown(host, port))),
            Err(_) => failures.push(format!(
                "{}: {NO_ANSWER} {timeout:?} (unreachable, or a pooler waiting for a free \
                 server connection: its pool for this database, default_pool_size, used up)",
                shown(host, port)
            )),
        }
    }
    Err(ConnectionError::BadConnection(failures.join("; ")))
}

fn parse(url: &str) -> Result<PgConfig, ConnectionError> {
    url.parse()
        .map_err(|e| ConnectionError::InvalidConnectionUrl(format!("{e}")))
}

/// The longest one connection attempt to `url` can take: every host's connect timeout.
pub fn connect_budget(url: &str) -> Duration {
    let Ok(config) = parse(url) else {
        return CONNECT_TIMEOUT;
    };
    let per_host = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT);
    per_host * u32::try_from(config.get_hosts().len().max(1)).unwrap_or(1)
}

fn shown(host: &Host, port: u16) -> String {
    match host {
        Host::Tcp(name) => format!("{name}:{port}"),
        Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
    }
}

/// Opens a connection to one host, and checks its session attributes.
async fn connect_host(config: &PgConfig, host: &Host, port: u16) -> Result<DbConnection, String> {
    let stream = match host {
        Host::Tcp(name) => {
            let stream = TcpStream::connect((name.as_str(), port))
                .await
                .map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            Either::Left(stream)
        }
        Host::Unix(dir) => {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            Either::Right(UnixStream::connect(path).await.map_err(|e| e.to_string())?)
        }
    };
    let sqlstates = SqlStates::default();
    let refused = |error: &dyn std::fmt::Display| match sqlstates.first() {
        Some(code) if loses_prepared_statements(&code) => {
            POOLER_WITHOUT_PREPARED_STATEMENTS.to_owned()
        }
        _ => error.to_string(),
    };
    let (client, connection) = config
        .connect_raw(Tap::new(stream, sqlstates.clone()), NoTls)
        .await
        .map_err(|e| refused(&e))?;
    // The connection task ends when the client is dropped, or the server goes away.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            log::debug!("database connection ended: {e}");
        }
    });
    if config.get_target_session_attrs() == TargetSessionAttrs::ReadWrite {
        let rows = client
            .simple_query("SHOW transaction_read_only")
            .await
            .map_err(|e| e.to_string())?;
        let read_only = rows.iter().any(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0) == Some("on"),
            _ => false,
        });
        if read_only {
            return Err("read-only (target_session_attrs=read-write asks for a primary)".into());
        }
    }
    let conn = AsyncPgConnection::try_from(client)
        .await
        .map_err(|e| refused(&e))?;
    Ok(DbConnection { conn, sqlstates })
}
