//! The filters and page of `GET /products`: [`ListParams`] as they arrive (text), [`ListQuery`]
//! once checked.

use serde::{Deserialize, Serialize};

use crate::domain::input::InputError;
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

/// Exact-match filters on key fields (trimmed, as keys are) and a keyset page.
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

impl ListParams {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`InputError::Invalid`] naming `limit` (not an integer from 1 to [`MAX_LIMIT`]) or
    /// `after` (not an integer).
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
        let key_filter = |value: &Option<String>| value.as_deref().map(|v| v.trim().to_owned());
        Ok(ListQuery {
            brand: key_filter(&self.brand),
            serial: key_filter(&self.serial),
            manufacturer: key_filter(&self.manufacturer),
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
