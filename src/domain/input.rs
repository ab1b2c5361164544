//! Reading product bodies: presence, `null`, JSON types and unknown fields first, then lengths
//! and characters with `validator`. Every problem of a body is reported, by field name.

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Value};
use validator::{Validate, ValidationError, ValidationErrors, ValidationErrorsKind};

pub use crate::domain::key::MAX_KEY_BYTES;
use crate::domain::key::{canonical_key_field, format_character, format_character_message};
use crate::domain::price::Price;

/// Validation messages by field name, in a stable order.
pub type FieldErrors = std::collections::BTreeMap<String, Vec<String>>;

/// Why a request's input was refused (the HTTP layer answers 400 with a problem+json body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The body is not JSON at all.
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body was declared a form but is not `application/x-www-form-urlencoded` text.
    #[error("request body is not a valid form: {0}")]
    MalformedForm(String),
    /// The body is JSON, but not an object.
    #[error("request body must be a JSON object")]
    NotAnObject,
    /// Some fields (or query parameters) are missing or invalid: messages by name.
    #[error("invalid input")]
    Invalid(FieldErrors),
    /// The body of a batch is JSON, but not an array.
    #[error("request body must be a JSON array of products")]
    NotAnArray,
    /// A batch has more items than its limit allows.
    #[error("a batch holds at most {limit} items (BATCH_MAX_ITEMS); this one has {got}")]
    TooManyItems {
        /// The limit (`BATCH_MAX_ITEMS`).
        limit: usize,
        /// How many items the body had.
        got: usize,
    },
    /// Some items of a batch are invalid: messages by `<index>.<field>` (or `<index>` alone for
    /// an item that is not an object), and the indexes of the bad items, ascending.
    #[error("invalid items in the batch")]
    InvalidItems {
        /// Messages by `<index>.<field>`, or by `<index>` for an item that is not an object.
        errors: FieldErrors,
        /// Every invalid item's index (0-based), ascending.
        items: Vec<usize>,
    },
}

impl InputError {
    /// A validation error on one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid(FieldErrors::from([(
            field.to_owned(),
            vec![message.into()],
        )]))
    }
}

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
/// Members of a product's representation that a body may carry back and that are ignored, as
/// Django REST framework ignores read-only fields: what a GET returned can be sent as it is.
pub const READ_ONLY_FIELDS: [&str; 4] = ["id", "version", "created_at", "updated_at"];

/// The read-only member that PUT and PATCH take as a precondition (the product's version when
/// the client read it, as the `If-Match` header would say).
pub const VERSION_FIELD: &str = "version";

/// The fields POST and PUT require.
pub const REQUIRED_FIELDS: [&str; 4] = ["brand", "serial", "manufacturer", "name"];

/// The typed body, checked by `validator` after the JSON-level checks. Key fields are already in
/// their canonical form ([`canonical_key_field`]) here; their length was checked as sent
/// (trimmed), by [`key_field_length`], since that is what a JSON Schema `pattern` can say.
#[derive(Debug, Validate)]
pub(crate) struct ProductFields {
    #[validate(
        custom(function = "single_line_text"),
        custom(function = "no_format_characters")
    )]
    pub(crate) brand: Option<String>,
    #[validate(
        custom(function = "single_line_text"),
        custom(function = "no_format_characters")
    )]
    pub(crate) serial: Option<String>,
    #[validate(
        custom(function = "single_line_text"),
        custom(function = "no_format_characters")
    )]
    pub(crate) manufacturer: Option<String>,
    #[validate(
        custom(function = "single_line_text"),
        length(max = MAX_KEY_CHARS, message = "must be at most 255 characters")
    )]
    pub(crate) name: Option<String>,
    #[validate(
        length(max = MAX_DESCRIPTION_CHARS, message = "must be at most 10000 characters"),
        custom(function = "no_nul")
    )]
    pub(crate) description: Option<String>,
    pub(crate) price: Option<Price>,
    /// The `version` member: PUT and PATCH take it as a precondition, POST ignores it.
    pub(crate) version: Option<i64>,
}

/// A key field or filter's length: at most [`MAX_KEY_CHARS`] characters as sent, once trimmed
/// (its canonical form may differ by the few characters NFC composes or, rarely, expands).
pub(crate) fn key_field_length(raw: &str) -> Result<(), &'static str> {
    if raw.trim().chars().count() as u64 > MAX_KEY_CHARS {
        Err("must be at most 255 characters")
    } else {
        Ok(())
    }
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

