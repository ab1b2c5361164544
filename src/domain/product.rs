//! Products: as stored ([`Product`]) and as requests write them ([`ProductInput`] for POST and
//! PUT, [`ProductPatch`] for PATCH), with the parsing of their JSON bodies.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::input::{
    BodyFormat, FieldErrors, FieldReader, InputError, Presence, ProductFields,
};
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
    /// The body's `version` member: a precondition for PUT, ignored by POST.
    pub version: Option<i64>,
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
    /// The body's `version` member: the version the client read, a precondition (a mismatch
    /// writes nothing), as `If-Match` is.
    pub version: Option<i64>,
}

impl ProductInput {
    /// Parses the body of a POST or PUT, encoded as `format`.
    ///
    /// # Errors
    /// [`InputError`] naming every missing or invalid field, or saying the body is not a JSON
    /// object (or not a form).
    pub fn parse(body: &[u8], format: BodyFormat) -> Result<Self, InputError> {
        Self::from_fields(FieldReader::new(body, format, Presence::Full)?.finish()?)
    }

    /// Parses the body of `POST /products/batch`: a JSON array of at most `max_items` product
    /// bodies, each read exactly as [`Self::parse`] reads a JSON body. An empty array is a
    /// batch of nothing.
    ///
    /// # Errors
    /// [`InputError::MalformedJson`]; [`InputError::NotAnArray`]; [`InputError::TooManyItems`]
    /// over `max_items`; [`InputError::InvalidItems`] naming every problem of every bad item,
    /// as `<index>.<field>` (`<index>` alone: the item is not a JSON object), and the bad
    /// items' indexes.
    pub fn parse_batch(body: &[u8], max_items: usize) -> Result<Vec<Self>, InputError> {
        let readers = FieldReader::for_each_item(body, max_items, Presence::Full)?;
        let mut inputs = Vec::with_capacity(readers.len());
        let mut errors = FieldErrors::new();
        let mut items = Vec::new();
        for (index, reader) in readers.into_iter().enumerate() {
            let parsed = match reader {
                Some(reader) => reader.finish().and_then(Self::from_fields),
                None => Err(InputError::field("", "must be a JSON object")),
            };
            match parsed {
                Ok(input) => inputs.push(input),
                Err(error) => {
                    items.push(index);
                    // A reader's errors are field errors; anything else is the item's own.
                    let fields = match error {
                        InputError::Invalid(fields) => fields,
                        other => FieldErrors::from([(String::new(), vec![other.to_string()])]),
                    };
                    for (field, messages) in fields {
                        let name = if field.is_empty() {
                            index.to_string()
                        } else {
                            format!("{index}.{field}")
                        };
                        errors.insert(name, messages);
                    }
                }
            }
        }
        if items.is_empty() {
            Ok(inputs)
        } else {
            Err(InputError::InvalidItems { errors, items })
        }
    }

