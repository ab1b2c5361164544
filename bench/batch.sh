#!/usr/bin/env bash
# Batch upserts against single upserts, in one run on one private PostgreSQL (bench/lib.sh:
# default settings, fsync on): `loadtest --scenario distinct` (one new key per POST /products)
# and `loadtest --scenario batch` (POST /products/batch, BATCH_SIZE new keys per request, a tenth
# shared with the neighbouring batches, every other batch reversed), interleaved over ROUNDS
# rounds so that the machine's drift hits both; every run with --verify. Prints items/s of each.
#
# usage: bench/batch.sh   (env: REQUESTS=20000 CONCURRENCY=64 BATCH_ITEMS=100000 BATCH_SIZE=100
#                          BATCH_CONCURRENCY=16 ROUNDS=3, and bench/lib.sh's GROUP_COMMIT, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-20000}
CONCURRENCY=${CONCURRENCY:-64}
BATCH_ITEMS=${BATCH_ITEMS:-100000}
BATCH_SIZE=${BATCH_SIZE:-100}
BATCH_CONCURRENCY=${BATCH_CONCURRENCY:-16}
ROUNDS=${ROUNDS:-3}
RUN=$(date +%s)

# shellcheck source=bench/lib.sh
. bench/lib.sh

results="$work/results"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round: distinct" >&2
    echo "distinct|$(target/release/loadtest --url "$url" --scenario distinct \
        --requests "$REQUESTS" --concurrency "$CONCURRENCY" --seed $((RUN + round)) --json --verify)" \
        >>"$results"
    echo "== round $round: batch of $BATCH_SIZE" >&2
    echo "batch|$(target/release/loadtest --url "$url" --scenario batch --requests "$BATCH_ITEMS" \
        --batch-size "$BATCH_SIZE" --concurrency "$BATCH_CONCURRENCY" --seed $((RUN + round)) \
        --json --verify)" >>"$results"
done

python3 - "$results" "$CONCURRENCY" "$BATCH_SIZE" "$BATCH_CONCURRENCY" <<'PY'
import json, statistics, sys
results, concurrency, size, batch_concurrency = sys.argv[1:5]
rows = [line.rstrip("\n").split("|", 1) for line in open(results)]
print(f"\ndistinct: 1 item per request, {concurrency} clients; "
      f"batch: {size} items per request, {batch_concurrency} clients\n")
head = f"{'scenario':<10}{'requests':>10}{'req/s':>10}{'items/s':>10}{'p50 ms':>9}{'p99 ms':>9}  verify"
print(head)
print("-" * len(head))
rates, failed = {}, False
for scenario, report in rows:
    r = json.loads(report)
    items_per_s = r.get("items_per_second", r["requests_per_second"])
    rates.setdefault(scenario, []).append(items_per_s)
    v = r.get("verify") or {}
    failed |= not v.get("passed", False)
    verdict = "ok" if v.get("passed") else f"FAILED ({v.get('duplicated_keys')} dup, {v.get('server_errors')} 5xx)"
    print(f"{scenario:<10}{r['requests']:>10}{r['requests_per_second']:>10.0f}{items_per_s:>10.0f}"
          f"{r['latency_ms']['p50']:>9.2f}{r['latency_ms']['p99']:>9.2f}  {verdict}")
if rates.get("distinct") and rates.get("batch"):
    d, b = statistics.median(rates["distinct"]), statistics.median(rates["batch"])
    print(f"\nmedian items/s: distinct {d:.0f}, batch {b:.0f} ({b / d:.1f}x)")
sys.exit(1 if failed else 0)
PY
