-- Reference only: the same upsert as one INSERT ... ON CONFLICT, which needs the unique constraint
-- that products deliberately lacks (run against products_unique, created by bench/run.sh).
\set k random(1, 1099511627776)
INSERT INTO products_unique (brand, serial, manufacturer, name, price)
    VALUES ('pgb' || :run, :k::text, 'M', 'load ' || :k, 9.99)
    ON CONFLICT (brand, serial, manufacturer) DO UPDATE
    SET name = excluded.name, price = excluded.price,
        version = products_unique.version + 1, updated_at = now()
    RETURNING id, brand, serial, manufacturer, name, description, price, version, created_at, updated_at;
