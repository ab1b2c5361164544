-- mixed: uniform keys over :keys.
\set k random(0, :keys - 1)
