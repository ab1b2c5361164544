-- distinct: a new key per transaction (a 2^40 key space: repeats are negligible).
\set k random(1, 1099511627776)
