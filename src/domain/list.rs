//! The filters and page of `GET /products`: [`ListParams`] as they arrive (text), [`ListQuery`]
//! once checked.

use serde::Serialize;

use crate::domain::input::{FieldErrors, InputError, NOT_UTF8, form_pairs, key_field_length};
use crate::domain::key::{canonical_key_field, format_character, format_character_message};
use crate::domain::product::Product;

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 500;

/// The list parameters as sent: everything arrives as text, so that errors name the parameter.
#[derive(Debug, Clone, Default, Serialize)]
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

/// The names of the list parameters.
pub const LIST_PARAMETERS: [&str; 5] = ["brand", "serial", "manufacturer", "limit", "after"];

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
/// character, NUL included, an invisible format character, or more than [`MAX_KEY_CHARS`](crate::domain::input::MAX_KEY_CHARS)
/// characters as sent, trimmed), so that it never reaches the database (PostgreSQL text cannot
/// even hold NUL).
fn key_filter(value: Option<&str>) -> Result<Option<String>, String> {
    let Some(raw) = value else {
        return Ok(None);
    };
    key_field_length(raw)?;
    let value = canonical_key_field(raw);
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    if let Some(c) = format_character(&value) {
        return Err(format_character_message(c));
    }
    Ok(Some(value))
}

impl ListParams {
    /// Reads and checks a query string (`application/x-www-form-urlencoded`, percent-decoded as
    /// UTF-8): the parameters as sent (to build the next page's link from) and the query. A
    /// filter with an empty value (after trimming) is left out, as django-filter does.
    ///
    /// # Errors
    /// [`InputError::Invalid`] naming every bad parameter at once: unknown, given twice, not
    /// UTF-8 once percent-decoded, or refused by [`ListParams::parse`].
    pub fn from_query(query: &str) -> Result<(Self, ListQuery), InputError> {
        let mut params = Self::default();
        let mut errors = FieldErrors::new();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in form_pairs(query.as_bytes()) {
            if seen.contains(&name) {
                errors.insert(name, vec!["appears more than once".to_owned()]);
                continue;
            }
            seen.push(name.clone());
            let slot = match name.as_str() {
                "brand" => &mut params.brand,
                "serial" => &mut params.serial,
                "manufacturer" => &mut params.manufacturer,
                "limit" => &mut params.limit,
                "after" => &mut params.after,
                _ => {
                    let expected = LIST_PARAMETERS.join(", ");
                    errors.insert(
                        name,
                        vec![format!("unknown parameter; expected one of: {expected}")],
                    );
                    continue;
                }
            };
            let is_filter = !matches!(name.as_str(), "limit" | "after");
            match value {
                None => {
                    errors.insert(name, vec![NOT_UTF8.to_owned()]);
                }
                // An empty filter is no filter (django-filter); an empty page size is an error.
                Some(value) if is_filter && value.trim().is_empty() => {}
                Some(value) => *slot = Some(value),
            }
        }
        match params.parse() {
            Ok(query) if errors.is_empty() => Ok((params, query)),
            Ok(_) => Err(InputError::Invalid(errors)),
            Err(InputError::Invalid(more)) => {
                for (name, messages) in more {
                    errors.entry(name).or_insert(messages);
                }
                Err(InputError::Invalid(errors))
            }
            Err(other) => Err(other),
        }
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`InputError::Invalid`] naming each bad parameter: `limit` (not an integer from 1 to
    /// [`MAX_LIMIT`]), `after` (not an integer), a key filter with a control or invisible format
    /// character or over
    /// 255 characters.
    pub fn parse(&self) -> Result<ListQuery, InputError> {
        let mut errors = FieldErrors::new();
        let mut note = |name: &str, result: Result<(), String>| {
            if let Err(message) = result {
                errors.insert(name.to_owned(), vec![message]);
            }
        };
        let mut limit = DEFAULT_LIMIT;
        if let Some(text) = &self.limit {
            note(
                "limit",
                text.parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .map(|n| limit = n)
                    .ok_or_else(|| format!("must be an integer from 1 to {MAX_LIMIT}")),
            );
        }
        let mut after = None;
        if let Some(text) = &self.after {
            note(
                "after",
                text.parse::<i64>()
                    .map(|n| after = Some(n))
                    .map_err(|_| "must be a product id (an integer)".to_owned()),
            );
        }
        let mut filter = |name: &str, value: &Option<String>| {
            let checked = key_filter(value.as_deref());
            note(name, checked.as_ref().map(|_| ()).map_err(Clone::clone));
            checked.ok().flatten()
        };
        let query = ListQuery {
            brand: filter("brand", &self.brand),
            serial: filter("serial", &self.serial),
            manufacturer: filter("manufacturer", &self.manufacturer),
            after,
            limit,
        };
        if errors.is_empty() {
            Ok(query)
        } else {
            Err(InputError::Invalid(errors))
        }
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
