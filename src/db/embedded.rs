//! The private PostgreSQL cluster used when no `DATABASE_URL` is given.
//!
//! The cluster lives in `$DATA_DIR/postgres` and keeps its data across runs. It listens only on a
//! unix socket in a fresh private directory (mode 0700) under `/tmp`, never on TCP, and trusts
//! whoever can reach that socket. As root, PostgreSQL (which refuses to run as root) runs as the
//! `postgres` system user.
//!
//! The cluster is stopped by a small watchdog shell that waits for its standard input to close:
//! the service closes it on a clean exit, and the kernel closes it when the service dies in any
//! other way, so no cluster outlives the process that started it.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use diesel_async::{RunQueryDsl as _, SimpleAsyncConnection as _};

/// The database the service uses inside the embedded cluster.
pub const DATABASE_NAME: &str = "product_service";
/// The cluster's superuser.
const SUPERUSER: &str = "postgres";
/// Port number of the unix socket (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;

/// Errors of the embedded cluster, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH, via \
         `pg_config --bindir`, or in /usr/lib/postgresql/*/bin. Install them \
         (Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql@16`) \
         or set DATABASE_URL to a running server"
    )]
    BinariesNotFound,
    #[error(
        "running as root, PostgreSQL needs an unprivileged `postgres` system user to run as \
         (`apt-get install postgresql` creates it); or run as a normal user, or set DATABASE_URL"
    )]
    NoPostgresUser,
    #[error(
        "the `postgres` user cannot reach {0}: every parent directory of DATA_DIR must be \
         searchable by it (chmod o+x), or choose another DATA_DIR"
    )]
    NotTraversable(PathBuf),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the database: {0}")]
    CreateDatabase(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedPgError + '_ {
    move |source| EmbeddedPgError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How much the cluster may trade durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// PostgreSQL's defaults: fsync on. For the service.
    Durable,
    /// No fsync: for throw-away test clusters only.
    Ephemeral,
}

/// A running private cluster. Dropping it stops the cluster if this process started it.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    /// The watchdog that stops the cluster when its stdin closes; `None` if we reused a cluster
    /// another process started.
    watchdog: Option<Child>,
}

/// The user PostgreSQL runs as when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl EmbeddedPostgres {
    /// Starts the cluster in `data_root/postgres`, creating it on first use, or reuses the one
    /// already running there.
    pub fn start(data_root: &Path, durability: Durability) -> Result<Self, EmbeddedPgError> {
        let bin_dir = find_bin_dir()?;
        let run_as = run_as()?;
        fs::create_dir_all(data_root).map_err(io_error(data_root))?;
        let data_root = fs::canonicalize(data_root).map_err(io_error(data_root))?;
        let data_dir = data_root.join("postgres");
        if let Some(run_as) = run_as {
            check_traversable(&data_root, run_as)?;
        }

        if !data_dir.join("PG_VERSION").exists() {
            init_cluster(&bin_dir, &data_dir, run_as, durability)?;
        }
        if let Some((socket_dir, port)) = running_cluster(&bin_dir, &data_dir, run_as) {
            log::info!(
                "reusing the PostgreSQL cluster already running in {}",
                data_dir.display()
            );
            return Ok(Self {
                data_dir,
                socket_dir,
                port,
                watchdog: None,
            });
        }

        let socket_dir = tempfile::Builder::new()
            .prefix("product-service-pg.")
            .tempdir_in("/tmp")
            .map_err(io_error(Path::new("/tmp")))?
            .keep();
        chown_to(&socket_dir, run_as)?;
        let log_file = data_dir.join("server.log");
        let mut options = format!(
            "-k {} -p {PORT} -c listen_addresses=''",
            socket_dir.display()
        );
        if durability == Durability::Ephemeral {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
            options.push_str(" -c max_connections=400");
        }
        let pg_ctl = bin_dir.join("pg_ctl");
        run(
            Command::new(&pg_ctl)
                .arg("start")
                .arg("-D")
                .arg(&data_dir)
                .arg("-l")
                .arg(&log_file)
                .args(["-w", "-t", "60", "-o"])
                .arg(&options),
            run_as,
            "pg_ctl start",
        )
        .map_err(|e| match e {
            EmbeddedPgError::Command { what, detail } => EmbeddedPgError::Command {
                what,
                detail: format!("{detail}\nserver log: {}", tail(&log_file)),
            },
            other => other,
        })?;

        // A throw-away cluster takes its whole directory with it when it stops.
        let remove_on_stop = (durability == Durability::Ephemeral).then_some(data_root.as_path());
        if remove_on_stop.is_some() {
            chown_to(&data_root, run_as)?;
        }
        let watchdog = spawn_watchdog(&pg_ctl, &data_dir, &socket_dir, remove_on_stop, run_as)?;
        log::info!(
            "started PostgreSQL: data in {}, log in {}",
            data_dir.display(),
            log_file.display()
        );
        Ok(Self {
            data_dir,
            socket_dir,
            port: PORT,
            watchdog: Some(watchdog),
        })
    }

    /// The connection string of database `dbname` in this cluster.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={SUPERUSER} dbname={dbname}",
            self.socket_dir.display(),
            self.port
        )
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A `psql` command line that connects to `dbname`.
    pub fn psql_command(&self, dbname: &str) -> String {
        format!("psql \"{}\"", self.url(dbname))
    }

    /// Creates `dbname` unless it exists.
    pub async fn ensure_database(&self, dbname: &str) -> Result<(), EmbeddedPgError> {
        #[derive(diesel::QueryableByName)]
        struct Exists {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            exists: bool,
        }
        let create_error =
            |e: &dyn std::fmt::Display| EmbeddedPgError::CreateDatabase(e.to_string());
        let mut conn = crate::db::connect::connect(&self.url("postgres"))
            .await
            .map_err(|e| create_error(&e))?;
        let found: Exists = diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists",
        )
        .bind::<diesel::sql_types::Text, _>(dbname)
        .get_result(&mut conn)
        .await
        .map_err(|e| create_error(&e))?;
        if !found.exists {
            let quoted = dbname.replace('"', "\"\"");
            conn.batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
                .await
                .map_err(|e| create_error(&e))?;
        }
        Ok(())
    }

    /// Stops the cluster (if this process started it) and waits until it is down.
    pub fn stop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            // Closing the watchdog's stdin is its signal to stop the cluster.
            drop(watchdog.stdin.take());
            match watchdog.wait() {
                Ok(status) if status.success() => {
                    log::info!("stopped PostgreSQL ({})", self.data_dir.display());
                }
                Ok(status) => log::warn!("stopping PostgreSQL ended with {status}"),
                Err(e) => log::warn!("could not wait for PostgreSQL to stop: {e}"),
            }
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_bin_dir() -> Result<PathBuf, EmbeddedPgError> {
    let has_binaries = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| is_executable(&dir.join(b)))
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_binaries(&dir) {
                // Resolve links (Debian links /usr/local/bin/initdb into the versioned dir).
                let initdb =
                    fs::canonicalize(dir.join("initdb")).unwrap_or_else(|_| dir.join("initdb"));
                return Ok(initdb.parent().map_or(dir, Path::to_path_buf));
            }
        }
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_binaries(&dir) {
            return Ok(dir);
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_binaries(dir))
        .collect();
    versioned.sort();
    versioned
        .pop()
        .map(|(_, dir)| dir)
        .ok_or(EmbeddedPgError::BinariesNotFound)
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `Some(postgres user)` when running as root, where PostgreSQL refuses to run.
fn run_as() -> Result<Option<RunAs>, EmbeddedPgError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name(SUPERUSER)
        .ok()
        .flatten()
        .ok_or(EmbeddedPgError::NoPostgresUser)?;
    Ok(Some(RunAs {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

/// Every ancestor of `dir` must be searchable by the user PostgreSQL runs as.
fn check_traversable(dir: &Path, run_as: RunAs) -> Result<(), EmbeddedPgError> {
    for ancestor in dir.ancestors() {
        let meta = fs::metadata(ancestor).map_err(io_error(ancestor))?;
        let mode = meta.mode();
        let searchable = if meta.uid() == run_as.uid {
            mode & 0o100 != 0
        } else if meta.gid() == run_as.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(EmbeddedPgError::NotTraversable(ancestor.to_owned()));
        }
    }
    Ok(())
}

fn chown_to(path: &Path, run_as: Option<RunAs>) -> Result<(), EmbeddedPgError> {
    if let Some(RunAs { uid, gid }) = run_as {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_error(path))?;
    }
    Ok(())
}

/// Runs a PostgreSQL tool as the cluster's user, in its own process group (so a Ctrl-C meant for
/// the service does not reach the database directly).
fn command_as(command: &mut Command, run_as: Option<RunAs>) -> &mut Command {
    command
        .current_dir("/")
        .process_group(0)
        .env_remove("PGDATA");
    if let Some(RunAs { uid, gid }) = run_as {
        command.uid(uid).gid(gid);
    }
    command
}

fn run(command: &mut Command, run_as: Option<RunAs>, what: &str) -> Result<(), EmbeddedPgError> {
    let output = command_as(command, run_as)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| EmbeddedPgError::Command {
            what: what.to_owned(),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(EmbeddedPgError::Command {
            what: what.to_owned(),
            detail: format!(
                "{}\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

fn init_cluster(
    bin_dir: &Path,
    data_dir: &Path,
    run_as: Option<RunAs>,
    durability: Durability,
) -> Result<(), EmbeddedPgError> {
    log::info!("creating a PostgreSQL cluster in {}", data_dir.display());
    fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700)).map_err(io_error(data_dir))?;
    chown_to(data_dir, run_as)?;
    let mut initdb = Command::new(bin_dir.join("initdb"));
    initdb.arg("-D").arg(data_dir).args([
        "-U",
        SUPERUSER,
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
    ]);
    if durability == Durability::Ephemeral {
        initdb.arg("--no-sync");
    }
    run(&mut initdb, run_as, "initdb")
}

/// The socket directory and port of a cluster already running on `data_dir`, if any.
fn running_cluster(
    bin_dir: &Path,
    data_dir: &Path,
    run_as: Option<RunAs>,
) -> Option<(PathBuf, u16)> {
    let status = command_as(&mut Command::new(bin_dir.join("pg_ctl")), run_as)
        .arg("status")
        .arg("-D")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    // postmaster.pid: pid, data dir, start time, port, socket directory, ...
    let pid_file = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = pid_file.lines().collect();
    let port = lines.get(3)?.trim().parse().ok()?;
    let socket_dir = PathBuf::from(lines.get(4)?.trim());
    socket_dir.is_dir().then_some((socket_dir, port))
}

/// Starts the shell that stops the cluster and removes its socket directory (and
/// `remove_on_stop`) once its stdin closes, which happens at the latest when this process exits.
fn spawn_watchdog(
    pg_ctl: &Path,
    data_dir: &Path,
    socket_dir: &Path,
    remove_on_stop: Option<&Path>,
    run_as: Option<RunAs>,
) -> Result<Child, EmbeddedPgError> {
    let mut watchdog = command_as(&mut Command::new("/bin/sh"), run_as)
        .args([
            "-c",
            r#"read -r ready; echo up; while read -r _; do :; done; "$0" stop -D "$1" -m fast -w -t 60 >/dev/null && rm -rf "$2" ${3:+"$3"}"#,
        ])
        .arg(pg_ctl)
        .arg(data_dir)
        .arg(socket_dir)
        .arg(remove_on_stop.unwrap_or(Path::new("")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| EmbeddedPgError::Command { what: "watchdog".to_owned(), detail: e.to_string() })?;
    // A round trip through the pipe proves the watchdog is reading before we rely on it.
    let handshake = (|| {
        let stdin = watchdog.stdin.as_mut()?;
        stdin.write_all(b"ready\n").ok()?;
        stdin.flush().ok()?;
        let mut up = [0u8; 3];
        watchdog.stdout.take()?.read_exact(&mut up).ok()?;
        (&up == b"up\n").then_some(())
    })();
    handshake
        .map(|()| watchdog)
        .ok_or_else(|| EmbeddedPgError::Command {
            what: "watchdog".to_owned(),
            detail: "the watchdog shell did not start".to_owned(),
        })
}

/// The last lines of the server log, for error messages.
fn tail(log_file: &Path) -> String {
    let text = fs::read_to_string(log_file).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
