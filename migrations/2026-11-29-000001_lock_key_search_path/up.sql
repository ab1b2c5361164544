-- The lock key resolves every name it uses (hashtextextended, length, ||) in pg_catalog only, so
-- that no search_path set on a database, a role or a session can put other functions in their
-- place. The formula, and so every key, is unchanged.
ALTER FUNCTION product_lock_key(text, text, text) SET search_path = pg_catalog, pg_temp;
