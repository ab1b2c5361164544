DROP TRIGGER products_key_changed ON products;
DROP FUNCTION product_key_changed();
DROP TABLE product_key_changes;
