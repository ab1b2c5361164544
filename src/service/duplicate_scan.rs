//! The duplicate scan behind `product_duplicate_key_groups`: incremental every
//! `DUPLICATE_SCAN_INTERVAL_SECS`, full at start, every `DUPLICATE_FULL_SCAN_INTERVAL_SECS` and
//! on SIGUSR1.
//!
//! Only a writer that skips the advisory lock (another program) can make a duplicate, by
//! inserting a row or by updating a row's key. So the regular scan looks up, by the key index,
//! only the keys written since it last looked, and the keys it already knows to be duplicated
//! (a merge by `product-service dedupe` takes them away): its cost follows the writes of one
//! interval, not the size of the table. Written since it last looked means:
//! - rows with an id above the highest one a scan saw (ids come from a sequence);
//! - keys that UPDATEs moved rows onto, which a trigger records in `product_key_changes` under
//!   ids of their own.
//!
//! A transaction draws its ids before it commits, so a row with a lower id can appear after a
//! scan saw a higher one. The scan therefore keeps checking from the mark of an earlier scan
//! until a later scan's snapshot shows that every transaction running at that earlier scan has
//! ended ([`ScanMark::settles`]); only then does the bound move up. A transaction left open for
//! long holds the bound back (the scans read more, they miss nothing); when the bound is older
//! than the recorded key changes are kept, the next scan is a full one.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::db::DbPool;
use crate::domain::ProductKey;
use crate::store::duplicates::{
    KeyScan, ScanMark, prune_key_changes, scan_all_keys, scan_keys_since,
};
use crate::telemetry::metrics::{DuplicateScanKind, Metrics};

/// The shortest time recorded key changes are kept, whatever `full_interval` is.
const MIN_KEY_CHANGE_RETENTION: Duration = Duration::from_secs(86_400);

/// When the scans run.
#[derive(Debug, Clone, Copy)]
pub struct ScanSchedule {
    /// Between two scans (`DUPLICATE_SCAN_INTERVAL_SECS`).
    pub interval: Duration,
    /// Between two full scans (`DUPLICATE_FULL_SCAN_INTERVAL_SECS`); `None`: only at start and
    /// on SIGUSR1.
    pub full_interval: Option<Duration>,
}

impl ScanSchedule {
    /// How long recorded key changes are kept: a day, or the full-scan interval when longer. An
    /// instance whose bound is older runs a full scan instead of reading them.
    pub fn key_change_retention(&self) -> Duration {
        self.full_interval.map_or(MIN_KEY_CHANGE_RETENTION, |full| {
            full.max(MIN_KEY_CHANGE_RETENTION)
        })
    }
}

/// What one instance knows between scans.
#[derive(Debug, Default)]
pub struct ScanState {
    /// Keys with more than one row at the last scan.
    known: BTreeSet<ProductKey>,
    /// Every row and key change up to these ids has been checked while visible, and when that
    /// mark was taken. `None`: the next scan is a full one.
    bound: Option<(ScanMark, Instant)>,
    /// The previous scan's mark, and when it was taken: the next bound, once settled.
    previous: Option<(ScanMark, Instant)>,
    /// When the last full scan finished.
    last_full: Option<Instant>,
}

impl ScanState {
    /// Which scan to run `now`: a full one at start, when asked (`forced`), when
    /// `schedule.full_interval` has passed since the last, or when the bound is too old for the
    /// recorded key changes; else the incremental scan from the bound.
    pub fn next_scan(&self, schedule: &ScanSchedule, now: Instant, forced: bool) -> ScanKind {
        let full_due = match (self.last_full, schedule.full_interval) {
            (None, _) => true,
            (Some(last), Some(every)) => now.duration_since(last) >= every,
            (Some(_), None) => false,
        };
        match self.bound {
            Some((mark, taken))
                if !forced
                    && !full_due
                    && now.duration_since(taken) < schedule.key_change_retention() =>
            {
                ScanKind::Since(mark)
            }
            _ => ScanKind::Full,
        }
    }

