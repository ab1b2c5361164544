-- What product-service runs for one POST /products, for pgbench (keep in step with src/store.rs).
-- Variables: :k (the key's serial, set by the scenario's key script), :run (names this run's keys).
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT set_config('lock_timeout', '5000', true), set_config('statement_timeout', '10000', true);
SELECT pg_advisory_xact_lock(product_lock_key('pgb' || :run, :k::text, 'M'));
SELECT coalesce((SELECT id FROM products
                 WHERE brand = 'pgb' || :run AND serial = :k::text AND manufacturer = 'M'
                 ORDER BY id LIMIT 1 FOR UPDATE), 0) AS found \gset
\if :found
UPDATE products SET name = 'load ' || :k, price = 9.99, version = version + 1, updated_at = now()
    WHERE id = :found
    RETURNING id, brand, serial, manufacturer, name, description, price, version, created_at, updated_at;
\else
INSERT INTO products (brand, serial, manufacturer, name, price)
    VALUES ('pgb' || :run, :k::text, 'M', 'load ' || :k, 9.99)
    RETURNING id, brand, serial, manufacturer, name, description, price, version, created_at, updated_at;
\endif
COMMIT;
