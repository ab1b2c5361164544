#!/usr/bin/env bash
# Soak: the mixed load (70 % upserts, 30 % filtered reads, over a uniform key space) for a long
# run, with the service's resident memory and error counts sampled every 10 s. Not part of CI
# (10 minutes).
#
# usage: bench/soak.sh            (env: SECONDS_TOTAL=600 CONCURRENCY=32 KEYS=100000)
# Passes (exit 0) when the resident memory after warm-up (the first minute) grows by less than
# 10 %, no request failed (4xx, 5xx or no answer) and no key has two rows.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL=${SECONDS_TOTAL:-600}
CONCURRENCY=${CONCURRENCY:-32}
KEYS=${KEYS:-100000}

# shellcheck source=bench/lib.sh
. bench/lib.sh

samples="$work/samples"
echo "== mixed load for ${SECONDS_TOTAL} s, $CONCURRENCY concurrent clients, $KEYS keys" >&2
target/release/loadtest --url "$url" --scenario mixed --duration "$SECONDS_TOTAL" \
    --concurrency "$CONCURRENCY" --keys "$KEYS" --seed "$(date +%s)" --json --verify \
    >"$work/report.json" &
load_pid=$!
started=$(date +%s)
while kill -0 "$load_pid" 2>/dev/null; do
    rss_kib=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$service_pid/status")
    failed=$(curl -s "$url/metrics" | awk '
        /^http_requests_total\{/ && $0 !~ /status="2[0-9][0-9]"/ { n += $NF }
        /^db_errors_total\{/ { n += $NF }
        END { print n + 0 }')
    echo "$(($(date +%s) - started)) $rss_kib $failed" >>"$samples"
    sleep 10
done
wait "$load_pid" || true

python3 - "$work/report.json" "$samples" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
samples = [tuple(int(x) for x in line.split()) for line in open(sys.argv[2]) if line.strip()]
print(f"{'s':>5} {'RSS MiB':>9} {'non-2xx + db errors':>20}")
for t, rss, failed in samples:
    print(f"{t:>5} {rss / 1024:>9.1f} {failed:>20}")
warm = [rss for t, rss, _ in samples if t >= 60] or [rss for _, rss, _ in samples]
growth = (warm[-1] - warm[0]) / warm[0] * 100
verify = report.get("verify") or {}
statuses = report["statuses"]
failed = sum(n for status, n in statuses.items() if not status.startswith("2"))
print(f"\n{report['requests']} requests in {report['seconds']:.0f} s, "
      f"{report['requests_per_second']:.0f} req/s, p50 {report['latency_ms']['p50']:.2f} ms, "
      f"p99 {report['latency_ms']['p99']:.2f} ms; statuses {statuses}")
print(f"RSS after warm-up: {warm[0] / 1024:.1f} MiB -> {warm[-1] / 1024:.1f} MiB ({growth:+.1f} %); "
      f"peak {max(r for _, r, _ in samples) / 1024:.1f} MiB")
print(f"failed requests: {failed}; non-2xx and database errors at the end: {samples[-1][2]}; "
      f"keys checked {verify.get('keys_checked')}, duplicated {verify.get('duplicated_keys')}")
ok = growth < 10 and failed == 0 and samples[-1][2] == 0 and verify.get("passed")
print("PASSED" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