/// Key fields: no invisible format characters (general category Cf: zero-width spaces and
/// joiners, BOM, bidi controls), which make keys that look alike differ. The message names the
/// first one's code point. `name` may hold them (it is display text, where a zero-width joiner
/// can be part of an emoji or a word, and it is not compared).
fn no_format_characters(value: &str) -> Result<(), ValidationError> {
    match format_character(value) {
        Some(c) => Err(ValidationError::new("format_character")
            .with_message(format_character_message(c).into())),
        None => Ok(()),
    }
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
pub(crate) enum Presence {
    /// POST and PUT: the key fields and name are required.
    Full,
    /// PATCH: every field is optional.
    Partial,
}

/// How a request body is encoded (its `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json` (or `+json`): a JSON object (RFC 8259).
    Json,
    /// `application/x-www-form-urlencoded` (the WHATWG URL standard): every value a string.
    /// A body so declared that is a JSON object (what `curl -d '{...}'` sends) is read as JSON.
    Form,
}

/// Why a form field or query parameter was refused for its encoding.
pub(crate) const NOT_UTF8: &str = "is not UTF-8 text once percent-decoded";

/// The name-value pairs of `application/x-www-form-urlencoded` text (a form body or a query
/// string): split at `&` and `=`, `+` read as a space, percent-decoded (WHATWG URL standard,
/// section 5.1). A value that is not UTF-8 once decoded is `None`, where a lenient parser (the
/// `form_urlencoded` crate) would put U+FFFD in its place, silently changing what is stored;
/// a name is decoded leniently, as it is only compared or reported.
pub(crate) fn form_pairs(text: &[u8]) -> Vec<(String, Option<String>)> {
    let decode = |raw: &[u8]| -> Option<String> {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&spaced)
            .decode_utf8()
            .ok()
            .map(std::borrow::Cow::into_owned)
    };
    text.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            let lenient = || String::from_utf8_lossy(name).into_owned();
            match decode(name) {
                Some(name) => (name, decode(value)),
                None => (lenient(), None),
            }
        })
        .collect()
}

/// A JSON object's members, read in one pass, and the names that appeared more than once.
struct Members {
    object: Map<String, Value>,
    repeated: Vec<String>,
}

impl Members {
    fn new() -> Self {
        Self {
            object: Map::new(),
            repeated: Vec::new(),
        }
    }

    fn insert(&mut self, name: String, value: Value) {
        if self.object.contains_key(&name) && !self.repeated.contains(&name) {
            self.repeated.push(name.clone());
        }
        self.object.insert(name, value);
    }

    /// Reads a JSON object.
    fn from_json(body: &[u8]) -> Result<Self, InputError> {
        serde_json::from_slice(body).map_err(|e| {
            // Only on the error path: is it JSON at all?
            // (a `Value`, not `IgnoredAny`, so that a lone surrogate or invalid UTF-8 inside a
            // string is malformed JSON too).
            match serde_json::from_slice::<Value>(body) {
                Ok(_) => InputError::NotAnObject,
                Err(_) => InputError::MalformedJson(e.to_string()),
            }
        })
    }

    /// Reads a form: each value a JSON string.
    fn from_form(body: &[u8]) -> Result<Self, InputError> {
        let mut members = Self::new();
        for (name, value) in form_pairs(body) {
            let value =
                value.ok_or_else(|| InputError::MalformedForm(format!("{name:?}: {NOT_UTF8}")))?;
            members.insert(name, Value::String(value));
        }
        Ok(members)
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut members = Members::new();
        while let Some(name) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            members.insert(name, value);
        }
        Ok(members)
    }
}

/// Reads the elements of a JSON array: the members of those that `objects` says are objects,
/// `None` for the others (skipped).
struct ItemsVisitor<'a> {
    objects: &'a [bool],
}

impl<'de> Visitor<'de> for ItemsVisitor<'_> {
    type Value = Vec<Option<Members>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(self.objects.len());
        loop {
            let object = self.objects.get(items.len()).copied().unwrap_or(false);
            match seq.next_element_seed(ItemSeed { object })? {
                Some(item) => items.push(item),
                None => return Ok(items),
            }
        }
    }
}

/// One element of a JSON array: an object read as [`Members`], or anything else skipped.
struct ItemSeed {
    object: bool,
}

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = Option<Members>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        if self.object {
            deserializer.deserialize_map(MembersVisitor).map(Some)
        } else {
            IgnoredAny::deserialize(deserializer).map(|_| None)
        }
    }
}

/// The key under which `serde_json` (with `arbitrary_precision`) hands a number to
/// `deserialize_any`, as a one-member map; `Value` tells numbers from objects by it.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// The top level of a batch body in one pass: the elements of an array; anything else is an
/// error (and the body is read again, the careful way).
struct ArrayVisitor;

impl<'de> Visitor<'de> for ArrayVisitor {
    type Value = Vec<Option<Members>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(AnyItemSeed)? {
            items.push(item);
        }
        Ok(items)
    }
}

