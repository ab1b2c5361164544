-- What product-service runs for GET /products?brand=&serial=&manufacturer= (one page of 50).
\set k random(0, :keys - 1)
SELECT id, brand, serial, manufacturer, name, description, price, version, created_at, updated_at
    FROM products WHERE brand = 'pgb' || :run AND serial = :k::text AND manufacturer = 'M'
    ORDER BY id LIMIT 51;
