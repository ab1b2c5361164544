-- Products, keyed in practice by (brand, serial, manufacturer).
-- There is deliberately NO unique constraint on the natural key: the service keeps it unique with
-- transaction-level advisory locks (see README, "How the lock works"), and rows duplicated before
-- the service existed must still load.
CREATE TABLE products (
    id           bigserial PRIMARY KEY,
    brand        text NOT NULL,
    serial       text NOT NULL,
    manufacturer text NOT NULL,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    price        numeric(12, 2) NOT NULL DEFAULT 0,
    version      bigint NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Non-unique on purpose; serves the upsert's lookup and the exact-match filters.
CREATE INDEX products_natural_key_idx ON products (brand, serial, manufacturer);

-- The advisory-lock key of a product: the one formula every writer, in any language, must use.
-- Each of brand and serial is prefixed by its length in characters, so ('ab','c','x') and
-- ('a','bc','x') encode differently ('2:ab1:cx' and '1:a2:bcx').
CREATE FUNCTION product_lock_key(brand text, serial text, manufacturer text)
RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT hashtextextended(
        length(brand) || ':' || brand || length(serial) || ':' || serial || manufacturer, 0)
$$;
