//! `loadtest chart --input results.json --output FILE.svg`: bench/run.sh's comparison drawn as
//! grouped bars in one SVG, two panels stacked, one group of bars per scenario:
//!
//! - throughput, operations/s: product-service (requests/s under loadtest), pgbench running the
//!   service's lock transaction, and pgbench running `INSERT ... ON CONFLICT` on a table with
//!   the unique constraint (the reference; bench/run.sh runs it for `distinct` only);
//! - CPU time per operation, µs: the PostgreSQL server's for each of the three, and for
//!   product-service its own process's stacked on top (pgbench's own CPU is not measured).
//!
//! A figure that is missing (or `null`) has no bar. The input, as bench/run.sh writes it:
//!
//! ```json
//! {"title": "bench/run.sh: 20000 requests per scenario, 64 clients",
//!  "scenarios": [
//!    {"name": "distinct",
//!     "service": {"ops_per_second": 10621, "server_cpu_us": 52.5, "service_cpu_us": 75.0},
//!     "pgbench": {"ops_per_second": 6115, "server_cpu_us": 335.2},
//!     "on_conflict": {"ops_per_second": 18666, "server_cpu_us": 148.7}},
//!    {"name": "hot", "service": {"ops_per_second": 9825}, "pgbench": {"ops_per_second": 2436}}]}
//! ```

use std::error::Error;
use std::path::PathBuf;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;

use crate::ticks::{Ticked, draw_legend, number};

/// Width and height of the SVG, pixels.
const SIZE: (u32, u32) = (1100, 900);
/// Share of a group's width its bars take (the rest is the gap between groups).
const GROUP_FILL: f64 = 0.8;
/// The largest figure a chart takes (operations per second or microseconds): anything larger is
/// a mistake in the input, not a measurement.
const MAX_FIGURE: f64 = 1e9;

/// Options of `loadtest chart`.
#[derive(Debug, clap::Args)]
pub struct ChartArgs {
    /// The results to draw, JSON: {"title": "...", "scenarios": [{"name": "distinct",
    /// "service": {...}, "pgbench": {...}, "on_conflict": {...}}, ...]}, each of the three
    /// optional, with the figures "ops_per_second" (operations/s), "server_cpu_us" (PostgreSQL
    /// CPU time per operation, µs) and "service_cpu_us" (the service's own, µs), each optional.
    /// bench/run.sh writes it beside its chart.
    #[arg(long, value_name = "FILE.json")]
    pub input: PathBuf,
    /// Where to write the SVG (replaced if it exists).
    #[arg(long, value_name = "FILE.svg")]
    pub output: PathBuf,
}

/// A benchmark run's figures, the input of `loadtest chart`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Results {
    /// The chart's caption; empty: a generic one.
    #[serde(default)]
    pub title: String,
    /// One group of bars each, left to right.
    pub scenarios: Vec<ScenarioResults>,
}

/// The figures of one scenario, for each contender measured in it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioResults {
    /// The scenario's name, under its group of bars.
    pub name: String,
    /// product-service under loadtest.
    pub service: Option<Figures>,
    /// pgbench running the service's lock transaction (bench/upsert.sql).
    pub pgbench: Option<Figures>,
    /// pgbench running `INSERT ... ON CONFLICT` on a table with a unique constraint.
    pub on_conflict: Option<Figures>,
}

/// What one contender did in one scenario; each figure may be missing.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figures {
    /// Operations per second: requests for the service, transactions for pgbench.
    pub ops_per_second: Option<f64>,
    /// The PostgreSQL server's CPU time per operation, microseconds.
    pub server_cpu_us: Option<f64>,
    /// The service process's own CPU time per operation, microseconds (the service only).
    pub service_cpu_us: Option<f64>,
}

/// The three contenders: their legend names, colours (PostgreSQL's CPU, then the service's own
/// in a lighter shade) and figures.
type Pick = fn(&ScenarioResults) -> Option<Figures>;
const CONTENDERS: [(&str, RGBColor, RGBColor, Pick); 3] = [
    (
        "product-service",
        RGBColor(31, 119, 180),
        RGBColor(158, 202, 225),
        |s| s.service,
    ),
    (
        "pgbench: lock transaction",
        RGBColor(255, 127, 14),
        RGBColor(255, 187, 120),
        |s| s.pgbench,
    ),
    (
        "pgbench: INSERT ... ON CONFLICT (unique constraint)",
        RGBColor(127, 127, 127),
        RGBColor(199, 199, 199),
        |s| s.on_conflict,
    ),
];

/// Reads `args.input` and writes its chart to `args.output`.
pub fn run(args: &ChartArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
    let results: Results = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a results file: {e}", args.input.display()))?;
    let svg = svg(&results).map_err(|e| format!("cannot draw the chart: {e}"))?;
    std::fs::write(&args.output, svg)
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))
}

