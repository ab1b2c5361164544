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

    /// Parses a JSON number as written (RFC 8259, section 6: digits, a fraction, an exponent),
    /// exactly: `1.25e2` is 125, `100e-2` is 1, however many digits or zeros it is written with.
    ///
    /// # Errors
    /// As [`Price::parse`], for the value the number denotes.
    pub fn parse_json_number(text: &str) -> Result<Self, &'static str> {
        let malformed = "must be a decimal number such as \"12.34\"";
        let Some((mantissa, exponent)) = text.split_once(['e', 'E']) else {
            return Self::parse(text);
        };
        let (negative, unsigned) = match mantissa.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, mantissa),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return Err(malformed);
        }
        // The value is `digits` x 10^(exponent - fraction length); `significant` is `digits`
        // without its leading and trailing zeros, each trailing one moving the point.
        let digits = format!("{whole}{fraction}");
        let significant = digits.trim_start_matches('0').trim_end_matches('0');
        if significant.is_empty() {
            return Ok(Self::zero());
        }
        if negative {
            return Err("must not be negative");
        }
        let exponent = parse_exponent(exponent).ok_or(malformed)?;
        let trailing_zeros = digits.len() - digits.trim_end_matches('0').len();
        let shift = exponent
            .saturating_sub(fraction.len() as i64)
            .saturating_add(trailing_zeros as i64);
        if shift < -2 {
            return Err("must have at most 2 decimal places");
        }
        if (significant.len() as i64).saturating_add(shift) > 10 {
            return Err("must be less than 10000000000");
        }
        // Now -2 <= shift <= 10 - len: write it out plainly, at most 12 digits.
        let plain = match usize::try_from(shift) {
            Ok(zeros) => format!("{significant}{}", "0".repeat(zeros)),
            Err(_) => {
                let places = shift.unsigned_abs() as usize;
                let padded = format!("{significant:0>width$}", width = places + 1);
                let point = padded.len() - places;
                format!("{}.{}", &padded[..point], &padded[point..])
            }
        };
        Self::parse(&plain)
    }

    /// Converts a stored value back (always valid: the column is `numeric(12,2)`).
    pub fn from_decimal(value: BigDecimal) -> Self {
        Self(value.with_scale(2))
    }
}

/// A JSON number's exponent (`+5`, `-12`, `7`); one too large for an `i64` saturates, as its
/// value is out of any price's range either way.
fn parse_exponent(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match digits.parse::<i64>() {
        Ok(n) if negative => -n,
        Ok(n) => n,
        Err(_) if negative => i64::MIN,
        Err(_) => i64::MAX,
    })
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
    fn json_numbers_with_an_exponent_are_read_exactly() {
        let long_one = format!("1{}e-66", "0".repeat(66));
        let long_shifted = format!("0.{}1e65", "0".repeat(64));
        let long_zero = format!("0e{}", "9".repeat(30));
        for (number, price) in [
            (long_one.as_str(), "1.00"),
            (long_shifted.as_str(), "1.00"),
            (long_zero.as_str(), "0.00"),
            ("12.5e-1", "1.25"),
            ("0.5e1", "5.00"),
            ("9999999999.99e0", "9999999999.99"),
            ("1e2", "100.00"),
            ("1.25E+2", "125.00"),
            ("1234e-2", "12.34"),
            ("0e999999999", "0.00"),
            ("-0.0e5", "0.00"),
            ("12.5", "12.50"),
        ] {
            assert_eq!(
                Price::parse_json_number(number).map(|p| p.to_string()),
                Ok(price.to_owned()),
                "{number}"
            );
        }
        for (number, message) in [
            ("1e-3", "must have at most 2 decimal places"),
            ("1e10", "must be less than 10000000000"),
            ("-1e2", "must not be negative"),
            ("1e999999999", "must be less than 10000000000"),
            ("1e99999999999999999999999", "must be less than 10000000000"),
            ("1e-999999999", "must have at most 2 decimal places"),
            (
                &format!("0.{}1e100", "0".repeat(103)),
                "must have at most 2 decimal places",
            ),
            ("1e", "must be a decimal number such as \"12.34\""),
        ] {
            assert_eq!(Price::parse_json_number(number), Err(message), "{number}");
        }
    }

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
