-- Keys that an UPDATE moved a product onto, for the incremental duplicate scan (README,
-- "Duplicates made elsewhere"). Inserts need no such record: the scan finds them by id, above the
-- highest id it has already checked. An UPDATE that changes brand, serial or manufacturer keeps
-- its id, so this trigger writes down the new key, whoever runs the UPDATE (the service, dedupe,
-- or another program that skips the lock: the writer that can make a duplicate). The scan reads
-- the records above the highest one it has checked, and deletes the ones older than a day or
-- DUPLICATE_FULL_SCAN_INTERVAL_SECS.
--
-- Its cost falls on key-changing updates alone: the trigger is `UPDATE OF` the key columns with
-- a WHEN that compares them, so an update of other columns (every upsert) does not call it. An
-- index on updated_at would have served too, at a price on every update: updated_at changes with
-- each one, so none could stay a HOT update (every index written again), and another program
-- need not set updated_at at all.
CREATE TABLE product_key_changes (
    id           bigserial PRIMARY KEY,
    brand        text NOT NULL,
    serial       text NOT NULL,
    manufacturer text NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT now()
);

-- SECURITY DEFINER: a program allowed to update products need not be allowed to write this table.
-- Its search_path is fixed below to this schema (where both tables are), so no caller's
-- search_path decides which table it writes.
CREATE FUNCTION product_key_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    INSERT INTO product_key_changes (brand, serial, manufacturer)
    VALUES (NEW.brand, NEW.serial, NEW.manufacturer);
    RETURN NULL;
END
$$;
DO $$
BEGIN
    EXECUTE pg_catalog.format(
        'ALTER FUNCTION product_key_changed() SET search_path = pg_catalog, %I, pg_temp',
        pg_catalog.current_schema());
END
$$;

CREATE TRIGGER products_key_changed
AFTER UPDATE OF brand, serial, manufacturer ON products
FOR EACH ROW
WHEN (OLD.brand IS DISTINCT FROM NEW.brand
      OR OLD.serial IS DISTINCT FROM NEW.serial
      OR OLD.manufacturer IS DISTINCT FROM NEW.manufacturer)
EXECUTE FUNCTION product_key_changed();