/// Draws `results` as an SVG document.
pub fn svg(results: &Results) -> Result<String, Box<dyn Error>> {
    if results.scenarios.is_empty() {
        return Err("the results list no scenario".into());
    }
    for scenario in &results.scenarios {
        for (contender, figures) in [
            ("service", scenario.service),
            ("pgbench", scenario.pgbench),
            ("on_conflict", scenario.on_conflict),
        ] {
            let Some(f) = figures else { continue };
            for (name, value) in [
                ("ops_per_second", f.ops_per_second),
                ("server_cpu_us", f.server_cpu_us),
                ("service_cpu_us", f.service_cpu_us),
            ] {
                if let Some(v) = value
                    && !(0.0..=MAX_FIGURE).contains(&v)
                {
                    return Err(format!(
                        "{}.{contender}.{name} is {v:?}: figures are from 0 to {MAX_FIGURE:e}",
                        scenario.name
                    )
                    .into());
                }
            }
        }
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let title = if results.title.is_empty() {
            "product-service against pgbench"
        } else {
            &results.title
        };
        let root = root.titled(title, ("sans-serif", 24))?;
        let (upper, lower) = root.split_vertically((SIZE.1 - 40) / 2);
        let throughput = |f: Figures| f.ops_per_second.map(|ops| (ops, None));
        draw_panel(
            results,
            &upper,
            "throughput",
            "operations/s",
            throughput,
            |ops, _| format!("{ops:.0}"),
        )?;
        let cpu = |f: Figures| f.server_cpu_us.map(|server| (server, f.service_cpu_us));
        draw_panel(
            results,
            &lower,
            "CPU time per operation: PostgreSQL's, the service's own on top (pgbench's not measured)",
            "CPU µs per operation",
            cpu,
            |server, own| match own {
                Some(own) => format!("{server:.1}+{own:.1}"),
                None => format!("{server:.1}"),
            },
        )?;
        root.present()?;
    }
    Ok(svg)
}

