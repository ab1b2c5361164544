//! An axis of `f64` whose ticks are given instead of chosen: the percentile axis puts them at
//! 50, 90, 99, ... and the bar charts under each group of bars. (plotters' own
//! `with_key_points` cannot take a label formatter on an `f64` axis.) Also the legend both
//! charts draw the same way.

use std::ops::Range;

use plotters::coord::CoordTranslate;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// Draws the legend of `chart`'s labelled series in its upper right corner, on a white box.
///
/// # Errors
/// The drawing backend's error.
pub fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// A linear `f64` axis with ticks at exactly the given values.
pub struct Ticked {
    axis: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    /// The axis over `range` with a tick at each of `ticks` (those outside it are left out).
    pub fn new(range: Range<f64>, ticks: impl IntoIterator<Item = f64>) -> Self {
        let ticks = ticks
            .into_iter()
            .filter(|tick| range.start <= *tick && *tick <= range.end)
            .collect();
        Self {
            axis: range.into(),
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.axis.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.axis.range()
    }
}

/// `value` as an axis label: at most three decimals, no trailing zeros (2000, 0.5, 12.25).
pub fn number(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_numbers_drop_trailing_zeros() {
        for (value, text) in [
            (2000.0, "2000"),
            (0.5, "0.5"),
            (12.25, "12.25"),
            (0.30000000000000004, "0.3"),
            (-0.0001, "0"),
        ] {
            assert_eq!(number(value), text, "{value}");
        }
    }

    #[test]
    fn the_ticks_are_the_given_ones_inside_the_range() {
        let axis = Ticked::new(0.0..2.0, [0.0, 0.5, 2.0, 3.0]);

        assert_eq!(axis.key_points(10), [0.0, 0.5, 2.0]);
        assert_eq!(axis.map(&1.0, (0, 100)), 50);
    }
}
