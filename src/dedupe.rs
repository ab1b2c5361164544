//! `product-service dedupe`: finds keys with more than one row, and keys stored in a spelling
//! other than their canonical form (trimmed, Unicode NFC: rows written before key fields were
//! normalised), and with `--apply` merges them.
//!
//! Dry run by default: prints each duplicated key with its ids, and each canonical key with its
//! stored spellings and their ids, and exits 1 if there are any, 0 if none. `--apply` merges each
//! group in its own transaction under the advisory locks of its keys (every spelling and the
//! canonical key; bounded by `LOCK_TIMEOUT_MS`), so it is safe while the service runs: the oldest
//! row stays and gets the canonical key. It prints every deleted row in full, and every key it
//! rewrote, on stdout so nothing is lost, and exits 0 when the table is clean afterwards.
//! `--json` prints JSON lines instead of text. Summaries go to stderr, and so do the rows whose
//! key holds an invisible format character, which requests can no longer name: they are left
//! as they are, and do not change the exit status (see `store::duplicates::spelling_groups`).

use std::io::Write as _;

use crate::config::Config;
use crate::db::{self, DbSetupError};
use crate::domain::{Product, ProductKey};
use crate::service::ServiceError;
use crate::store::duplicates::{
    DuplicateGroup, Merged, SpellingGroup, SpellingReport, duplicate_groups, duplicate_key_groups,
    merge_duplicates, merge_spellings, spelling_groups,
};
use crate::store::{StoreError, TxSettings};

/// What the command found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No key has more than one row (after the merge, with `--apply`).
    Clean,
    /// Some key still has more than one row.
    Duplicates,
}

/// The command's options.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct DedupeArgs {
    /// Merge the duplicates (default: only report them).
    #[arg(long)]
    pub apply: bool,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Errors that stop the command.
#[derive(Debug, thiserror::Error)]
pub enum DedupeError {
    /// No `DATABASE_URL`, and no embedded cluster in `DATA_DIR`: nothing to check (starting a
    /// new, empty cluster would report a false "clean").
    #[error(
        "no database to check: DATABASE_URL is not set and {0} holds no cluster \
         (set DATABASE_URL, or DATA_DIR to the service's data directory)"
    )]
    NoDatabase(std::path::PathBuf),
    #[error(transparent)]
    Setup(#[from] DbSetupError),
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
}

fn print_json(out: &mut impl std::io::Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

/// One JSON line: the fields of `group` and its number of rows, `count`.
fn print_group_json(
    out: &mut impl std::io::Write,
    group: &impl serde::Serialize,
    count: usize,
) -> std::io::Result<()> {
    #[derive(serde::Serialize)]
    struct Line<'a, G: serde::Serialize> {
        #[serde(flatten)]
        group: &'a G,
        count: usize,
    }
    print_json(out, &Line { group, count })
}

fn report(
    out: &mut impl std::io::Write,
    group: &DuplicateGroup,
    json: bool,
) -> std::io::Result<()> {
    if json {
        return print_group_json(out, group, group.ids.len());
    }
    let ids: Vec<String> = group.ids.iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "brand={:?} serial={:?} manufacturer={:?}: {} rows, ids {}",
        group.brand,
        group.serial,
        group.manufacturer,
        group.ids.len(),
        ids.join(", ")
    )
}

fn report_spellings(
    out: &mut impl std::io::Write,
    group: &SpellingGroup,
    json: bool,
) -> std::io::Result<()> {
    if json {
        return print_group_json(out, group, group.ids.len());
    }
    let ids: Vec<String> = group.ids.iter().map(ToString::to_string).collect();
    let spellings: Vec<String> = group
        .spellings
        .iter()
        .map(|spelling| {
            let ids: Vec<String> = spelling.ids.iter().map(ToString::to_string).collect();
            format!("{} (ids {})", spelling.key(), ids.join(", "))
        })
        .collect();
    writeln!(
        out,
        "{}: {} rows, ids {}, stored as spellings that differ only in normalisation: {}",
        group.key(),
        group.ids.len(),
        ids.join(", "),
        spellings.join("; ")
    )
}

/// Says on stderr which rows no request can name any more.
fn warn_unaddressable(report: &SpellingReport) {
    for row in &report.unaddressable {
        eprintln!(
            "id {}: {}: {}, so no request can name this key; left as it is \
             (PUT /products/{} gives it a new key)",
            row.id, row.key, row.why, row.id
        );
    }
}

