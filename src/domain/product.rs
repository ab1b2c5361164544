//! Products: as stored ([`Product`]) and as requests write them ([`ProductInput`] for POST and
//! PUT, [`ProductPatch`] for PATCH), with the parsing of their JSON bodies.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::input::{BodyFormat, FieldReader, InputError, Presence};
use crate::domain::key::ProductKey;
use crate::domain::price::Price;

/// A stored product, serialised as the API shows it: `price` as a decimal string, times in
/// RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: i64,
    pub brand: String,
    pub serial: String,
    pub manufacturer: String,
    pub name: String,
    pub description: String,
    pub price: Price,
    /// 1 on creation, +1 on every update.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    /// The natural key of this product.
    pub fn key(&self) -> ProductKey {
        ProductKey::new(&self.brand, &self.serial, &self.manufacturer)
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

impl ProductInput {
    /// Parses the body of a POST or PUT, encoded as `format`.
    ///
    /// # Errors
    /// [`InputError`] naming every missing or invalid field, or saying the body is not a JSON
    /// object (or not a form).
    pub fn parse(body: &[u8], format: BodyFormat) -> Result<Self, InputError> {
        let fields = FieldReader::new(body, format, Presence::Full)?.finish()?;
        Ok(Self {
            key: ProductKey::new(
                required(fields.brand, "brand")?,
                required(fields.serial, "serial")?,
                required(fields.manufacturer, "manufacturer")?,
            ),
            name: required(fields.name, "name")?,
            description: fields.description,
            price: fields.price,
        })
    }
}

/// A field that [`Presence::Full`] reading has already required (so this never fails in
/// practice; if it did, the message would still be true).
fn required(value: Option<String>, field: &str) -> Result<String, InputError> {
    value.ok_or_else(|| InputError::field(field, "is required"))
}

impl ProductPatch {
    /// Parses the body of a PATCH: any of the fields, none required.
    ///
    /// # Errors
    /// As [`ProductInput::parse`].
    pub fn parse(body: &[u8], format: BodyFormat) -> Result<Self, InputError> {
        let fields = FieldReader::new(body, format, Presence::Partial)?.finish()?;
        Ok(Self {
            brand: fields.brand,
            serial: fields.serial,
            manufacturer: fields.manufacturer,
            name: fields.name,
            description: fields.description,
            price: fields.price,
        })
    }

    /// Parses the body of a PUT, as the patch that replaces every writable field (omitted
    /// optional fields go back to their defaults).
    ///
    /// # Errors
    /// As [`ProductInput::parse`].
    pub fn replacing(body: &[u8], format: BodyFormat) -> Result<Self, InputError> {
        ProductInput::parse(body, format).map(Self::from)
    }

    /// The key after this patch is applied to a product whose key is `current`.
    pub fn key_over(&self, current: &ProductKey) -> ProductKey {
        let pick = |new: &Option<String>, old: &String| new.as_ref().unwrap_or(old).clone();
        ProductKey::new(
            pick(&self.brand, &current.brand),
            pick(&self.serial, &current.serial),
            pick(&self.manufacturer, &current.manufacturer),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_fields_are_trimmed_and_inner_control_characters_refused() {
        let input = ProductInput::parse(
            br#"{"brand":"  Acme ","serial":"\tS1\n","manufacturer":"M","name":"N"}"#,
            BodyFormat::Json,
        )
        .expect("valid");
        assert_eq!(input.key.brand, "Acme");
        assert_eq!(input.key.serial, "S1");

        let Err(InputError::Invalid(errors)) = ProductInput::parse(
            br#"{"brand":"A\u0000B","serial":"S","manufacturer":"M","name":"N"}"#,
            BodyFormat::Json,
        ) else {
            panic!("a NUL inside a key must be refused");
        };
        assert!(errors.contains_key("brand"), "{errors:?}");
    }
}
