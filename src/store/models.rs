//! The row type of `products`, the changeset an update writes, and what an upsert did.

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::products;
use crate::domain::{Price, Product, ProductKey, ProductPatch};

/// A row of `products`, as diesel reads it; the store hands out [`Product`]s.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = products, check_for_backend(diesel::pg::Pg))]
pub struct ProductRow {
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

impl ProductRow {
    /// The natural key of this row.
    pub fn key(&self) -> ProductKey {
        ProductKey::new(&self.brand, &self.serial, &self.manufacturer)
    }
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Self {
            id: row.id,
            brand: row.brand,
            serial: row.serial,
            manufacturer: row.manufacturer,
            name: row.name,
            description: row.description,
            price: Price::from_decimal(row.price),
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// What one upsert did.
#[derive(Debug, Clone)]
pub struct Upserted {
    /// The product as stored after the upsert.
    pub product: Product,
    /// `true` if the upsert inserted the product, `false` if it updated an existing one.
    pub created: bool,
    /// How many rows the key had (0 when created). More than 1 means rows were duplicated
    /// outside this service: the oldest (lowest id) was updated.
    pub copies: i64,
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
