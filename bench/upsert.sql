-- What product-service runs for one POST /products with GROUP_COMMIT=false, for pgbench (keep in
-- step with src/store/locks.rs and src/store/upsert.rs): BEGIN; then, pipelined, the bounds, the
-- lock and the one-statement write; then COMMIT.
-- Variables: :k (the key's serial, set by the scenario's key script), :run (names this run's keys).
BEGIN ISOLATION LEVEL READ COMMITTED;
\startpipeline
SELECT pg_catalog.set_config('lock_timeout', '5000', true),
    pg_catalog.set_config('statement_timeout', '10000', true);
SELECT pg_catalog.pg_advisory_xact_lock(product_lock_key('pgb' || :run, :k::text, 'M'));
WITH found AS (
    SELECT id FROM products
    WHERE brand = 'pgb' || :run AND serial = :k::text AND manufacturer = 'M'
    ORDER BY id
    FOR UPDATE
), oldest AS (
    SELECT min(id) AS id, count(*) AS copies FROM found
), updated AS (
    UPDATE products AS p
    SET name = 'load ' || :k, description = coalesce(NULL, p.description),
        price = coalesce(9.99, p.price), version = p.version + 1, updated_at = now()
    FROM oldest WHERE p.id = oldest.id
    RETURNING p.*
), inserted AS (
    INSERT INTO products (brand, serial, manufacturer, name, description, price)
    SELECT 'pgb' || :run, :k::text, 'M', 'load ' || :k, coalesce(NULL, ''), coalesce(9.99, 0)
    WHERE NOT EXISTS (SELECT 1 FROM found)
    RETURNING *
)
SELECT updated.*, false AS created, oldest.copies FROM updated, oldest
UNION ALL
SELECT inserted.*, true AS created, 0::bigint AS copies FROM inserted;
\endpipeline
COMMIT;
