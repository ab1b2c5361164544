//! Parsed, normalised input. Request bodies become these types once, at the edge; nothing after
//! the handler checks them again.
//!
//! Parsing happens in two steps: [`FieldReader`] checks presence, `null`, JSON types and unknown
//! fields; then `validator` checks lengths and characters on the typed values. All problems of a
//! body are reported together, by field.

use std::fmt;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use serde_json::{Map, Value};
use validator::{Validate, ValidationError, ValidationErrors, ValidationErrorsKind};

use crate::error::{ApiError, FieldErrors};

/// Longest brand, serial, manufacturer or name, in characters.
pub const MAX_KEY_CHARS: u64 = 255;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: u64 = 10_000;

/// Every field a product body may carry.
pub const FIELDS: [&str; 6] = [
    "brand",
    "serial",
    "manufacturer",
    "name",
    "description",
    "price",
];
/// The fields POST and PUT require.
pub const REQUIRED_FIELDS: [&str; 4] = ["brand", "serial", "manufacturer", "name"];

/// The body of `POST /products` and `PUT /products/{id}`, for the OpenAPI document. Bodies are
/// parsed by [`ProductInput::from_json`]; a test keeps this description and [`FIELDS`] equal.
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "describes the body for OpenAPI; never built")]
pub struct ProductRequest {
    /// Trimmed; no control characters.
    #[schema(min_length = 1, max_length = 255)]
    brand: String,
    /// Trimmed; no control characters.
    #[schema(min_length = 1, max_length = 255)]
    serial: String,
    /// Trimmed; no control characters.
    #[schema(min_length = 1, max_length = 255)]
    manufacturer: String,
    /// Not blank; no control characters.
    #[schema(min_length = 1, max_length = 255)]
    name: String,
    /// Default "" (on an upsert that updates: kept).
    #[schema(max_length = 10000)]
    description: Option<String>,
    /// Decimal string or JSON number, 0 to 9999999999.99, at most two decimal places.
    /// Default 0 (on an upsert that updates: kept).
    #[schema(value_type = Option<String>, example = "12.34")]
    price: Option<String>,
}

/// The body of `PATCH /products/{id}`: any of the fields, none required.
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "describes the body for OpenAPI; never built")]
pub struct ProductPatchRequest {
    #[schema(min_length = 1, max_length = 255)]
    brand: Option<String>,
    #[schema(min_length = 1, max_length = 255)]
    serial: Option<String>,
    #[schema(min_length = 1, max_length = 255)]
    manufacturer: Option<String>,
    #[schema(min_length = 1, max_length = 255)]
    name: Option<String>,
    #[schema(max_length = 10000)]
    description: Option<String>,
    #[schema(value_type = Option<String>, example = "12.34")]
    price: Option<String>,
}

/// The natural key of a product: what makes two products "the same product".
///
/// Its fields are trimmed of whitespace at both ends and otherwise compared exactly
/// (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProductKey {
    pub brand: String,
    pub serial: String,
    pub manufacturer: String,
}

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

/// The body of `POST /products` and `PUT /products/{id}`: every writable field, optional ones
/// `None` when omitted.
#[derive(Debug, Clone)]
pub struct ProductInput {
    pub key: ProductKey,
    pub name: String,
    pub description: Option<String>,
    pub price: Option<Price>,
}

/// The body of `PATCH /products/{id}`: only what it names.
#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    pub brand: Option<String>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Price>,
}

impl ProductPatch {
    /// The key after this patch is applied to a row whose key is `current`.
    pub fn key_over(&self, current: &ProductKey) -> ProductKey {
        ProductKey {
            brand: self.brand.clone().unwrap_or_else(|| current.brand.clone()),
            serial: self
                .serial
                .clone()
                .unwrap_or_else(|| current.serial.clone()),
            manufacturer: self
                .manufacturer
                .clone()
                .unwrap_or_else(|| current.manufacturer.clone()),
        }
    }
}

impl From<ProductInput> for ProductPatch {
    /// A PUT as a patch: every field set, omitted optional fields back to their defaults.
    fn from(input: ProductInput) -> Self {
        Self {
            brand: Some(input.key.brand),
            serial: Some(input.key.serial),
            manufacturer: Some(input.key.manufacturer),
            name: Some(input.name),
            description: Some(input.description.unwrap_or_default()),
            price: Some(input.price.unwrap_or_else(Price::zero)),
        }
    }
}

/// The typed body, checked by `validator` after the JSON-level checks.
#[derive(Debug, Validate)]
struct ProductFields {
    #[validate(
        custom(function = "single_line_text"),
        length(max = MAX_KEY_CHARS, message = "must be at most 255 characters")
    )]
    brand: Option<String>,
    #[validate(
        custom(function = "single_line_text"),
        length(max = MAX_KEY_CHARS, message = "must be at most 255 characters")
    )]
    serial: Option<String>,
    #[validate(
        custom(function = "single_line_text"),
        length(max = MAX_KEY_CHARS, message = "must be at most 255 characters")
    )]
    manufacturer: Option<String>,
    #[validate(
        custom(function = "single_line_text"),
        length(max = MAX_KEY_CHARS, message = "must be at most 255 characters")
    )]
    name: Option<String>,
    #[validate(
        length(max = MAX_DESCRIPTION_CHARS, message = "must be at most 10000 characters"),
        custom(function = "no_nul")
    )]
    description: Option<String>,
    price: Option<Price>,
}