    /// Takes in the result of a scan whose snapshot was taken at `taken`: the known keys become
    /// what it found (an incremental scan re-checked every known key), and the bound moves up
    /// to the previous scan's mark when this scan settles it. A full scan with no transaction
    /// running beside it settles itself.
    pub fn record(&mut self, kind: ScanKind, scan: KeyScan, taken: Instant) {
        self.known = scan.duplicated.into_iter().collect();
        if matches!(kind, ScanKind::Full) {
            self.last_full = Some(taken);
            if scan.mark.settles(&scan.mark) {
                self.bound = Some((scan.mark, taken));
            }
        }
        if let Some((previous, previous_taken)) = self.previous
            && scan.mark.settles(&previous)
            && self.bound.is_none_or(|(bound, _)| {
                bound.product_id <= previous.product_id && bound.change_id <= previous.change_id
            })
        {
            self.bound = Some((previous, previous_taken));
        }
        self.previous = Some((scan.mark, taken));
    }

    /// The keys with more than one row at the last scan.
    pub fn known(&self) -> &BTreeSet<ProductKey> {
        &self.known
    }
}

/// Which scan to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    /// Every key: one `GROUP BY` over the table.
    Full,
    /// The keys written after this mark, and the known duplicated keys.
    Since(ScanMark),
}