/// One element of a batch array: an object read as [`Members`]; an array, string, boolean or
/// `null` read as a `Value` would read it, and dropped; a number is an error (the careful way
/// reads it).
struct AnyItemSeed;

impl<'de> DeserializeSeed<'de> for AnyItemSeed {
    type Value = Option<Members>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(AnyItemVisitor)
    }
}

struct AnyItemVisitor;

impl<'de> Visitor<'de> for AnyItemVisitor {
    type Value = Option<Members>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Members::new();
        while let Some(name) = map.next_key::<String>()? {
            if name == NUMBER_TOKEN && members.object.is_empty() {
                // A number, not an object: left to the careful way, which reads it as a
                // `Value` does (and an object with this very member name as a `Value` does).
                return Err(serde::de::Error::custom("a number"));
            }
            let value: Value = map.next_value()?;
            members.insert(name, value);
        }
        Ok(Some(members))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Value>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads typed fields out of a JSON object, collecting every problem by field name.
pub(crate) struct FieldReader {
    object: Map<String, Value>,
    errors: FieldErrors,
    presence: Presence,
    /// The `version` member, taken out with the other read-only members.
    version: Option<Value>,
    /// Whether the members came from a form, where every value is text.
    form: bool,
}

impl FieldReader {
    /// Parses `body`, a JSON object or a form, whose fields are read according to `presence`.
    /// A member that appears more than once is an error of that field (RFC 8259 leaves such
    /// objects' meaning open; taking the last value would silently drop the first). The
    /// [`READ_ONLY_FIELDS`] are dropped, whatever their values, but for `version`, which must be
    /// a positive integer when present (PUT and PATCH take it as a precondition).
    pub(crate) fn new(
        body: &[u8],
        format: BodyFormat,
        presence: Presence,
    ) -> Result<Self, InputError> {
        let json_in_form = || body.trim_ascii_start().first() == Some(&b'{');
        let form = format == BodyFormat::Form && !json_in_form();
        let members = match form {
            true => Members::from_form(body)?,
            false => Members::from_json(body)?,
        };
        let mut reader = Self::from_members(members, presence);
        reader.form = form;
        Ok(reader)
    }

    /// Reads the fields of an object's `members` according to `presence` (as [`Self::new`]).
    fn from_members(mut members: Members, presence: Presence) -> Self {
        let mut errors = FieldErrors::new();
        for name in members.repeated {
            errors.insert(name, vec!["appears more than once".to_owned()]);
        }
        let version = members.object.remove(VERSION_FIELD);
        for name in READ_ONLY_FIELDS
            .into_iter()
            .filter(|name| *name != VERSION_FIELD)
        {
            members.object.remove(name);
            errors.remove(name);
        }
        Self {
            object: members.object,
            errors,
            presence,
            version,
            form: false,
        }
    }

    /// Parses `body`, a JSON array of at most `max_items` elements, into a reader for each
    /// element that is an object (`None` for one that is not), in order. Each object is read
    /// exactly as [`Self::new`] reads a JSON body: repeated members are errors, read-only ones
    /// are dropped.
    ///
    /// # Errors
    /// [`InputError::MalformedJson`], [`InputError::NotAnArray`], or
    /// [`InputError::TooManyItems`] (counted before any element is checked).
    pub(crate) fn for_each_item(
        body: &[u8],
        max_items: usize,
        presence: Presence,
    ) -> Result<Vec<Option<Self>>, InputError> {
        // One pass over a well-formed array (the common case); anything else is read again the
        // careful way below, so that every error is the one it always was.
        let items = match Self::items_in_one_pass(body) {
            Some(items) => items,
            None => Self::items_in_two_passes(body)?,
        };
        if items.len() > max_items {
            return Err(InputError::TooManyItems {
                limit: max_items,
                got: items.len(),
            });
        }
        Ok(items
            .into_iter()
            .map(|members| members.map(|m| Self::from_members(m, presence)))
            .collect())
    }

    /// The elements of a well-formed JSON array, read once: objects as [`Members`], `None` for
    /// the others (each read as a `Value`, so that it is checked exactly as before). `None` when
    /// the body is not exactly that (malformed, or not an array).
    fn items_in_one_pass(body: &[u8]) -> Option<Vec<Option<Members>>> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let items = deserializer.deserialize_any(ArrayVisitor).ok()?;
        deserializer.end().ok()?;
        Some(items)
    }

