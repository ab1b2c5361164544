//! `--plot FILE.svg`: a run drawn as one SVG, three panels stacked.
//!
//! - One point for each second of the run, on one time axis: the throughput of that second
//!   (requests/s, or items/s in the batch scenario), and below it the p50 and p99 latency of
//!   the requests that ended in it (ms). A run under 20 s gets a point each half, fifth or
//!   tenth of a second instead, the longest that still gives it 20 points (at most a tenth).
//!   Stalls, warm-up and drift show here, where the report's one figure for the whole run
//!   hides them.
//! - At the bottom, the latency percentile curve: latency (ms) against percentile, from the
//!   fastest request to the slowest the run can resolve (99.999 at most), the x axis in nines
//!   (50, 90, 99, 99.9, 99.99 equally spaced), so that the tail gets as much room as the
//!   median. It reads the run's HDR histogram, the one the report's percentiles come from.
//!
//! The SVG's text is `<text>` elements in a generic `sans-serif` family that the viewer
//! resolves: no font is read or embedded.

use std::error::Error;

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::ticks::{Ticked, draw_legend, number};

/// Width and height of the SVG, pixels.
const SIZE: (u32, u32) = (1000, 1000);
/// Width of the left axis' labels, pixels: the same in every panel, so that the panels line up.
const LEFT_AXIS: u32 = 75;
/// Colours of the throughput, p50, p99 and percentile lines.
const THROUGHPUT: RGBColor = RGBColor(31, 119, 180);
const P50: RGBColor = RGBColor(44, 160, 44);
const P99: RGBColor = RGBColor(214, 39, 40);
const CURVE: RGBColor = RGBColor(68, 68, 68);
/// The percentiles marked and labelled on the curve, in nines (`-log10(1 - q)`).
const MARKED: [(&str, f64); 5] = [
    ("p50", std::f64::consts::LOG10_2),
    ("p90", 1.0),
    ("p99", 2.0),
    ("p99.9", 3.0),
    ("p99.99", 4.0),
];
/// The highest percentile drawn: 99.999, in nines.
const MOST_NINES: f64 = 5.0;
/// How much of a run one point of the upper panels may stand for, seconds, longest first.
const INTERVALS: [f64; 4] = [1.0, 0.5, 0.2, 0.1];
/// The fewest points the upper panels get, if intervals of a tenth of a second allow it.
const FEWEST_POINTS: f64 = 20.0;

/// One finished request, as `--plot` records it (12 bytes; nothing is recorded without it).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Milliseconds from the start of the run to the end of the answer.
    pub at_ms: u32,
    /// Microseconds from sending the request to the end of its answer.
    pub latency_us: u32,
    /// What it adds to the throughput: 1 for a request whatever its status; in the batch
    /// scenario its items if it was answered 200, else 0 (as the report's items/s).
    pub weight: u32,
}

/// One interval of a run (a second, or a fraction of one), as the upper panels draw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// The middle of the time it covers, seconds from the start of the run.
    pub at: f64,
    /// The weights of the requests that ended in it, per second of the time it covers.
    pub throughput: f64,
    /// Latency of the median request that ended in it, ms; `None` if none did.
    pub p50_ms: Option<f64>,
    /// Latency of its 99th-percentile request, ms (nearest rank); `None` if none ended in it.
    pub p99_ms: Option<f64>,
}

/// What `--plot` draws.
pub struct RunPlot<'a> {
    /// The title above the panels, e.g. "loadtest distinct: 20000 requests, 64 clients, 2.1 s".
    pub title: String,
    /// What the throughput counts, per second: "requests/s" or "items/s".
    pub throughput_unit: &'static str,
    /// Every request of the run, in any order.
    pub samples: &'a [Sample],
    /// Length of the run, seconds.
    pub seconds: f64,
    /// Every request's latency, microseconds (the report's histogram).
    pub latency_us: &'a Histogram<u64>,
}

