//! Keys that look alike are one key: key fields are trimmed and put in Unicode NFC, in bodies and
//! in filters alike, and invisible format characters (general category Cf) in them are a 400.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{json, product, spawn_app};

/// "Café" precomposed (U+00E9) and decomposed (e + U+0301 COMBINING ACUTE ACCENT).
const NFC: &str = "Caf\u{e9}";
const NFD: &str = "Cafe\u{301}";

#[tokio::test]
async fn a_key_sent_decomposed_updates_the_product_created_precomposed() {
    let app = spawn_app().await;

    let created = app.post_product(&product(NFC, "S-1", "M")).await;
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    let mut again = product(NFD, "S-1", "M");
    again["name"] = json!("Again");
    let again = app.post_product(&again).await;

    assert_eq!(again.status(), 200, "the NFD spelling is the same key");
    let again = json(again).await;
    assert_eq!(again["id"], created["id"]);
    assert_eq!(again["brand"], NFC, "the key is stored in NFC");
    assert_eq!(again["name"], "Again");
    assert_eq!(app.count_products("true").await, 1);
}

#[tokio::test]
async fn a_key_created_decomposed_is_stored_precomposed() {
    let app = spawn_app().await;

    let created = app.post_product(&product(NFD, " S-1 ", "M")).await;

    assert_eq!(created.status(), 201);
    assert_eq!(json(created).await["brand"], NFC);
    assert_eq!(
        app.count_products(&format!("brand = '{NFC}' AND serial = 'S-1'"))
            .await,
        1
    );
}

/// Zero width space, byte order mark (zero width no-break space), right-to-left override.
const INVISIBLE: [(char, &str); 3] = [
    ('\u{200b}', "U+200B"),
    ('\u{feff}', "U+FEFF"),
    ('\u{202e}', "U+202E"),
];

#[tokio::test]
async fn an_invisible_format_character_in_a_key_field_is_a_400_naming_field_and_code_point() {
    let app = spawn_app().await;
    let existing = json(app.post_product(&product("B", "S", "M")).await).await;
    let path = format!("/products/{}", existing["id"]);

    for field in ["brand", "serial", "manufacturer"] {
        for (c, code) in INVISIBLE {
            for (method, at) in [
                (Method::POST, "/products"),
                (Method::PUT, path.as_str()),
                (Method::PATCH, path.as_str()),
            ] {
                let case = format!("{method} {field} with {code}");
                let mut body = if method == Method::PATCH {
                    json!({})
                } else {
                    product("B", "S", "M")
                };
                // Inside, at the start and at the end: none of them is whitespace to trim.
                body[field] = json!(format!("{c}S{c}N{c}"));

                let response = app
                    .send_raw(method, at, "application/json", body.to_string())
                    .await;

                assert_eq!(response.status(), 400, "{case}");
                let problem = json(response).await;
                assert_eq!(
                    problem["errors"][field],
                    json!([format!(
                        "must not contain invisible format characters ({code})"
                    )]),
                    "{case}: {problem}"
                );
            }
        }
    }
    assert_eq!(app.count_products("true").await, 1, "nothing was written");
    assert_eq!(json(app.get(&path).await).await, existing, "nor changed");
}

#[tokio::test]
async fn a_name_may_hold_invisible_format_characters_as_display_text_does() {
    let app = spawn_app().await;
    let mut body = product("B", "S", "M");
    // A family emoji: three emoji joined by ZERO WIDTH JOINERs.
    body["name"] = json!("\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}");

    let response = app.post_product(&body).await;

    assert_eq!(response.status(), 201);
    assert_eq!(json(response).await["name"], body["name"]);
}

#[tokio::test]
async fn the_length_limit_counts_the_characters_as_sent_once_trimmed() {
    let app = spawn_app().await;
    let named = |brand: &str| {
        let mut body = product(brand, "S", "M");
        body["name"] = json!("N");
        body
    };
    // 127 characters in NFC, 254 as sent: within the limit.
    let decomposed = "e\u{301}".repeat(127);
    let response = app.post_product(&named(&decomposed)).await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        json(response).await["brand"],
        Value::String("\u{e9}".repeat(127)),
        "stored in NFC"
    );

    // 128 characters in NFC, 256 as sent: over it, as the document's pattern says.
    let over = app.post_product(&named(&"e\u{301}".repeat(128))).await;
    assert_eq!(over.status(), 400);
    assert!(json(over).await["errors"]["brand"].is_array());

    // 255 as sent that NFC expands (U+0958 is two characters in NFC): accepted as sent.
    let expanding = app.post_product(&named(&"\u{958}".repeat(255))).await;
    assert_eq!(expanding.status(), 201);
}

#[tokio::test]
async fn list_filters_are_normalised_as_keys_are_and_refuse_invisible_characters() {
    let app = spawn_app().await;
    let created = json(app.post_product(&product(NFC, "S", "M")).await).await;
    let other = app.post_product(&product("Cafe", "S", "M")).await;
    assert_eq!(other.status(), 201);

    // "Cafe" + U+0301, percent-encoded as UTF-8; padded with a space.
    let found = json(app.get("/products?brand=Cafe%CC%81%20").await).await;
    assert_eq!(
        found["items"],
        json!([created]),
        "an NFD filter finds the NFC row"
    );

    for (parameter, query) in [
        ("brand", "brand=Caf%C3%A9%E2%80%8B"),
        ("serial", "serial=%EF%BB%BFS"),
        ("manufacturer", "manufacturer=M%E2%80%AE"),
    ] {
        let response = app.get(&format!("/products?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let problem = json(response).await;
        assert!(
            problem["errors"][parameter][0]
                .as_str()
                .is_some_and(|m| m.starts_with("must not contain invisible format characters")),
            "{query}: {problem}"
        );
    }
}

#[tokio::test]
async fn a_key_change_of_a_row_written_decomposed_stores_the_whole_key_precomposed() {
    let app = spawn_app().await;
    // Written before keys were normalised, bypassing the service.
    app.sql(
        "INSERT INTO products (id, brand, serial, manufacturer, name) \
         VALUES (1, U&'Cafe\\0301', 'S', 'M', 'n')",
    )
    .await;

    let renamed = app
        .send_raw(
            Method::PATCH,
            "/products/1",
            "application/json",
            json!({"name": "renamed"}).to_string(),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    assert_eq!(
        json(renamed).await["brand"],
        NFD,
        "a patch that names no key field leaves the stored key as it is"
    );

    let moved = app
        .send_raw(
            Method::PATCH,
            "/products/1",
            "application/json",
            json!({"serial": "T"}).to_string(),
        )
        .await;
    assert_eq!(moved.status(), 200);
    assert_eq!(
        json(moved).await["brand"],
        NFC,
        "a key change writes the canonical key"
    );
    let again = app.post_product(&product(NFD, "T", "M")).await;
    assert_eq!(again.status(), 200);
    assert_eq!(app.count_products("true").await, 1);
}
