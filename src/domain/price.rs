//! [`Price`]: a product's price, as `numeric(12,2)` stores it and DRF's `DecimalField` writes it.

use std::fmt;
use std::str::FromStr;

use bigdecimal::BigDecimal;

/// A price: non-negative, below 10^10, with at most two decimal places (`numeric(12,2)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price(BigDecimal);

impl Price {
    /// Zero, the default price.
    pub fn zero() -> Self {
        Self(BigDecimal::from(0).with_scale(2))
    }

    /// The value as stored in PostgreSQL.
    pub fn as_decimal(&self) -> &BigDecimal {
        &self.0
    }

    /// Parses a decimal written without exponent, as JSON numbers and DRF decimal strings are.
    /// Never rounds: digits beyond the second decimal place must be zeros.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits_only(whole)
            || !digits_only(fraction)
            || (unsigned.contains('.') && fraction.is_empty())
        {
            return Err("must be a decimal number such as \"12.34\"");
        }
        let significant_whole = whole.trim_start_matches('0');
        let significant_fraction = fraction.trim_end_matches('0');
        let is_zero = significant_whole.is_empty() && significant_fraction.is_empty();
        if negative && !is_zero {
            return Err("must not be negative");
        }
        if significant_fraction.len() > 2 {
            return Err("must have at most 2 decimal places");
        }
        if significant_whole.len() > 10 {
            return Err("must be less than 10000000000");
        }
        let normalised = format!(
            "{}.{:0<2}",
            if significant_whole.is_empty() {
                "0"
            } else {
                significant_whole
            },
            significant_fraction
        );
        BigDecimal::from_str(&normalised)
            .map(|d| Self(d.with_scale(2)))
            .map_err(|_| "must be a decimal number such as \"12.34\"")
    }

    /// Converts a stored value back (always valid: the column is `numeric(12,2)`).
    pub fn from_decimal(value: BigDecimal) -> Self {
        Self(value.with_scale(2))
    }
}

impl fmt::Display for Price {
    /// Always two decimal places, as DRF's `DecimalField` writes them ("0.00", "12.30").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value is non-negative with scale 2: its unscaled digits are the price in cents.
        let (cents, _) = self.0.with_scale(2).into_bigint_and_exponent();
        let digits = format!("{cents:0>3}");
        let (whole, fraction) = digits.split_at(digits.len() - 2);
        write!(f, "{whole}.{fraction}")
    }
}

impl serde::Serialize for Price {
    /// As a decimal string with two places ("12.30"), never a JSON number, so that no client
    /// reads it through a binary float.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_keep_every_digit_or_are_refused() {
        let ok = [
            ("12.34", "12.34"),
            ("0", "0.00"),
            ("7", "7.00"),
            ("1.500", "1.50"),
            ("-0", "0.00"),
            ("0012.3", "12.30"),
            ("9999999999.99", "9999999999.99"),
        ];
        for (input, shown) in ok {
            assert_eq!(
                Price::parse(input).map(|p| p.to_string()),
                Ok(shown.to_owned()),
                "{input}"
            );
        }
        let bad = [
            ("12.345", "decimal places"),
            ("-1", "negative"),
            ("10000000000", "less than"),
            ("1e2", "decimal number"),
            ("", "decimal number"),
            ("1.", "decimal number"),
            (".5", "decimal number"),
            ("NaN", "decimal number"),
            (" 1", "decimal number"),
        ];
        for (input, why) in bad {
            let error = Price::parse(input).expect_err(input);
            assert!(error.contains(why), "{input}: {error}");
        }
    }
}