/// The interval each point of the upper panels stands for in a run of `run_seconds`: a second,
/// or the longest fraction of one in `INTERVALS` that gives it `FEWEST_POINTS`.
pub fn interval_for(run_seconds: f64) -> f64 {
    INTERVALS
        .into_iter()
        .find(|interval| run_seconds / interval >= FEWEST_POINTS)
        .unwrap_or(INTERVALS[INTERVALS.len() - 1])
}

/// Splits a run of `run_seconds` into intervals of `interval` seconds from its start and sums
/// up the requests that ended in each. The last one covers the rest of the run, from half an
/// interval to one and a half (a run under half an interval: all of it), so that it never
/// stands for a sliver of time; a request that ended after `run_seconds` counts in it.
pub fn per_interval(samples: &[Sample], run_seconds: f64, interval: f64) -> Vec<Slice> {
    let count = ((run_seconds / interval).round() as usize).max(1);
    let mut buckets: Vec<(u64, Vec<u32>)> = vec![(0, Vec::new()); count];
    for sample in samples {
        let index = (f64::from(sample.at_ms) / 1000.0 / interval) as usize;
        let (weight, latencies) = &mut buckets[index.min(count - 1)];
        *weight += u64::from(sample.weight);
        latencies.push(sample.latency_us);
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(i, (weight, mut latencies))| {
            let start = i as f64 * interval;
            let length = if i + 1 == count {
                (run_seconds - start).max(0.001)
            } else {
                interval
            };
            latencies.sort_unstable();
            Slice {
                at: start + length / 2.0,
                throughput: weight as f64 / length,
                p50_ms: nearest_rank(&latencies, 0.5).map(|us| f64::from(us) / 1000.0),
                p99_ms: nearest_rank(&latencies, 0.99).map(|us| f64::from(us) / 1000.0),
            }
        })
        .collect()
}

/// The `quantile` of `sorted` by nearest rank (the smallest value with at least that share of
/// the values at or below it); `None` for no values.
fn nearest_rank(sorted: &[u32], quantile: f64) -> Option<u32> {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// The percentile at `nines` (`-log10(1 - q)`) as an axis shows it: 0, 50, 90, 99, 99.9, ...
pub fn percentile_label(nines: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    let decimals = (nines.ceil() as usize).saturating_sub(2);
    format!("{percent:.decimals$}")
}

/// Draws `plot` as an SVG document.
pub fn svg(plot: &RunPlot) -> Result<String, Box<dyn Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(&plot.title, ("sans-serif", 22))?;
        let panels = root.split_by_breakpoints([] as [u32; 0], [270, 570]);
        draw_intervals(plot, &panels[0], &panels[1])?;
        draw_percentiles(plot, &panels[2])?;
        root.present()?;
    }
    Ok(svg)
}