    /// The input of fields that [`Presence::Full`] reading accepted.
    fn from_fields(fields: ProductFields) -> Result<Self, InputError> {
        Ok(Self {
            key: ProductKey::new(
                required(fields.brand, "brand")?,
                required(fields.serial, "serial")?,
                required(fields.manufacturer, "manufacturer")?,
            ),
            name: required(fields.name, "name")?,
            description: fields.description,
            price: fields.price,
            version: fields.version,
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
            version: fields.version,
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

    /// Whether this patch names a key field (brand, serial or manufacturer).
    pub fn names_key_field(&self) -> bool {
        self.brand.is_some() || self.serial.is_some() || self.manufacturer.is_some()
    }

    /// The key after this patch is applied to a product whose key is `current`.
    ///
    /// A patch that names no key field leaves the key exactly as stored (so a row written before
    /// keys were normalised keeps its spelling and its lock). A patch that names one writes a
    /// canonical key ([`ProductKey::canonical`]): its own fields are canonical already, and the
    /// fields it keeps are put in canonical form too, so no write creates a key that a request
    /// could not name.
    pub fn key_over(&self, current: &ProductKey) -> ProductKey {
        if !self.names_key_field() {
            return current.clone();
        }
        let pick = |new: &Option<String>, old: &String| new.as_ref().unwrap_or(old).clone();
        ProductKey::new(
            pick(&self.brand, &current.brand),
            pick(&self.serial, &current.serial),
            pick(&self.manufacturer, &current.manufacturer),
        )
        .canonical()
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
            version: input.version,
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

    #[test]
    fn key_fields_are_nfc_and_invisible_format_characters_refused_in_keys_only() {
        let input = ProductInput::parse(
            r#"{"brand":" Cafe\u0301 ","serial":"S","manufacturer":"M","name":"N\u200dN"}"#
                .as_bytes(),
            BodyFormat::Json,
        )
        .expect("valid");
        assert_eq!(input.key.brand, "Caf\u{e9}");
        assert_eq!(
            input.name, "N\u{200d}N",
            "name is display text: kept as sent"
        );

        for (field, body) in [
            (
                "brand",
                r#"{"brand":"A\u200bB","serial":"S","manufacturer":"M","name":"N"}"#,
            ),
            (
                "serial",
                r#"{"brand":"A","serial":"\ufeffS","manufacturer":"M","name":"N"}"#,
            ),
            (
                "manufacturer",
                r#"{"brand":"A","serial":"S","manufacturer":"M\u202e","name":"N"}"#,
            ),
        ] {
            let Err(InputError::Invalid(errors)) =
                ProductInput::parse(body.as_bytes(), BodyFormat::Json)
            else {
                panic!("{field}: a format character in a key field must be refused");
            };
            assert!(
                errors[field][0].starts_with("must not contain invisible format characters (U+"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn a_patch_that_names_a_key_field_writes_a_canonical_key_and_one_that_does_not_keeps_it() {
        let legacy = ProductKey::new("Cafe\u{301}", "S", "M");
        let rename = ProductPatch::parse(br#"{"name":"N"}"#, BodyFormat::Json).expect("valid");
        assert_eq!(rename.key_over(&legacy), legacy);
        let move_serial =
            ProductPatch::parse(br#"{"serial":"T"}"#, BodyFormat::Json).expect("valid");
        assert_eq!(
            move_serial.key_over(&legacy),
            ProductKey::new("Caf\u{e9}", "T", "M")
        );
    }

    #[test]
    fn a_batch_is_read_item_by_item_as_post_bodies_are() {
        let inputs = ProductInput::parse_batch(
            r#"[{"brand":" A ","serial":"S","manufacturer":"M","name":"N","id":7},
                {"brand":"Cafe\u0301","serial":"S","manufacturer":"M","name":"N","price":"1.50"}]"#
                .as_bytes(),
            10,
        )
        .expect("valid");
        assert_eq!(inputs.len(), 2);
        assert_eq!(
            inputs[0].key.brand, "A",
            "trimmed; read-only members ignored"
        );
        assert_eq!(inputs[1].key.brand, "Caf\u{e9}", "NFC");
        assert!(
            ProductInput::parse_batch(b"[]", 10)
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn a_batch_names_every_bad_item_by_index() {
        let body = r#"[{"brand":"A","serial":"S","manufacturer":"M","name":"N"},
            {"brand":"A","brand":"B","serial":"S","manufacturer":"M","name":"N"},
            {"brand":"A\u200b","serial":"S","manufacturer":"M","name":"N","price":"-1"},
            5]"#;
        let Err(InputError::InvalidItems { errors, items }) =
            ProductInput::parse_batch(body.as_bytes(), 10)
        else {
            panic!("bad items must be refused");
        };
        assert_eq!(items, [1, 2, 3]);
        let names: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(names, ["1.brand", "2.brand", "2.price", "3"], "{errors:?}");
    }

    #[test]
    fn a_batch_body_must_be_an_array_within_the_limit() {
        assert_eq!(
            ProductInput::parse_batch(br#"{"brand":"A"}"#, 10).err(),
            Some(InputError::NotAnArray)
        );
        assert_eq!(
            ProductInput::parse_batch(b"[1,2,3]", 2).err(),
            Some(InputError::TooManyItems { limit: 2, got: 3 })
        );
        assert!(matches!(
            ProductInput::parse_batch(b"[{", 2),
            Err(InputError::MalformedJson(_))
        ));
    }
}
