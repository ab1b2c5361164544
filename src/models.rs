//! Rows of the `products` table and the shapes written to it.

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::domain::{Price, ProductKey, ProductPatch};
use crate::schema::products;

/// A stored product.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = products, check_for_backend(diesel::pg::Pg))]
pub struct Product {
    pub id: i64,
    pub brand: String,
    pub serial: String,
    pub manufacturer: String,
    pub name: String,
    pub description: String,
    pub price: BigDecimal,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    /// The natural key of this row.
    pub fn key(&self) -> ProductKey {
        ProductKey {
            brand: self.brand.clone(),
            serial: self.serial.clone(),
            manufacturer: self.manufacturer.clone(),
        }
    }
}

/// A product as the API shows it: `price` as a decimal string, times in RFC 3339.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductBody {
    pub id: i64,
    pub brand: String,
    pub serial: String,
    pub manufacturer: String,
    pub name: String,
    pub description: String,
    /// Decimal string with two places.
    #[schema(example = "12.34")]
    pub price: String,
    /// 1 on creation, +1 on every update.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Product> for ProductBody {
    fn from(p: Product) -> Self {
        Self {
            id: p.id,
            brand: p.brand,
            serial: p.serial,
            manufacturer: p.manufacturer,
            name: p.name,
            description: p.description,
            price: Price::from_decimal(p.price).to_string(),
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// The writable fields an update sets; `None` leaves a column as it is.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = products)]
pub struct ProductChanges<'a> {
    pub brand: Option<&'a str>,
    pub serial: Option<&'a str>,
    pub manufacturer: Option<&'a str>,
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub price: Option<&'a BigDecimal>,
}

impl<'a> From<&'a ProductPatch> for ProductChanges<'a> {
    fn from(patch: &'a ProductPatch) -> Self {
        Self {
            brand: patch.brand.as_deref(),
            serial: patch.serial.as_deref(),
            manufacturer: patch.manufacturer.as_deref(),
            name: patch.name.as_deref(),
            description: patch.description.as_deref(),
            price: patch.price.as_ref().map(Price::as_decimal),
        }
    }
}