/// Prints what one merge did: each deleted row in full, and the key it rewrote.
fn print_merge(out: &mut impl std::io::Write, merge: Merged, json: bool) -> std::io::Result<()> {
    if let Some(old_key) = &merge.old_key {
        let new_key = ProductKey::new(
            &merge.kept.brand,
            &merge.kept.serial,
            &merge.kept.manufacturer,
        );
        if json {
            #[derive(serde::Serialize)]
            struct Rekeyed<'a> {
                rekeyed: i64,
                from: &'a ProductKey,
                to: &'a ProductKey,
            }
            print_json(
                out,
                &Rekeyed {
                    rekeyed: merge.kept.id,
                    from: old_key,
                    to: &new_key,
                },
            )?;
        } else {
            writeln!(out, "rekeyed id {}: {old_key} -> {new_key}", merge.kept.id)?;
        }
    }
    for row in merge.deleted {
        if json {
            #[derive(serde::Serialize)]
            struct Deleted {
                merged_into: i64,
                deleted: Product,
            }
            print_json(
                out,
                &Deleted {
                    merged_into: merge.kept.id,
                    deleted: row,
                },
            )?;
        } else {
            writeln!(
                out,
                "deleted (merged into id {}): {}",
                merge.kept.id,
                serde_json::to_string(&row).unwrap_or_default()
            )?;
        }
    }
    Ok(())
}

/// What `--apply` did, counted.
#[derive(Debug, Default)]
struct Tally {
    /// Keys merged (or rekeyed).
    merged: usize,
    /// Rows deleted.
    deleted: usize,
    /// Keys whose merge failed.
    failed: usize,
}

impl Tally {
    /// Counts and prints the outcome of merging `key`.
    fn record(
        &mut self,
        result: Result<Option<Merged>, StoreError>,
        key: &ProductKey,
        conn: &db::connect::DbConnection,
        out: &mut impl std::io::Write,
        json: bool,
    ) -> std::io::Result<()> {
        match result {
            Ok(Some(merge)) => {
                self.merged += 1;
                self.deleted += merge.deleted.len();
                print_merge(out, merge, json)
            }
            Ok(None) => Ok(()),
            Err(e) => {
                self.failed += 1;
                let problem = ServiceError::from_store(e, conn.sqlstates());
                eprintln!("could not merge {key}: {problem}");
                Ok(())
            }
        }
    }
}

/// Runs the command against `DATABASE_URL` or the embedded database.
pub async fn run(config: &Config, args: DedupeArgs) -> Result<Outcome, DedupeError> {
    let no_url = config
        .common
        .database_url
        .as_deref()
        .is_none_or(|url| url.trim().is_empty());
    let cluster = config.common.data_dir.join("postgres");
    if no_url && !cluster.join("PG_VERSION").exists() {
        return Err(DedupeError::NoDatabase(cluster));
    }
    let (url, embedded) = db::open(config).await?;
    let result = dedupe(&url, config, args).await;
    db::close(embedded).await;
    result
}

async fn dedupe(url: &str, config: &Config, args: DedupeArgs) -> Result<Outcome, DedupeError> {
    db::migrations::run_migrations(url).await?;
    let mut conn = db::connect::connect_recording(url).await?;
    let spelled = spelling_groups(&mut conn).await?;
    // A duplicated key that is a spelling of a canonical key is merged with its spelling group.
    let respelled: std::collections::BTreeSet<ProductKey> =
        spelled.groups.iter().map(SpellingGroup::key).collect();
    let groups: Vec<DuplicateGroup> = duplicate_groups(&mut conn)
        .await?
        .into_iter()
        .filter(|group| !respelled.contains(&group.key().canonical()))
        .collect();
    warn_unaddressable(&spelled);
    let mut out = std::io::stdout().lock();
    let surplus: usize = groups.iter().map(|g| g.ids.len() - 1).sum::<usize>()
        + spelled
            .groups
            .iter()
            .map(|g| g.ids.len() - 1)
            .sum::<usize>();
    if !args.apply {
        for group in &groups {
            report(&mut out, group, args.json)?;
        }
        for group in &spelled.groups {
            report_spellings(&mut out, group, args.json)?;
        }
        out.flush()?;
        eprintln!(
            "{} keys have more than one row, {} keys are stored in other spellings than their \
             canonical (NFC) form ({surplus} surplus rows); dry run, nothing changed",
            groups.len(),
            spelled.groups.len()
        );
        return Ok(if groups.is_empty() && spelled.groups.is_empty() {
            Outcome::Clean
        } else {
            Outcome::Duplicates
        });
    }

    let settings = TxSettings::from(config);
    let mut tally = Tally::default();
    for group in &groups {
        let result = merge_duplicates(&mut conn, &settings, &group.key()).await;
        tally.record(result, &group.key(), &conn, &mut out, args.json)?;
    }
    for group in &spelled.groups {
        let result = merge_spellings(&mut conn, &settings, group).await;
        tally.record(result, &group.key(), &conn, &mut out, args.json)?;
    }
    out.flush()?;
    let remaining = duplicate_key_groups(&mut conn).await?;
    let respelling = spelling_groups(&mut conn).await?.groups.len();
    let Tally {
        merged,
        deleted,
        failed,
    } = tally;
    eprintln!(
        "merged {merged} keys, deleted {deleted} rows, {failed} failed; \
         {remaining} keys still have more than one row, {respelling} keys are still stored in \
         other spellings"
    );
    Ok(if remaining == 0 && respelling == 0 {
        Outcome::Clean
    } else {
        Outcome::Duplicates
    })
}
