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

    /// Parses a JSON number as written (RFC 8259, section 6: digits, a fraction, an exponent).
    /// One with an exponent is read exactly, `1.25e2` as 125; otherwise as [`Price::parse`].
    ///
    /// # Errors
    /// As [`Price::parse`], for the value the number denotes.
    pub fn parse_json_number(text: &str) -> Result<Self, &'static str> {
        let Some((mantissa, exponent)) = text.split_once(['e', 'E']) else {
            return Self::parse(text);
        };
        let malformed = "must be a decimal number such as \"12.34\"";
        let exponent: i64 = exponent.parse().map_err(|_| malformed)?;
        let mantissa_is_zero = mantissa
            .bytes()
            .all(|b| matches!(b, b'0' | b'.' | b'-' | b'+'));
        // Beyond these the value is out of range or too finely divided whatever the mantissa
        // (bounded so that a number like 1e999999999 is refused without being written out).
        const FAR: i64 = 64;
        if mantissa_is_zero {
            return Self::parse(mantissa);
        }
        if exponent > FAR {
            return Err(if mantissa.starts_with('-') {
                "must not be negative"
            } else {
                "must be less than 10000000000"
            });
        }
        if exponent < -FAR {
            return Err("must have at most 2 decimal places");
        }
        let value = BigDecimal::from_str(text).map_err(|_| malformed)?;
        Self::parse(&value.to_plain_string())
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
    fn json_numbers_with_an_exponent_are_read_exactly() {
        for (number, price) in [
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
        for number in ["1e-3", "1e10", "-1e2", "1e999999999", "1e-999999999", "1e"] {
            assert!(Price::parse_json_number(number).is_err(), "{number}");
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
