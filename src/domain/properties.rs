//! Property tests of the request parser (proptest): whatever a client sends, the parser returns
//! a valid input or field errors, and never panics; a price round-trips exactly.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

use crate::domain::input::{BodyFormat, FIELDS, InputError, MAX_KEY_CHARS, READ_ONLY_FIELDS};
use crate::domain::key::{canonical_key_field, refused_in_key};
use crate::domain::price::Price;
use crate::domain::product::{ProductInput, ProductPatch};

/// Member names: mostly the real ones, so that values reach every check.
fn member_name() -> impl Strategy<Value = String> {
    let known: Vec<String> = FIELDS
        .iter()
        .chain(READ_ONLY_FIELDS.iter())
        .map(|name| (*name).to_owned())
        .collect();
    prop_oneof![
        4 => proptest::sample::select(known),
        1 => ".{0,8}",
    ]
}

/// Strings of every kind: empty, blank, control and format characters, long, decimal-looking.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,20}",
        "[ \t\n]{0,3}[a-zA-Z0-9 ]{0,10}[ \t\n]{0,3}",
        "[0-9]{1,12}(\\.[0-9]{0,4})?",
        "-?[0-9]{0,3}[.e]?[0-9]{0,3}",
        "\\PC{250,260}",
        "[a\u{0}\u{7}\u{85}\u{200b}\u{feff}\u{202e}\u{301}]{1,4}",
    ]
}

/// Any JSON value, nested up to three levels, objects mostly with product member names.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((member_name(), inner), 0..8)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// What every accepted key field satisfies.
fn assert_key_field(value: &str) -> Result<(), TestCaseError> {
    prop_assert!(!value.is_empty(), "a key field is never empty");
    prop_assert_eq!(value, value.trim(), "key fields are trimmed");
    // 255 characters as sent at most; NFC expands text at most threefold (UAX #15, section 14).
    prop_assert!(value.chars().count() as u64 <= 3 * MAX_KEY_CHARS);
    prop_assert_eq!(
        value,
        canonical_key_field(value),
        "key fields are canonical"
    );
    prop_assert!(!value.chars().any(refused_in_key));
    Ok(())
}

/// An error is either about the body as a whole, or names fields, each with a message.
fn assert_error(error: &InputError, body: &Value) -> Result<(), TestCaseError> {
    match error {
        InputError::Invalid(errors) => {
            prop_assert!(!errors.is_empty());
            for (field, messages) in errors {
                prop_assert!(!messages.is_empty(), "{field} without a message");
            }
        }
        InputError::NotAnObject => prop_assert!(!body.is_object()),
        InputError::MalformedJson(_) | InputError::MalformedForm(_) => {
            prop_assert!(false, "serialised JSON read as malformed: {error}")
        }
        InputError::NotAnArray
        | InputError::TooManyItems { .. }
        | InputError::InvalidItems { .. } => {
            prop_assert!(false, "a single body answered with a batch error: {error}")
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_json_value_is_a_valid_input_or_field_errors(body in json_value()) {
        let bytes = serde_json::to_vec(&body).expect("serialisable");
        match ProductInput::parse(&bytes, BodyFormat::Json) {
            Ok(input) => {
                assert_key_field(&input.key.brand)?;
                assert_key_field(&input.key.serial)?;
                assert_key_field(&input.key.manufacturer)?;
                prop_assert!(!input.name.trim().is_empty());
            }
            Err(error) => assert_error(&error, &body)?,
        }
        match ProductPatch::parse(&bytes, BodyFormat::Json) {
            Ok(patch) => {
                for field in [&patch.brand, &patch.serial, &patch.manufacturer].into_iter().flatten() {
                    assert_key_field(field)?;
                }
            }
            Err(error) => assert_error(&error, &body)?,
        }
    }

    #[test]
    fn any_bytes_as_json_or_as_a_form_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        for format in [BodyFormat::Json, BodyFormat::Form] {
            let _ = ProductInput::parse(&bytes, format);
            let _ = ProductPatch::parse(&bytes, format);
        }
    }

    #[test]
    fn a_price_round_trips_exactly_as_a_string_and_as_a_number(cents in 0u64..1_000_000_000_000) {
        let text = format!("{}.{:02}", cents / 100, cents % 100);
        let price = Price::parse(&text).expect("a valid price");
        prop_assert_eq!(price.to_string(), text.clone());
        prop_assert_eq!(serde_json::to_value(&price).expect("serialises"), Value::String(text.clone()));
        // As a JSON number, read through the parser (serde_json keeps the literal's digits).
        let body = format!(r#"{{"brand":"B","serial":"S","manufacturer":"M","name":"N","price":{text}}}"#);
        let input = ProductInput::parse(body.as_bytes(), BodyFormat::Json).expect("valid body");
        prop_assert_eq!(input.price.map(|p| p.to_string()), Some(text));
    }

    #[test]
    fn a_price_written_with_any_exponent_and_padding_is_read_exactly(
        cents in 0u64..1_000_000_000_000,
        leading in 0usize..80,
        trailing in 0usize..80,
    ) {
        // cents x 10^-2, written as 0...0<cents>0...0 e<exponent>.
        let text = format!("{}{cents}{}e{}", "0".repeat(leading), "0".repeat(trailing), -2 - trailing as i64);
        let expected = format!("{}.{:02}", cents / 100, cents % 100);
        prop_assert_eq!(Price::parse_json_number(&text).map(|p| p.to_string()), Ok(expected));
    }
}
