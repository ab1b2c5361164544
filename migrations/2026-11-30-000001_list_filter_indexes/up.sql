-- Indexes for GET /products: every combination of the filters brand, serial and manufacturer
-- (equality each), with `after` (id > $n) and ORDER BY id LIMIT $n, is an index lookup, so that
-- no read grows with the table (issue 11). For each combination, an index begins with exactly
-- its equality columns:
--
--   filters                        index                                      page order
--   brand, serial[, manufacturer]  products_natural_key_idx (first migration)  sorts the key's rows
--   serial[, manufacturer]         products_serial_manufacturer_idx            sorts the serial's rows
--   brand                          products_brand_id_idx                       index order
--   manufacturer                   products_manufacturer_id_idx                index order
--   brand, manufacturer            products_manufacturer_brand_id_idx          index order
--   none                           products_pkey                               index order
--
-- A serial names few rows (one per brand that uses it) and a key one row, so those pages sort a
-- handful of rows. A brand or a manufacturer can have any number of rows: their indexes end in
-- id, so a page is a range of the index read in order, LIMIT rows and no more, whatever the
-- size of the group (without it, every page would read and sort the whole group).
--
-- Their text columns are in the "C" collation, and the list's statements compare in it unless
-- they name brand and serial (store::products::list_sql): an index serves only a comparison in
-- its own collation, so these indexes serve the list and nothing else. Without that, a key
-- lookup (the upsert's: brand, serial and manufacturer equal) could be planned on one of them:
-- a manufacturer or brand that appeared since the last ANALYZE looks rare to the planner, the
-- (manufacturer, brand, id) index then looks as good as the key index, and each upsert reads
-- every row of that brand (measured: 4.5 ms of server CPU per upsert instead of 0.3 ms, after
-- 12,000 rows of one new brand and manufacturer). Equality is byte equality in every
-- deterministic collation, so the list finds the same rows; "C" also compares fastest.
--
-- The key index stays as it is: a key has one row (a few, if duplicated elsewhere), so an id
-- column would make it larger and no read faster, and rebuilding it would block writes.
--
-- Each CREATE INDEX blocks writes to products while it builds (about 3 s per index at 2,000,000
-- rows on the benchmark machine). On a large table, create them beforehand without blocking,
-- one at a time, with the same definitions and CREATE INDEX CONCURRENTLY IF NOT EXISTS (see
-- README, "Indexes of the list"); this migration then finds them and skips them. A CONCURRENTLY
-- build that fails leaves an INVALID index of that name, which IF NOT EXISTS would keep: the
-- check below refuses to go on until it is dropped.
DO $$
DECLARE
    invalid text;
BEGIN
    SELECT string_agg(c.relname, ', ') INTO invalid
    FROM pg_catalog.pg_index AS i
    JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
    WHERE c.relnamespace = pg_catalog.to_regnamespace(pg_catalog.current_schema())
      AND c.relname IN ('products_serial_manufacturer_idx', 'products_brand_id_idx',
                        'products_manufacturer_id_idx', 'products_manufacturer_brand_id_idx')
      AND NOT i.indisvalid;
    IF invalid IS NOT NULL THEN
        RAISE EXCEPTION 'invalid index(es) % (a failed CREATE INDEX CONCURRENTLY): drop them and run again', invalid;
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS products_serial_manufacturer_idx
    ON products (serial COLLATE "C", manufacturer COLLATE "C");
CREATE INDEX IF NOT EXISTS products_brand_id_idx ON products (brand COLLATE "C", id);
CREATE INDEX IF NOT EXISTS products_manufacturer_id_idx ON products (manufacturer COLLATE "C", id);
CREATE INDEX IF NOT EXISTS products_manufacturer_brand_id_idx
    ON products (manufacturer COLLATE "C", brand COLLATE "C", id);