/// One panel: for each scenario, a bar for each contender that has the panel's figure.
/// `figure` gives a bar's height and, for a stacked bar, the height of its upper part;
/// `label` the text above it.
fn draw_panel(
    results: &Results,
    area: &DrawingArea<SVGBackend, Shift>,
    caption: &str,
    unit: &str,
    figure: impl Fn(Figures) -> Option<(f64, Option<f64>)>,
    label: impl Fn(f64, Option<f64>) -> String,
) -> Result<(), Box<dyn Error>> {
    let names: Vec<&str> = results.scenarios.iter().map(|s| s.name.as_str()).collect();
    let groups = names.len() as f64;
    // Each scenario's bars: (contender, height, upper part), in the contenders' order.
    let bars: Vec<Vec<(usize, f64, Option<f64>)>> = results
        .scenarios
        .iter()
        .map(|scenario| {
            CONTENDERS
                .iter()
                .enumerate()
                .filter_map(|(c, (_, _, _, pick))| {
                    let (height, upper) = figure(pick(scenario)?)?;
                    Some((c, height, upper))
                })
                .collect()
        })
        .collect();
    let top = bars
        .iter()
        .flatten()
        .map(|(_, height, upper)| height + upper.unwrap_or(0.0))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.4; // room for the labels above the bars, and for the legend
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(
            Ticked::new(0.0..groups, (0..names.len()).map(|i| i as f64 + 0.5)),
            0.0..top,
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(0)
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 13))
        .y_desc(unit)
        .x_label_formatter(&|x| {
            names
                .get(x.floor() as usize)
                .map_or_else(String::new, |name| (*name).to_owned())
        })
        .x_label_style(("sans-serif", 16))
        .y_label_formatter(&|y| number(*y))
        .draw()?;
    let width = GROUP_FILL / CONTENDERS.len() as f64;
    // Where each bar stands: centred in its group, side by side, in the contenders' order.
    let placed: Vec<(usize, f64, f64, Option<f64>)> = bars
        .iter()
        .enumerate()
        .flat_map(|(group, bars)| {
            let left = group as f64 + 0.5 - width * bars.len() as f64 / 2.0;
            bars.iter()
                .enumerate()
                .map(move |(slot, (c, height, upper))| {
                    (*c, left + width * slot as f64, *height, *upper)
                })
        })
        .collect();
    for (c, (name, colour, light, _)) in CONTENDERS.iter().enumerate() {
        let mine: Vec<_> = placed.iter().filter(|bar| bar.0 == c).collect();
        if mine.is_empty() {
            continue;
        }
        let stacked = mine.iter().any(|bar| bar.3.is_some());
        let lower = |&&(_, x, height, _): &&(usize, f64, f64, Option<f64>)| {
            Rectangle::new([(x, 0.0), (x + width * 0.92, height)], colour.filled())
        };
        let legend = if stacked {
            format!("{name}: PostgreSQL")
        } else {
            (*name).to_owned()
        };
        let colour = *colour;
        chart
            .draw_series(mine.iter().map(lower))?
            .label(legend)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
        if stacked {
            let light = *light;
            chart
                .draw_series(mine.iter().filter_map(|&&(_, x, height, upper)| {
                    let upper = upper?;
                    Some(Rectangle::new(
                        [(x, height), (x + width * 0.92, height + upper)],
                        light.filled(),
                    ))
                }))?
                .label(format!("{name}: its own process"))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], light.filled())
                });
        }
    }
    let above = TextStyle::from(("sans-serif", 13))
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(placed.iter().map(|&(_, x, height, upper)| {
        Text::new(
            label(height, upper),
            (x + width * 0.46, height + upper.unwrap_or(0.0)),
            above.clone(),
        )
    }))?;
    draw_legend(&mut chart)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: &str = r#"{
        "title": "a test run",
        "scenarios": [
            {"name": "distinct",
             "service": {"ops_per_second": 10621, "server_cpu_us": 52.5, "service_cpu_us": 75.0},
             "pgbench": {"ops_per_second": 6115, "server_cpu_us": 335.2},
             "on_conflict": {"ops_per_second": 18666, "server_cpu_us": 148.7}},
            {"name": "hot",
             "service": {"ops_per_second": 9825, "server_cpu_us": null},
             "pgbench": {"ops_per_second": 2436}}
        ]
    }"#;

    /// Every text of the SVG, which must be well-formed XML.
    fn texts(svg: &str) -> Vec<String> {
        let document = roxmltree::Document::parse(svg).expect("well-formed SVG");
        assert_eq!(document.root_element().tag_name().name(), "svg");
        document
            .descendants()
            .filter(|node| node.has_tag_name("text"))
            .map(|node| node.text().unwrap_or_default().trim().to_owned())
            .collect()
    }

    #[test]
    fn the_chart_of_a_fixed_input_has_a_labelled_bar_for_each_figure() {
        let results: Results = serde_json::from_str(INPUT).expect("valid input");

        let svg = svg(&results).expect("drawn");

        let texts = texts(&svg);
        for expected in [
            "a test run",
            "throughput",
            "operations/s",
            "distinct",
            "hot",
            "product-service",
            "pgbench: lock transaction",
            "pgbench: INSERT ... ON CONFLICT (unique constraint)",
            "product-service: PostgreSQL",
            "product-service: its own process",
        ] {
            assert!(
                texts.iter().any(|t| t == expected),
                "no text {expected:?} in {texts:?}"
            );
        }
        // Throughput: five bars; CPU: three (hot has none), the service's stacked.
        for (label, bars) in [
            ("10621", 1),
            ("6115", 1),
            ("18666", 1),
            ("9825", 1),
            ("2436", 1),
            ("52.5+75.0", 1),
            ("335.2", 1),
            ("148.7", 1),
        ] {
            let found = texts.iter().filter(|t| *t == label).count();
            assert_eq!(found, bars, "bars labelled {label:?} in {texts:?}");
        }
        assert_eq!(
            texts
                .iter()
                .filter(|t| t.contains('.') && t.contains('+'))
                .count(),
            1,
            "one stacked bar"
        );
    }

    #[test]
    fn bad_inputs_are_refused_with_the_reason() {
        for (input, reason, why) in [
            (r#"{"scenarios": []}"#, "no scenario", "nothing to draw"),
            (
                r#"{"scenarios": [{"name": "x", "servce": {}}]}"#,
                "unknown field `servce`",
                "a misspelt contender would silently lose its bars",
            ),
            (
                r#"{"scenarios": [{"name": "x", "service": {"ops": 1}}]}"#,
                "unknown field `ops`",
                "a misspelt figure would silently lose its bar",
            ),
            (
                r#"{"scenarios": [{"name": "x", "service": {"ops_per_second": -5}}]}"#,
                "x.service.ops_per_second is -5.0",
                "a negative figure would draw no bar under a label",
            ),
            (
                r#"{"scenarios": [{"name": "x", "pgbench": {"server_cpu_us": 1e308}}]}"#,
                "x.pgbench.server_cpu_us is 1e308",
                "an absurd figure would squash every other bar",
            ),
        ] {
            let error = serde_json::from_str::<Results>(input)
                .map_err(|e| e.to_string())
                .and_then(|results| svg(&results).map_err(|e| e.to_string()))
                .expect_err(why);
            assert!(error.contains(reason), "{why}: {error}");
        }
    }
}