/// The two panels of the run's intervals: throughput above, p50 and p99 latency below it, on one
/// time axis.
fn draw_intervals(
    plot: &RunPlot,
    throughput_area: &DrawingArea<SVGBackend, Shift>,
    latency_area: &DrawingArea<SVGBackend, Shift>,
) -> Result<(), Box<dyn Error>> {
    let interval = interval_for(plot.seconds);
    let slices = per_interval(plot.samples, plot.seconds, interval);
    let each = if interval == 1.0 {
        "each second".to_owned()
    } else {
        format!("each {interval} s")
    };
    let x_max = plot.seconds.max(0.001);
    let mut chart = ChartBuilder::on(throughput_area)
        .caption(
            format!("{}, {each}", plot.throughput_unit),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(LEFT_AXIS)
        .build_cartesian_2d(
            0.0..x_max,
            0.0..headroom(slices.iter().map(|s| s.throughput)),
        )?;
    chart
        .configure_mesh()
        .max_light_lines(0)
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 13))
        .y_desc(plot.throughput_unit)
        .x_label_formatter(&|x| number(*x))
        .y_label_formatter(&|y| number(*y))
        .draw()?;
    chart.draw_series(
        LineSeries::new(
            slices.iter().map(|s| (s.at, s.throughput)),
            THROUGHPUT.stroke_width(2),
        )
        .point_size(3),
    )?;

    let mut chart = ChartBuilder::on(latency_area)
        .caption(
            format!("latency of the requests that ended in {each}"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(LEFT_AXIS)
        .build_cartesian_2d(
            0.0..x_max,
            0.0..headroom(slices.iter().filter_map(|s| s.p99_ms)) * 1.15,
        )?;
    chart
        .configure_mesh()
        .max_light_lines(0)
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 13))
        .x_desc("seconds from the start of the run")
        .y_desc("latency, ms")
        .x_label_formatter(&|x| number(*x))
        .y_label_formatter(&|ms| number(*ms))
        .draw()?;
    for (name, colour, pick) in [
        (
            "p99",
            P99,
            (|s: &Slice| s.p99_ms) as fn(&Slice) -> Option<f64>,
        ),
        ("p50", P50, |s: &Slice| s.p50_ms),
    ] {
        chart
            .draw_series(
                LineSeries::new(
                    slices.iter().filter_map(|s| Some((s.at, pick(s)?))),
                    colour.stroke_width(2),
                )
                .point_size(3),
            )?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    draw_legend(&mut chart)?;
    Ok(())
}

/// The bottom panel: latency against percentile, the percentiles of `MARKED` labelled.
fn draw_percentiles(
    plot: &RunPlot,
    area: &DrawingArea<SVGBackend, Shift>,
) -> Result<(), Box<dyn Error>> {
    let histogram = plot.latency_us;
    // Beyond 1 - 1/n a run of n requests has nothing more to tell: its slowest request.
    let nines_max = (histogram.len().max(1) as f64)
        .log10()
        .clamp(1.0, MOST_NINES);
    let ms_at = |nines: f64| {
        let quantile = 1.0 - 10f64.powf(-nines);
        histogram.value_at_quantile(quantile) as f64 / 1000.0
    };
    let ms_max = headroom([ms_at(nines_max), histogram.max() as f64 / 1000.0]);
    let ticks = std::iter::once(0.0)
        .chain(MARKED.iter().map(|(_, nines)| *nines))
        .chain([MOST_NINES]);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("latency by percentile: {} requests", histogram.len()),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(LEFT_AXIS)
        .build_cartesian_2d(Ticked::new(0.0..nines_max, ticks), 0.0..ms_max)?;
    chart
        .configure_mesh()
        .max_light_lines(0)
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 13))
        .x_desc("percentile (0: the fastest request)")
        .y_desc("latency, ms")
        .x_label_formatter(&|nines| percentile_label(*nines))
        .y_label_formatter(&|ms| number(*ms))
        .draw()?;
    let steps = (nines_max * 100.0).ceil() as usize;
    chart.draw_series(LineSeries::new(
        (0..=steps).map(|i| {
            let nines = nines_max * i as f64 / steps as f64;
            (nines, ms_at(nines))
        }),
        CURVE.stroke_width(2),
    ))?;
    let marked: Vec<(&str, f64, f64)> = MARKED
        .iter()
        .filter(|(_, nines)| *nines <= nines_max + 1e-9)
        .map(|(name, nines)| (*name, *nines, ms_at(*nines)))
        .collect();
    chart.draw_series(
        marked
            .iter()
            .map(|(_, nines, ms)| Circle::new((*nines, *ms), 4, P99.filled())),
    )?;
    let label_style = TextStyle::from(("sans-serif", 14))
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Bottom));
    chart.draw_series(marked.iter().map(|(name, nines, ms)| {
        Text::new(
            format!("{name} {ms:.2} ms "),
            (*nines, *ms),
            label_style.clone(),
        )
    }))?;
    Ok(())
}

