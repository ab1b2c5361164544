#!/usr/bin/env bash
# Side-by-side benchmark: product-service under `loadtest` vs. pgbench running the same SQL
# (bench/*.sql), in one run, on one private PostgreSQL with default settings (fsync on).
#
# usage: bench/run.sh [--rows N] [--svg FILE] (env: REQUESTS=20000 CONCURRENCY=64 KEYS=10000 DUP=8)
#   --rows N preloads N rows before the runs, so that figures are taken at a realistic size.
#   --svg FILE: where the chart goes (default bench/results/latest.svg): throughput and CPU per
#   operation of the service, pgbench's lock transaction and ON CONFLICT, per scenario, drawn by
#   `loadtest chart` from FILE's .json twin (written too); beside it FILE-<scenario>.svg, each
#   main scenario's run as `loadtest --plot` draws it.
# needs: cargo, PostgreSQL server binaries with pgbench, python3
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-20000}
CONCURRENCY=${CONCURRENCY:-64}
KEYS=${KEYS:-10000}
DUP=${DUP:-8}
RUN=$(date +%s)
ROWS=0
SVG=bench/results/latest.svg
while [ $# -gt 0 ]; do
    case $1 in
        --rows) ROWS=$2; shift 2 ;;
        --svg) SVG=$2; [[ $SVG = /* ]] || SVG=$caller/$SVG; shift 2 ;;
        *) echo "usage: bench/run.sh [--rows N] [--svg FILE]   (N rows preloaded before the runs;" \
               "the chart to FILE, default bench/results/latest.svg)" >&2; exit 2 ;;
    esac
done
case $SVG in
    *.svg) ;;
    *) echo "bench/run.sh: --svg takes a file name ending in .svg, not $SVG" >&2; exit 2 ;;
esac
mkdir -p "$(dirname "$SVG")"

# shellcheck source=bench/lib.sh
. bench/lib.sh

if [ "$ROWS" -gt 0 ]; then
    # A table of realistic size before the runs: brands of 1,000 rows, 100 manufacturers, one
    # serial per row (SN-1 to SN-N), so that filters that are not a prefix of the key index show.
    echo "== preloading $ROWS rows" >&2
    "$bindir/psql" -q -h "$work/sock" -U postgres bench -c \
        "INSERT INTO products (brand, serial, manufacturer, name) \
         SELECT 'pre-' || (i / 1000), 'SN-' || i, 'M-' || (i % 100), 'preloaded' \
         FROM generate_series(1, $ROWS) AS i; ANALYZE products"
fi

loadtest_unverified() { # scenario [seed [loadtest options]] -> JSON report; the seed also names the run's keys
    local scenario=$1 seed=${2:-$RUN}
    shift $(($# < 2 ? $# : 2))
    target/release/loadtest --url "$url" --scenario "$scenario" --requests "$REQUESTS" \
        --concurrency "$CONCURRENCY" --keys "$KEYS" --dup "$DUP" --seed "$seed" --json "$@"
}
loadtest() { # as loadtest_unverified, then every key read back through the API (--verify)
    local scenario=$1 seed=${2:-$RUN}
    shift $(($# < 2 ? $# : 2))
    loadtest_unverified "$scenario" "$seed" "$@" --verify
}
# The runs whose cost is measured are checked in the database instead, after the cost was taken:
# the API read-back sends one GET per key, which would be counted as the run's own cost.
verified_in_database() { # scenario seed JSON -> the JSON with "verify": duplicated keys (SQL), 5xx
    local dup
    dup=$("$bindir/psql" -Atq -h "$work/sock" -U postgres bench -c \
        "SELECT count(*) FROM (SELECT 1 FROM products WHERE brand = 'lt-$2-$1' \
         GROUP BY serial, manufacturer HAVING count(*) > 1) AS d")
    python3 - "$3" "$dup" <<'EOF'
import json, sys
report, duplicated = json.loads(sys.argv[1]), int(sys.argv[2])
errors = sum(n for status, n in report["statuses"].items()
             if not status.isdigit() or int(status) == 0 or int(status) >= 500)
report["verify"] = {"passed": duplicated == 0 and errors == 0, "duplicated_keys": duplicated,
                    "server_errors": errors, "checked": "in the database, every key of the run"}
print(json.dumps(report))
EOF
}

pgbench_run() { # name script... -> "tps p50_ms p99_ms"
    local name=$1
    shift
    rm -f "$work/$name".[0-9]*
    local out
    out=$("$bindir/pgbench" -h "$work/sock" -U postgres -n -M prepared -c "$CONCURRENCY" -j 2 \
        -t $((REQUESTS / CONCURRENCY)) -D keys="$KEYS" -D run="$RUN" \
        --log --log-prefix="$work/$name" "$@" bench 2>&1) || { echo "$out" >&2; exit 1; }
    local tps
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p')
    python3 - "$tps" "$work/$name".[0-9]* <<'EOF'
import sys
tps, files = sys.argv[1], sys.argv[2:]
latencies = sorted(int(line.split()[2]) for f in files for line in open(f))
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000
print(tps, pick(0.5), pick(0.99))
EOF
}

script() { # key-script [weight] -> combined upsert script path
    cat "bench/key-$1.sql" bench/upsert.sql >"$work/upsert-$1.sql"
    chmod 644 "$work/upsert-$1.sql"
    echo "$work/upsert-$1.sql"
}

# Cost of a run: CPU ticks of the PostgreSQL server (the postmaster with its reaped children, plus
# the live backends), of the service process, and the WAL position. `snapshot` before and after a
# run; `cost` turns the two into "server_cpu_us wal_bytes service_cpu_us", each per operation.
postmaster_pid=$(as_pg head -n 1 "$work/pg/postmaster.pid")
snapshot() {
    local lsn
    lsn=$("$bindir/psql" -Atq -h "$work/sock" -U postgres bench -c "SELECT pg_current_wal_lsn()")
    python3 - "$postmaster_pid" "$service_pid" "$lsn" <<'EOF'
import os, sys
postmaster, service, lsn = sys.argv[1:4]
def stat(pid):  # fields after "(comm)": [1] ppid, [11] utime, [12] stime, [13] cutime, [14] cstime
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()
server = sum(int(x) for x in stat(postmaster)[11:15])
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        fields = stat(pid)
    except OSError:
        continue
    if fields[1] == postmaster:
        server += int(fields[11]) + int(fields[12])
own = stat(service)
print(server, int(own[11]) + int(own[12]), lsn)
EOF
}
cost() { # "before" "after" operations -> "server_cpu_us wal_bytes service_cpu_us" per operation
    local before=$1 after=$2 ops=$3 wal
    wal=$("$bindir/psql" -Atq -h "$work/sock" -U postgres bench -c \
        "SELECT pg_wal_lsn_diff('${after##* }', '${before##* }')")
    python3 - "$before" "$after" "$ops" "$wal" "$(getconf CLK_TCK)" <<'EOF'
import sys
before, after = (s.split() for s in sys.argv[1:3])
ops, wal, hz = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
us = lambda i: (int(after[i]) - int(before[i])) * 1e6 / hz / ops
print(f"{us(0):.1f} {wal / ops:.0f} {us(1):.1f}")
EOF
}
requests_of() { python3 -c 'import json, sys; print(json.load(sys.stdin)["requests"])'; }

results="$work/results"
: >"$results"
# scenario | service JSON | pgbench "tps p50 p99" or n/a | service cost | pgbench cost (or n/a)
record() { echo "$1|$2|$3|${4:-n/a}|${5:-n/a}" >>"$results"; }

pgbench_ops=$((REQUESTS / CONCURRENCY * CONCURRENCY))
for scenario in distinct hot zipf mixed; do
    echo "== $scenario" >&2
    before=$(snapshot)
    service=$(loadtest_unverified "$scenario" "$RUN" --plot "${SVG%.svg}-$scenario.svg")
    service_cost=$(cost "$before" "$(snapshot)" "$(echo "$service" | requests_of)")
    service=$(verified_in_database "$scenario" "$RUN" "$service")
    before=$(snapshot)
    case $scenario in
        mixed) pg=$(pgbench_run "$scenario" -f "$(script uniform)@7" -f bench/read.sql@3) ;;
        *) pg=$(pgbench_run "$scenario" -f "$(script "$scenario")") ;;
    esac
    record "$scenario" "$service" "$pg" "$service_cost" "$(cost "$before" "$(snapshot)" "$pgbench_ops")"
done

echo "== reference: INSERT ... ON CONFLICT on a table with a unique constraint" >&2
# The same table with the same indexes (primary key, list indexes), but its key index unique:
# the comparison is of the two ways of keeping a key unique, not of how many indexes a write
# maintains.
"$bindir/psql" -q -h "$work/sock" -U postgres bench <<'SQL'
CREATE TABLE products_unique (LIKE products INCLUDING DEFAULTS INCLUDING INDEXES);
DO $$
DECLARE
    copy text;
BEGIN
    SELECT indexname INTO STRICT copy FROM pg_indexes
    WHERE tablename = 'products_unique'
      AND indexdef LIKE '%(brand, serial, manufacturer)' AND indexdef NOT LIKE '%UNIQUE%';
    EXECUTE format('DROP INDEX %I', copy);
END
$$;
ALTER TABLE products_unique ADD UNIQUE (brand, serial, manufacturer);
SQL
"$bindir/psql" -Atq -h "$work/sock" -U postgres bench -c \
    "SELECT indexdef FROM pg_indexes WHERE tablename = 'products_unique' ORDER BY 1" | sed 's/^/   /' >&2
cp bench/on-conflict.sql "$work/on-conflict.sql"
before=$(snapshot)
pg=$(pgbench_run on-conflict -f "$work/on-conflict.sql")
record "distinct, ON CONFLICT" "n/a" "$pg" "n/a" "$(cost "$before" "$(snapshot)" "$pgbench_ops")"

echo "== the service against ON CONFLICT on distinct keys, 3 alternating rounds" >&2
# The headline comparison, taken in rounds that alternate so that the machine's drift hits both
# sides: "side round req/s p50_ms p99_ms server_cpu_us wal_bytes service_cpu_us" per line.
headline="$work/headline.txt"
: >"$headline"
for round in 1 2 3; do
    before=$(snapshot)
    service=$(loadtest_unverified distinct $((RUN + 30 + round)))
    service_cost=$(cost "$before" "$(snapshot)" "$(echo "$service" | requests_of)")
    service=$(verified_in_database distinct $((RUN + 30 + round)) "$service")
    record "distinct, round $round" "$service" "n/a"
    echo "service $round $(echo "$service" | python3 -c 'import json, sys; r = json.load(sys.stdin); \
        print(r["requests_per_second"], r["latency_ms"]["p50"], r["latency_ms"]["p99"])') $service_cost" >>"$headline"
    before=$(snapshot)
    pg=$(pgbench_run on-conflict -f "$work/on-conflict.sql")
    echo "on_conflict $round $pg $(cost "$before" "$(snapshot)" "$pgbench_ops")" >>"$headline"
done

echo "== what the list indexes cost a write: distinct upserts on a copy with the key index only" >&2
# The same pgbench upsert (bench/upsert.sql, distinct keys: every request inserts) against
# products, with the indexes of the list filters (migration list_filter_indexes), and against a
# copy holding the same rows with only the primary key and the key index, as before that
# migration. Three rounds, alternating, so that drift hits both; the medians go in the report.
"$bindir/psql" -q -h "$work/sock" -U postgres bench -c \
    "CREATE TABLE products_keyonly (LIKE products INCLUDING DEFAULTS, PRIMARY KEY (id))" -c \
    "INSERT INTO products_keyonly SELECT * FROM products" -c \
    "CREATE INDEX products_keyonly_key_idx ON products_keyonly (brand, serial, manufacturer)" -c \
    "ANALYZE products_keyonly"
sed 's/\bproducts\b/products_keyonly/g' "$(script distinct)" >"$work/upsert-keyonly.sql"
chmod 644 "$work/upsert-keyonly.sql"
index_costs="$work/index-costs.txt"
: >"$index_costs"
for round in 1 2 3; do
    for table in keyonly products; do
        case $table in
            keyonly) file="$work/upsert-keyonly.sql" ;;
            *) file="$(script distinct)" ;;
        esac
        before=$(snapshot)
        pg=$(pgbench_run "index-$table-$round" -f "$file")
        echo "$table $round ${pg%% *} $(cost "$before" "$(snapshot)" "$pgbench_ops")" >>"$index_costs"
    done
done

echo "== race" >&2
record race "$(loadtest race)" "n/a"

echo "== hot and distinct at once" >&2
hot_file="$work/hot-alongside.json"
loadtest hot $((RUN + 1)) >"$hot_file" &
hot_pid=$!
record "distinct beside hot" "$(loadtest distinct $((RUN + 2)))" "n/a"
wait "$hot_pid"
record "hot beside distinct" "$(cat "$hot_file")" "n/a"

echo "== distinct keys alone and beside a key held by another session (3 rounds)" >&2
# Another session holds one key's advisory lock for the whole block. In each round the
# distinct-key load runs alone, then again while requests for the held key keep arriving (one
# every 100 ms, bench/held.py); the rounds interleave so that the machine's drift hits both.
PGAPPNAME=bench-holder "$bindir/psql" -q -h "$work/sock" -U postgres bench -c \
    "BEGIN; SELECT pg_advisory_xact_lock(product_lock_key('held', '1', 'M')); SELECT pg_sleep(600); COMMIT;" \
    >/dev/null 2>&1 &
holder_pid=$!
sleep 0.5
held_file="$work/held.txt"
: >"$held_file"
for round in 1 2 3; do
    record "alone, round $round" "$(loadtest distinct $((RUN + 10 + round)))" "n/a"
    rm -f "$work/held.stop"
    python3 bench/held.py "$url" "$work/held.stop" "$held_file" &
    held_pid=$!
    record "beside held, round $round" "$(loadtest distinct $((RUN + 20 + round)))" "n/a"
    touch "$work/held.stop"
    wait "$held_pid"
done
"$bindir/psql" -q -h "$work/sock" -U postgres bench -c \
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'bench-holder'" >/dev/null
wait "$holder_pid" 2>/dev/null || true

echo "== reads of single products and filtered pages ($ROWS rows preloaded)" >&2
reads="$work/reads.txt"
: >"$reads"
read_time() { # label path -> median seconds of 11 GETs
    local label=$1 path=$2 times=()
    for _ in $(seq 1 11); do
        times+=("$(curl -s -o /dev/null -w '%{time_total}' "$url$path")")
    done
    echo "$label $(printf '%s\n' "${times[@]}" | sort -n | sed -n 6p)" >>"$reads"
}
# Every combination of the filters, for the row in the middle of the preloaded table (brand
# pre-<middle/1000>, serial SN-<middle>, manufacturer M-<middle%100>), and pages after it.
middle=$((ROWS > 0 ? ROWS / 2 : 1))
b="brand=pre-$((middle / 1000))" s="serial=SN-$middle" m="manufacturer=M-$((middle % 100))"
for filters in "limit=50" "$b&limit=50" "$s" "$m&limit=50" "$b&$s" "$b&$m&limit=50" "$s&$m" \
    "$b&$s&$m" "after=$middle&limit=50" "$b&after=$middle&limit=50" "$m&after=$middle&limit=50" \
    "$b&$m&after=$((middle - 500))&limit=50"; do
    read_time "GET /products?$filters" "/products?$filters"
done
read_time "GET /products/1" "/products/1"

rss_kib=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$service_pid/status")

# The chart's input: the scenarios with a pgbench counterpart, the ON CONFLICT reference beside
# the scenario it runs (`X, ON CONFLICT` -> X); see `loadtest chart --help`.
python3 - "$results" "$REQUESTS" "$CONCURRENCY" "$ROWS" "${GROUP_COMMIT:-true}" >"${SVG%.svg}.json" <<'EOF'
import json, sys
results, requests, concurrency, rows, group_commit = sys.argv[1:6]
def figures(ops, cost, own=True):  # cost: "server_cpu_us wal_bytes service_cpu_us" or n/a
    out = {"ops_per_second": ops}
    if cost != "n/a":
        server, _, service = (float(x) for x in cost.split())
        out["server_cpu_us"] = server
        if own:
            out["service_cpu_us"] = service
    return out
scenarios = {}
for line in open(results):
    scenario, service, pg, service_cost, pg_cost = line.rstrip("\n").split("|", 4)
    if pg == "n/a":
        continue
    pg_figures = figures(float(pg.split()[0]), pg_cost, own=False)
    if scenario.endswith(", ON CONFLICT"):
        scenarios.setdefault(scenario.removesuffix(", ON CONFLICT"), {})["on_conflict"] = pg_figures
        continue
    entry = scenarios.setdefault(scenario, {})
    entry["service"] = figures(json.loads(service)["requests_per_second"], service_cost)
    entry["pgbench"] = pg_figures
title = (f"bench/run.sh: {requests} requests per scenario, {concurrency} clients, "
         f"GROUP_COMMIT={group_commit}" + (f", {rows} rows preloaded" if rows != "0" else ""))
json.dump({"title": title, "scenarios": [{"name": name, **entry} for name, entry in scenarios.items()]},
          sys.stdout, indent=1)
EOF
# A chart that cannot be drawn is no reason to lose the figures: the tables follow either way.
if target/release/loadtest chart --input "${SVG%.svg}.json" --output "$SVG"; then
    echo "== chart: $SVG (from ${SVG%.svg}.json); each scenario's run: ${SVG%.svg}-<scenario>.svg" >&2
else
    echo "== no chart: loadtest chart failed (its input: ${SVG%.svg}.json)" >&2
fi

python3 - "$results" "$rss_kib" "$CONCURRENCY" "$REQUESTS" "$held_file" "$reads" "$index_costs" "$headline" <<'EOF'
import json, sys
results, rss_kib, concurrency, requests = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
held = [line.split() for line in open(sys.argv[5]) if line.strip()]
rows = [line.rstrip("\n").split("|", 4) for line in open(results)]
print(f"\n{requests} requests per scenario, {concurrency} concurrent clients\n")
head = f"{'scenario':<22}{'service req/s':>14}{'p50 ms':>9}{'p99 ms':>9}   {'pgbench tps':>12}{'p50 ms':>9}{'p99 ms':>9}   {'ratio':>6}  verify"
print(head)
print("-" * len(head))
solo, p99s = {}, {}
failed = False
for scenario, service, pg, _, _ in rows:
    if service == "n/a":
        tps, pg50, pg99 = (float(x) for x in pg.split())
        print(f"{scenario:<22}{'n/a':>14}{'':>9}{'':>9}   {tps:>12.0f}{pg50:>9.2f}{pg99:>9.2f}   (reference: needs a unique constraint)")
        continue
    s = json.loads(service)
    v = s.get("verify") or {}
    failed |= not v.get("passed", False)
    rps, p50, p99 = s["requests_per_second"], s["latency_ms"]["p50"], s["latency_ms"]["p99"]
    solo[scenario] = rps
    p99s[scenario] = p99
    line = f"{scenario:<22}{rps:>14.0f}{p50:>9.2f}{p99:>9.2f}   "
    if pg == "n/a":
        line += f"{'n/a':>12}{'':>9}{'':>9}   {'':>6}"
    else:
        tps, pg50, pg99 = (float(x) for x in pg.split())
        line += f"{tps:>12.0f}{pg50:>9.2f}{pg99:>9.2f}   {rps / tps:>5.2f}x"
    verdict = "ok" if v.get("passed") else f"FAILED ({v.get('duplicated_keys')} dup keys, {v.get('server_errors')} 5xx)"
    print(line + "  " + verdict)
if "distinct beside hot" in solo and "distinct" in solo:
    print(f"\ndistinct-key throughput beside a hot key: {solo['distinct beside hot'] / solo['distinct']:.2f}x its solo figure")
rounds = [(s_alone, s_beside) for r in (1, 2, 3)
          if (s_alone := p99s.get(f"alone, round {r}")) and (s_beside := p99s.get(f"beside held, round {r}"))]
if rounds:
    ratios = sorted(solo[f"beside held, round {r}"] / solo[f"alone, round {r}"] for r in (1, 2, 3))
    p99_ratios = sorted(beside / alone for alone, beside in rounds)
    print(f"distinct-key throughput beside a key held by another session: {', '.join(f'{x:.2f}x' for x in ratios)} "
          f"of the same round alone (median {ratios[1]:.2f}x); p99 {', '.join(f'{x:.2f}x' for x in p99_ratios)} (median {p99_ratios[1]:.2f}x)")
    codes = [code for code, _ in held]
    slowest = max((float(t) for _, t in held), default=0.0)
    print(f"  requests for the held key: {len(held)}, 503: {codes.count('503')}, other: {len(held) - codes.count('503')}, slowest answer {slowest:.2f} s")
print("\nCost per operation (server CPU: the PostgreSQL processes' CPU time, reaped backends")
print("included; WAL: pg_current_wal_lsn() before and after; service CPU: its process's CPU time)\n")
head = f"{'scenario':<22}{'server CPU us':>14}{'WAL B':>8}{'service CPU us':>16}   {'pgbench server CPU us':>22}{'WAL B':>8}"
print(head)
print("-" * len(head))
for scenario, _, _, service_cost, pg_cost in rows:
    if service_cost == "n/a" and pg_cost == "n/a":
        continue
    s_cpu, s_wal, s_own = service_cost.split() if service_cost != "n/a" else ("n/a",) * 3
    p_cpu, p_wal, _ = pg_cost.split() if pg_cost != "n/a" else ("n/a",) * 3
    print(f"{scenario:<22}{s_cpu:>14}{s_wal:>8}{s_own:>16}   {p_cpu:>22}{p_wal:>8}")
costs = {}
for line in open(sys.argv[7]):
    table, _, tps, cpu, wal, _ = line.split()
    costs.setdefault(table, []).append((float(tps), float(cpu), float(wal)))
if {"keyonly", "products"} <= costs.keys():
    median = lambda table, i: sorted(run[i] for run in costs[table])[len(costs[table]) // 2]
    print("\nWhat the list indexes cost a write (pgbench, bench/upsert.sql on distinct keys, every")
    print("request an insert; median of 3 alternating rounds; same rows in both tables)\n")
    head = f"{'table':<38}{'tps':>8}{'server CPU us':>15}{'WAL B':>8}"
    print(head)
    print("-" * len(head))
    for table, label in (("keyonly", "primary key and key index only"), ("products", "products, with the list indexes")):
        print(f"{label:<38}{median(table, 0):>8.0f}{median(table, 1):>15.1f}{median(table, 2):>8.0f}")
    d_cpu = median("products", 1) - median("keyonly", 1)
    d_wal = median("products", 2) - median("keyonly", 2)
    print(f"{'the list indexes, per upsert':<38}{'':>8}{d_cpu:>+15.1f}{d_wal:>+8.0f}"
          f"   ({d_cpu / median('keyonly', 1):+.0%} CPU, {d_wal / median('keyonly', 2):+.0%} WAL)")
sides = {}
for line in open(sys.argv[8]):
    side, _, *figures = line.split()
    sides.setdefault(side, []).append([float(x) for x in figures])
if {"service", "on_conflict"} <= sides.keys():
    mid = lambda side, i: sorted(run[i] for run in sides[side])[len(sides[side]) // 2]
    print("\nThe service (group commit, no unique constraint) against INSERT ... ON CONFLICT (pgbench,")
    print("unique constraint) on distinct keys: medians of 3 alternating rounds\n")
    head = f"{'':<28}{'ops/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'server CPU us':>15}{'WAL B':>7}{'service CPU us':>16}"
    print(head)
    print("-" * len(head))
    print(f"{'service':<28}{mid('service', 0):>8.0f}{mid('service', 1):>8.2f}{mid('service', 2):>8.2f}"
          f"{mid('service', 3):>15.1f}{mid('service', 4):>7.0f}{mid('service', 5):>16.1f}")
    print(f"{'pgbench ON CONFLICT':<28}{mid('on_conflict', 0):>8.0f}{mid('on_conflict', 1):>8.2f}"
          f"{mid('on_conflict', 2):>8.2f}{mid('on_conflict', 3):>15.1f}{mid('on_conflict', 4):>7.0f}{'n/a':>16}")
    ratios = sorted(s[0] / o[0] for s, o in zip(sides["service"], sides["on_conflict"]))
    cpu = sorted(s[3] / o[3] for s, o in zip(sides["service"], sides["on_conflict"]))
    p99 = sorted(s[2] / o[2] for s, o in zip(sides["service"], sides["on_conflict"]))
    print(f"service / ON CONFLICT per round: throughput {', '.join(f'{x:.2f}x' for x in ratios)}; "
          f"server CPU {', '.join(f'{x:.2f}x' for x in cpu)}; p99 {', '.join(f'{x:.2f}x' for x in p99)}")
print("\nReads, median of 11 (curl, one at a time, after the runs):")
for line in open(sys.argv[6]):
    label, seconds = line.rsplit(" ", 1)
    print(f"  {label:<80}{float(seconds) * 1000:>8.1f} ms")
print(f"\nservice peak RSS: {rss_kib / 1024:.1f} MiB")
sys.exit(1 if failed else 0)
EOF
