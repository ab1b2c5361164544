-- zipf: Zipf-distributed keys over :keys with exponent 1.1 (as loadtest --zipf-s 1.1).
\set k random_zipfian(1, :keys, 1.1)
