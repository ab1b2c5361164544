//! The filters and page of `GET /products`: [`ListParams`] as they arrive (text), [`ListQuery`]
//! once checked.

use serde::{Deserialize, Serialize};

use crate::domain::input::{InputError, MAX_KEY_CHARS};
use crate::domain::key::{canonical_key_field, format_character, format_character_message};
use crate::domain::product::Product;

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 500;

/// The list parameters as sent: everything arrives as text, so that errors name the parameter.
/// Unknown parameters are refused when decoding.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Exact-match filters on key fields (in canonical form, as keys are) and a keyset page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub brand: Option<String>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    /// Only ids greater than this.
    pub after: Option<i64>,
    /// Page size, 1 to [`MAX_LIMIT`].
    pub limit: i64,
}

/// One page of products, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub items: Vec<Product>,
    /// Where the next page starts (its `after`); `None` on the last page.
    pub next_after: Option<i64>,
}

/// A key-field filter, in the canonical form keys have (trimmed, NFC: [`canonical_key_field`]),
/// so that any spelling of a key finds it; refused where no key could match it (a control
/// character, NUL included, an invisible format character, or more than [`MAX_KEY_CHARS`]
/// characters in canonical form), so that it never reaches the database (PostgreSQL text cannot
/// even hold NUL).
fn key_filter(name: &str, value: Option<&str>) -> Result<Option<String>, InputError> {
    let Some(value) = value.map(canonical_key_field) else {
        return Ok(None);
    };
    if value.chars().any(char::is_control) {
        return Err(InputError::field(
            name,
            "must not contain control characters",
        ));
    }
    if let Some(c) = format_character(&value) {
        return Err(InputError::field(name, format_character_message(c)));
    }
    if value.chars().count() as u64 > MAX_KEY_CHARS {
        return Err(InputError::field(name, "must be at most 255 characters"));
    }
    Ok(Some(value))
}

impl ListParams {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`InputError::Invalid`] naming `limit` (not an integer from 1 to [`MAX_LIMIT`]), `after`
    /// (not an integer), or a key filter with a control or invisible format character or over
    /// 255 characters.
    pub fn parse(&self) -> Result<ListQuery, InputError> {
        let limit = match &self.limit {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    InputError::field("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))
                })?,
        };
        let after = match &self.after {
            None => None,
            Some(text) => Some(
                text.parse::<i64>()
                    .map_err(|_| InputError::field("after", "must be a product id (an integer)"))?,
            ),
        };
        Ok(ListQuery {
            brand: key_filter("brand", self.brand.as_deref())?,
            serial: key_filter("serial", self.serial.as_deref())?,
            manufacturer: key_filter("manufacturer", self.manufacturer.as_deref())?,
            after,
            limit,
        })
    }

    /// The parameters of the page that starts after product `after`: the same filters and
    /// page size.
    pub fn next_page(&self, page_size: i64, after: i64) -> Self {
        Self {
            limit: Some(page_size.to_string()),
            after: Some(after.to_string()),
            ..self.clone()
        }
    }
}
