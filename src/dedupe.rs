//! `product-service dedupe`: finds keys with more than one row and, with `--apply`, merges them.
//!
//! Dry run by default: prints each duplicated key with its ids and exits 1 if there are any, 0 if
//! none. `--apply` merges each group in its own transaction under that key's advisory lock
//! (bounded by `LOCK_TIMEOUT_MS`), so it is safe while the service runs, prints every deleted row
//! in full on stdout so nothing is lost, and exits 0 when the table is clean afterwards.
//! `--json` prints JSON lines instead of text. Summaries go to stderr.

use std::io::Write as _;

use crate::config::Config;
use crate::db::{self, DbSetupError};
use crate::domain::Product;
use crate::service::ServiceError;
use crate::store::TxSettings;
use crate::store::duplicates::{
    DuplicateGroup, duplicate_groups, duplicate_key_groups, merge_duplicates,
};

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

fn report(
    out: &mut impl std::io::Write,
    group: &DuplicateGroup,
    json: bool,
) -> std::io::Result<()> {
    if json {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            #[serde(flatten)]
            group: &'a DuplicateGroup,
            count: usize,
        }
        return print_json(
            out,
            &Line {
                group,
                count: group.ids.len(),
            },
        );
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

/// Runs the command against `DATABASE_URL` or the embedded database.
pub async fn run(config: &Config, args: DedupeArgs) -> Result<Outcome, DedupeError> {
    let (url, embedded) = db::open(config).await?;
    let result = dedupe(&url, config, args).await;
    db::close(embedded).await;
    result
}

async fn dedupe(url: &str, config: &Config, args: DedupeArgs) -> Result<Outcome, DedupeError> {
    db::migrations::run_migrations(url).await?;
    let mut conn = db::connect::connect_recording(url).await?;
    let groups = duplicate_groups(&mut conn).await?;
    let mut out = std::io::stdout().lock();
    let surplus: usize = groups.iter().map(|g| g.ids.len() - 1).sum();
    if !args.apply {
        for group in &groups {
            report(&mut out, group, args.json)?;
        }
        out.flush()?;
        eprintln!(
            "{} keys have more than one row ({surplus} surplus rows); dry run, nothing changed",
            groups.len()
        );
        return Ok(if groups.is_empty() {
            Outcome::Clean
        } else {
            Outcome::Duplicates
        });
    }

    let settings = TxSettings::from(config);
    let (mut merged, mut deleted, mut failed) = (0, 0, 0);
    for group in &groups {
        match merge_duplicates(&mut conn, &settings, &group.key()).await {
            Ok(Some(merge)) => {
                merged += 1;
                for row in merge.deleted {
                    deleted += 1;
                    if args.json {
                        #[derive(serde::Serialize)]
                        struct Deleted {
                            merged_into: i64,
                            deleted: Product,
                        }
                        print_json(
                            &mut out,
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
            }
            Ok(None) => {}
            Err(e) => {
                failed += 1;
                let problem = ServiceError::from_store(e, conn.sqlstates());
                eprintln!("could not merge {}: {problem}", group.key());
            }
        }
    }
    out.flush()?;
    let remaining = duplicate_key_groups(&mut conn).await?;
    eprintln!(
        "merged {merged} keys, deleted {deleted} rows, {failed} failed; \
         {remaining} keys still have more than one row"
    );
    Ok(if remaining == 0 {
        Outcome::Clean
    } else {
        Outcome::Duplicates
    })
}
