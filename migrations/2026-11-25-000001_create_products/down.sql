DROP FUNCTION product_lock_key(text, text, text);
DROP TABLE products;
