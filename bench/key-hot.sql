-- hot: one key for every transaction.
\set k 0