/// Runs the scans as `schedule` says, for `product_duplicate_key_groups` and its companions;
/// a full scan at once on every signal from `full_requests` (SIGUSR1). Logs a warning when
/// there are duplicates. Runs until its task is aborted.
pub async fn run(
    pool: DbPool,
    metrics: Metrics,
    schedule: ScanSchedule,
    mut full_requests: tokio::signal::unix::Signal,
) {
    let mut ticks = tokio::time::interval(schedule.interval);
    let mut state = ScanState::default();
    loop {
        let forced = tokio::select! {
            _ = ticks.tick() => false,
            _ = full_requests.recv() => {
                log::info!("SIGUSR1: full duplicate scan");
                true
            }
        };
        let kind = state.next_scan(&schedule, Instant::now(), forced);
        let known: Vec<ProductKey> = state.known().iter().cloned().collect();
        let started = Instant::now();
        let result = match pool.get().await {
            Ok(mut conn) => {
                let scan = match kind {
                    ScanKind::Full => scan_all_keys(&mut conn).await,
                    ScanKind::Since(mark) => scan_keys_since(&mut conn, &mark, &known).await,
                };
                if scan.is_ok()
                    && let Err(e) =
                        prune_key_changes(&mut conn, schedule.key_change_retention()).await
                {
                    log::warn!("cannot delete old product_key_changes: {e}");
                }
                scan.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(scan) => {
                let label = match kind {
                    ScanKind::Full => DuplicateScanKind::Full,
                    ScanKind::Since(_) => DuplicateScanKind::Incremental,
                };
                metrics.observe_duplicate_scan(label, started.elapsed(), scan.checked);
                state.record(kind, scan, started);
                let groups = state.known().len();
                if groups > 0 {
                    log::warn!(
                        "{groups} keys have more than one row; see `product-service dedupe`"
                    );
                }
                metrics.set_duplicate_groups(i64::try_from(groups).unwrap_or(i64::MAX));
            }
            Err(e) => log::warn!("duplicate scan failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(product_id: i64, xmin: i64, xmax: i64) -> ScanMark {
        ScanMark {
            product_id,
            change_id: product_id / 10,
            xmin,
            xmax,
        }
    }

    fn scan(kind: ScanKind, mark: ScanMark) -> (ScanKind, KeyScan) {
        let scan = KeyScan {
            duplicated: vec![ProductKey::new("b", "s", "m")],
            checked: None,
            mark,
        };
        (kind, scan)
    }

    const SCHEDULE: ScanSchedule = ScanSchedule {
        interval: Duration::from_secs(60),
        full_interval: Some(Duration::from_secs(86_400)),
    };

    #[test]
    fn the_first_scan_is_full_and_a_quiet_one_bounds_the_next() {
        let start = Instant::now();
        let mut state = ScanState::default();
        assert_eq!(state.next_scan(&SCHEDULE, start, false), ScanKind::Full);

        let (kind, result) = scan(ScanKind::Full, mark(100, 50, 50));
        state.record(kind, result, start);

        assert_eq!(
            state.next_scan(&SCHEDULE, start + SCHEDULE.interval, false),
            ScanKind::Since(mark(100, 50, 50))
        );
        assert_eq!(state.known().len(), 1);
    }

    #[test]
    fn a_busy_full_scan_leaves_the_next_scan_full_until_one_settles_it() {
        let start = Instant::now();
        let mut state = ScanState::default();
        // Transaction 48 was running: rows below id 100 may still appear.
        let (kind, result) = scan(ScanKind::Full, mark(100, 48, 50));
        state.record(kind, result, start);
        assert_eq!(
            state.next_scan(&SCHEDULE, start + SCHEDULE.interval, false),
            ScanKind::Full
        );

        // Everything running at the first scan has ended by the second one's snapshot.
        let (kind, result) = scan(ScanKind::Full, mark(130, 55, 57));
        state.record(kind, result, start + SCHEDULE.interval);

        assert_eq!(
            state.next_scan(&SCHEDULE, start + 2 * SCHEDULE.interval, false),
            ScanKind::Since(mark(100, 48, 50))
        );
    }

    #[test]
    fn the_bound_waits_for_transactions_open_at_the_previous_scan() {
        let start = Instant::now();
        let mut state = ScanState::default();
        let (kind, result) = scan(ScanKind::Full, mark(100, 50, 50));
        state.record(kind, result, start);
        let first = mark(100, 50, 50);

        // Transaction 60 is open at the second scan and still open at the third: the bound
        // stays at the first scan's mark.
        let second = mark(200, 60, 62);
        let (kind, result) = scan(ScanKind::Since(first), second);
        state.record(kind, result, start + SCHEDULE.interval);
        let third = mark(300, 60, 70);
        let (kind, result) = scan(ScanKind::Since(second), third);
        state.record(kind, result, start + 2 * SCHEDULE.interval);
        assert_eq!(
            state.next_scan(&SCHEDULE, start + 3 * SCHEDULE.interval, false),
            ScanKind::Since(first)
        );

        // It ends: the fourth scan moves the bound to the third's mark.
        let (kind, result) = scan(ScanKind::Since(first), mark(400, 75, 75));
        state.record(kind, result, start + 3 * SCHEDULE.interval);
        assert_eq!(
            state.next_scan(&SCHEDULE, start + 4 * SCHEDULE.interval, false),
            ScanKind::Since(third)
        );
    }

    #[test]
    fn a_full_scan_runs_when_due_when_asked_and_when_the_bound_is_too_old() {
        let start = Instant::now();
        let mut state = ScanState::default();
        let (kind, result) = scan(ScanKind::Full, mark(100, 50, 50));
        state.record(kind, result, start);
        let soon = start + SCHEDULE.interval;

        assert_eq!(state.next_scan(&SCHEDULE, soon, true), ScanKind::Full);
        assert_eq!(
            state.next_scan(&SCHEDULE, start + Duration::from_secs(86_400), false),
            ScanKind::Full
        );
        let never = ScanSchedule {
            full_interval: None,
            ..SCHEDULE
        };
        assert!(matches!(
            state.next_scan(&never, start + Duration::from_secs(3_600), false),
            ScanKind::Since(_)
        ));
        assert_eq!(
            state.next_scan(&never, start + never.key_change_retention(), false),
            ScanKind::Full
        );
    }
}