/// The top of an axis that shows `values`: a tenth above the largest, at least 1.
fn headroom(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().fold(0.0, f64::max).max(1.0 / 1.1) * 1.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u32, latency_us: u32) -> Sample {
        Sample {
            at_ms,
            latency_us,
            weight: 1,
        }
    }

    #[test]
    fn per_interval_counts_each_second_and_takes_its_percentiles() {
        // Second 0: 100 requests of 1..=100 ms; second 1: none; second 2 (0.5 s long): 2 of 7 ms.
        let mut samples: Vec<Sample> = (1..=100).map(|ms| sample(10 * ms - 5, ms * 1000)).collect();
        samples.extend([sample(2100, 7000), sample(2400, 7000)]);

        let seconds = per_interval(&samples, 2.5, 1.0);

        assert_eq!(
            seconds,
            vec![
                Slice {
                    at: 0.5,
                    throughput: 100.0,
                    p50_ms: Some(50.0),
                    p99_ms: Some(99.0)
                },
                Slice {
                    at: 1.5,
                    throughput: 0.0,
                    p50_ms: None,
                    p99_ms: None
                },
                Slice {
                    at: 2.25,
                    throughput: 4.0,
                    p50_ms: Some(7.0),
                    p99_ms: Some(7.0)
                },
            ]
        );
    }

    #[test]
    fn per_interval_counts_batch_items_and_late_answers_in_the_last_interval() {
        let samples = [
            Sample {
                at_ms: 300,
                latency_us: 50_000,
                weight: 100,
            },
            Sample {
                at_ms: 1_200,
                latency_us: 60_000,
                weight: 0,
            },
        ];

        let seconds = per_interval(&samples, 0.8, 1.0);

        assert_eq!(
            seconds.len(),
            1,
            "a run under a second is one point of a second"
        );
        assert_eq!(seconds[0].throughput, 125.0, "100 items in 0.8 s");
        assert_eq!(seconds[0].p99_ms, Some(60.0));
    }

    #[test]
    fn a_remainder_under_half_a_second_joins_the_last_second() {
        // 3.2 s: seconds 0 and 1, then 2.0 to 3.2 (not a point for the 0.2 s after 3.0).
        let samples = [sample(500, 1000), sample(2500, 1000), sample(3100, 1000)];

        let seconds = per_interval(&samples, 3.2, 1.0);

        let at: Vec<f64> = seconds.iter().map(|s| s.at).collect();
        assert_eq!(at, [0.5, 1.5, 2.6]);
        assert!((seconds[2].throughput - 2.0 / 1.2).abs() < 1e-9);
    }

    #[test]
    fn a_short_run_gets_twenty_points_or_a_point_each_tenth_of_a_second() {
        for (run_seconds, interval) in [
            (600.0, 1.0),
            (20.0, 1.0),
            (19.9, 0.5),
            (10.0, 0.5),
            (4.0, 0.2),
            (3.9, 0.1),
            (0.4, 0.1),
        ] {
            assert_eq!(
                interval_for(run_seconds),
                interval,
                "a run of {run_seconds} s"
            );
        }
        // 0.44 s in tenths: four points, the last 0.14 s long.
        let samples = [sample(50, 1000), sample(420, 3000)];

        let slices = per_interval(&samples, 0.44, 0.1);

        assert_eq!(slices.len(), 4);
        assert_eq!(slices[0].throughput, 10.0, "one request in 0.1 s");
        assert_eq!(slices[3].p50_ms, Some(3.0));
        assert!((slices[3].at - 0.37).abs() < 1e-9);
    }

    #[test]
    fn percentile_labels_read_as_nines() {
        for (nines, label) in [
            (0.0, "0"),
            (std::f64::consts::LOG10_2, "50"),
            (1.0, "90"),
            (2.0, "99"),
            (3.0, "99.9"),
            (4.0, "99.99"),
            (5.0, "99.999"),
        ] {
            assert_eq!(percentile_label(nines), label, "at {nines} nines");
        }
    }
}
