// @generated automatically by Diesel CLI.

diesel::table! {
    products (id) {
        id -> Int8,
        brand -> Text,
        serial -> Text,
        manufacturer -> Text,
        name -> Text,
        description -> Text,
        price -> Numeric,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}
