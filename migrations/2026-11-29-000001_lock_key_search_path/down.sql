ALTER FUNCTION product_lock_key(text, text, text) RESET search_path;