    /// The elements of `body` read as they always were: first as plain JSON, to know its shape
    /// (a `Value` keeps only the last of repeated members), then the objects again, member by
    /// member.
    fn items_in_two_passes(body: &[u8]) -> Result<Vec<Option<Members>>, InputError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| InputError::MalformedJson(e.to_string()))?;
        let Value::Array(elements) = value else {
            return Err(InputError::NotAnArray);
        };
        let objects: Vec<bool> = elements.iter().map(Value::is_object).collect();
        drop(elements);
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        deserializer
            .deserialize_seq(ItemsVisitor { objects: &objects })
            .map_err(|e| InputError::MalformedJson(e.to_string()))
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

    /// A key field: a string, in its canonical form (trimmed of whitespace at both ends, then
    /// NFC: [`canonical_key_field`]).
    fn key_part(&mut self, field: &str) -> Option<String> {
        let raw = self.string(field, true)?;
        if let Err(message) = key_field_length(&raw) {
            self.error(field, message);
        }
        Some(canonical_key_field(&raw))
    }

    fn price(&mut self) -> Option<Price> {
        let parsed = match self.take("price", false)? {
            Value::String(s) => Price::parse(&s),
            Value::Number(n) => Price::parse_json_number(&n.to_string()),
            _ => {
                self.error("price", "must be a decimal string or a number");
                return None;
            }
        };
        match parsed {
            Ok(price) => Some(price),
            Err(message) => {
                self.error("price", message);
                None
            }
        }
    }

    /// The `version` member: a positive integer (a JSON number, or digits in a form).
    fn version(&mut self) -> Option<i64> {
        let value = self.version.take()?;
        let version = match &value {
            // A JSON Schema integer may be written 7.0.
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                    .map(|f| f as i64)
            }),
            // A form has only text; JSON has numbers for this.
            Value::String(s) if self.form => s.trim().parse::<i64>().ok(),
            _ => None,
        }
        .filter(|n| *n >= 1);
        if version.is_none() {
            self.error(
                VERSION_FIELD,
                "must be the product's version, a positive integer",
            );
        }
        version
    }

    /// Reads every field, then reports unknown ones and validates the rest.
    pub(crate) fn finish(mut self) -> Result<ProductFields, InputError> {
        let version = self.version();
        let fields = ProductFields {
            version,
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
                format!(
                    "unknown field; expected one of: {} (read-only: {})",
                    FIELDS.join(", "),
                    READ_ONLY_FIELDS.join(", ")
                ),
            );
        }
        if let Err(errors) = fields.validate() {
            merge_validation_errors(&mut self.errors, errors);
        }
        let key = [
            ("brand", &fields.brand),
            ("serial", &fields.serial),
            ("manufacturer", &fields.manufacturer),
        ];
        let bytes: usize = key
            .iter()
            .filter_map(|(_, v)| v.as_ref())
            .map(String::len)
            .sum();
        if bytes > MAX_KEY_BYTES {
            for (field, _) in key.iter().filter(|(_, v)| v.is_some()) {
                self.error(
                    field,
                    format!(
                        "brand, serial and manufacturer together must be at most {MAX_KEY_BYTES} \
                         bytes in UTF-8 (they have {bytes}): the key index's limit"
                    ),
                );
            }
        }
        if self.errors.is_empty() {
            Ok(fields)
        } else {
            Err(InputError::Invalid(self.errors))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What the one pass reads, as comparable values: each object's members and repeated names.
    type Read = Vec<Option<(Map<String, Value>, Vec<String>)>>;

    fn shown(items: Vec<Option<Members>>) -> Read {
        items
            .into_iter()
            .map(|item| item.map(|m| (m.object, m.repeated)))
            .collect()
    }

    #[test]
    fn one_pass_reads_a_batch_as_the_two_passes_do_or_leaves_it_to_them() {
        // (body, whether the one pass reads it: every well-formed array without a number
        // among its elements)
        let bodies = [
            (r#"[]"#, true),
            (r#"[{"brand":"A","serial":"1","price":1.50}]"#, true),
            (r#"[{"a":1,"a":2}, {"b":[1,{"c":null}]}]"#, true),
            (r#"[{}, [], "x", true, null, [1, "\ud83d\ude00"]]"#, true),
            (r#"[1, {"a":1}]"#, false),
            (r#"[{"$serde_json::private::Number":"5"}]"#, false),
            (r#"[{"a":"\ud800"}]"#, false),
            (r#"["\ud800"]"#, false),
            (r#"[{"a":1}] x"#, false),
            (r#"[{"a":1},]"#, false),
            (r#"{"a":1}"#, false),
            (r#"7"#, false),
            (r#""#, false),
        ];
        for (body, read_in_one_pass) in bodies {
            let careful = FieldReader::items_in_two_passes(body.as_bytes()).map(shown);
            let once = FieldReader::items_in_one_pass(body.as_bytes());
            assert_eq!(once.is_some(), read_in_one_pass, "{body}");
            if let Some(items) = once {
                assert_eq!(Ok(shown(items)), careful, "{body}");
            }
        }
    }
}