/// Key fields and name: not blank, and no control characters (NUL, tab, newline, DEL, C1).
fn single_line_text(value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new("blank").with_message("must not be blank".into()));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new("control_character")
            .with_message("must not contain control characters".into()));
    }
    Ok(())
}

fn no_nul(value: &str) -> Result<(), ValidationError> {
    // PostgreSQL text cannot hold U+0000.
    if value.contains('\0') {
        return Err(
            ValidationError::new("nul").with_message("must not contain NUL (U+0000)".into())
        );
    }
    Ok(())
}

/// Which fields a body must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    /// POST and PUT: the key fields and name are required.
    Full,
    /// PATCH: every field is optional.
    Partial,
}

/// Reads typed fields out of a JSON object, collecting every problem by field name.
struct FieldReader {
    object: Map<String, Value>,
    errors: FieldErrors,
    presence: Presence,
}

impl FieldReader {
    fn new(body: &[u8], presence: Presence) -> Result<Self, ApiError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        let Value::Object(object) = value else {
            return Err(ApiError::NotAnObject);
        };
        Ok(Self {
            object,
            errors: FieldErrors::new(),
            presence,
        })
    }

    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    /// Takes `field` out of the object; `None` if absent (an error if required) or `null`.
    fn take(&mut self, field: &str, required: bool) -> Option<Value> {
        match self.object.remove(field) {
            None => {
                if required && self.presence == Presence::Full {
                    self.error(field, "is required");
                }
                None
            }
            Some(Value::Null) => {
                self.error(field, "must not be null");
                None
            }
            Some(value) => Some(value),
        }
    }

    fn string(&mut self, field: &str, required: bool) -> Option<String> {
        match self.take(field, required)? {
            Value::String(s) => Some(s),
            _ => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    /// A key field: a string, trimmed of whitespace at both ends.
    fn key_part(&mut self, field: &str) -> Option<String> {
        self.string(field, true).map(|s| s.trim().to_owned())
    }

    fn price(&mut self) -> Option<Price> {
        let text = match self.take("price", false)? {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => {
                self.error("price", "must be a decimal string or a number");
                return None;
            }
        };
        match Price::parse(&text) {
            Ok(price) => Some(price),
            Err(message) => {
                self.error("price", message);
                None
            }
        }
    }

    fn finish(mut self) -> Result<ProductFields, ApiError> {
        let fields = ProductFields {
            brand: self.key_part("brand"),
            serial: self.key_part("serial"),
            manufacturer: self.key_part("manufacturer"),
            name: self.string("name", true),
            description: self.string("description", false),
            price: self.price(),
        };
        let unknown: Vec<String> = self.object.keys().cloned().collect();
        for field in unknown {
            self.error(
                &field,
                format!("unknown field; expected one of: {}", FIELDS.join(", ")),
            );
        }
        if let Err(errors) = fields.validate() {
            merge_validation_errors(&mut self.errors, errors);
        }
        if self.errors.is_empty() {
            Ok(fields)
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

fn merge_validation_errors(into: &mut FieldErrors, errors: ValidationErrors) {
    for (field, kind) in errors.into_errors() {
        if let ValidationErrorsKind::Field(list) = kind {
            let messages = into.entry(field.into_owned()).or_default();
            for error in list {
                let message = error
                    .message
                    .map_or_else(|| error.code.into_owned(), |m| m.into_owned());
                if !messages.contains(&message) {
                    messages.push(message);
                }
            }
        }
    }
}

impl ProductInput {
    /// Parses the body of a POST or PUT.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let fields = FieldReader::new(body, Presence::Full)?.finish()?;
        let missing = || ApiError::Internal("validated body lost a required field".to_owned());
        Ok(Self {
            key: ProductKey {
                brand: fields.brand.ok_or_else(missing)?,
                serial: fields.serial.ok_or_else(missing)?,
                manufacturer: fields.manufacturer.ok_or_else(missing)?,
            },
            name: fields.name.ok_or_else(missing)?,
            description: fields.description,
            price: fields.price,
        })
    }
}

impl ProductPatch {
    /// Parses the body of a PATCH.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let fields = FieldReader::new(body, Presence::Partial)?.finish()?;
        Ok(Self {
            brand: fields.brand,
            serial: fields.serial,
            manufacturer: fields.manufacturer,
            name: fields.name,
            description: fields.description,
            price: fields.price,
        })
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

    #[test]
    fn key_fields_are_trimmed_and_inner_control_characters_refused() {
        let input = ProductInput::from_json(
            br#"{"brand":"  Acme ","serial":"\tS1\n","manufacturer":"M","name":"N"}"#,
        )
        .expect("valid");
        assert_eq!(input.key.brand, "Acme");
        assert_eq!(input.key.serial, "S1");

        let Err(ApiError::Validation(errors)) = ProductInput::from_json(
            br#"{"brand":"A\u0000B","serial":"S","manufacturer":"M","name":"N"}"#,
        ) else {
            panic!("a NUL inside a key must be refused");
        };
        assert!(errors.contains_key("brand"), "{errors:?}");
    }
}
