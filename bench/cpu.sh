#!/usr/bin/env bash
# The service's own CPU per request, for one or more builds of it, in interleaved rounds (the
# machine is shared: only figures of one run compare). For each round and each binary: a fresh
# private PostgreSQL (default settings, fsync on), the binary on it (DB_POOL_SIZE=16, group
# commit on, RUST_LOG=warn as bench/run.sh), a warm-up, then each scenario, with the service's
# utime and stime (all threads) and context switches read from /proc before and after:
#   distinct  loadtest --scenario distinct --requests $REQUESTS --concurrency 64 (POST /products)
#   batch     loadtest --scenario batch --requests $((REQUESTS * 5)) --batch-size 100 --concurrency 16
#   get       bench/get.py: GET /products/{id}, 16 keep-alive clients
#   mixed     loadtest --scenario mixed --requests $REQUESTS --concurrency 64
# and the peak RSS (VmHWM) at the end. PERF=1 records a profile of the distinct run
# (perf record --call-graph dwarf) into $PERF_DIR/perf-<label>.data.
#
# usage: bench/cpu.sh [binary ...]   (default: target/release/product-service, built first)
# env: ROUNDS=3 REQUESTS=20000 SCENARIOS="distinct batch get mixed" RUST_LOG_SERVICE=warn
# needs: PostgreSQL server binaries, python3; perf for PERF=1
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-20000}
SCENARIOS=${SCENARIOS:-"distinct batch get mixed"}
PERF_DIR=${PERF_DIR:-/tmp}
if [ $# -eq 0 ]; then
    cargo build --release --bins --quiet
    set -- target/release/product-service
fi
[ -x target/release/loadtest ] || cargo build --release --bin loadtest --quiet
bindir=$( (pg_config --bindir 2>/dev/null || true) | head -n 1)
[ -x "$bindir/initdb" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
hz=$(getconf CLK_TCK)

sample() { # pid -> "utime stime context_switches"
    python3 - "$1" <<'PY'
import os, sys
pid = sys.argv[1]
text = open(f"/proc/{pid}/stat").read()
fields = text[text.rindex(")") + 2:].split()
switches = 0
for tid in os.listdir(f"/proc/{pid}/task"):
    for line in open(f"/proc/{pid}/task/{tid}/status"):
        if "ctxt_switches" in line:
            switches += int(line.split()[1])
print(fields[11], fields[12], switches)
PY
}

one() { # label binary: one fresh database and service, every scenario
    local label=$1 binary=$2 work service_pid url
    work=$(mktemp -d /tmp/product-service-cpu.XXXXXX)
    chmod 755 "$work"
    mkdir -p "$work/pg" "$work/sock"
    [ "$(id -u)" = 0 ] && chown postgres: "$work/pg" "$work/sock"
    as_pg "$bindir/initdb" -D "$work/pg" -U postgres -A trust -E UTF8 --locale=C >/dev/null
    as_pg "$bindir/pg_ctl" start -D "$work/pg" -l "$work/sock/pg.log" -w \
        -o "-k $work/sock -c listen_addresses='' -c max_connections=300" >/dev/null
    as_pg "$bindir/createdb" -h "$work/sock" -U postgres bench
    DATABASE_URL="host=$work/sock port=5432 user=postgres dbname=bench" BIND_ADDR=127.0.0.1:0 \
        RUST_LOG="${RUST_LOG_SERVICE:-warn},product_service::startup=info" \
        DUPLICATE_SCAN_INTERVAL_SECS=0 GROUP_COMMIT=true DB_POOL_SIZE=16 \
        "$binary" serve 2>"$work/service.log" &
    service_pid=$!
    for _ in $(seq 1 100); do grep -q 'listening on' "$work/service.log" && break; sleep 0.2; done
    url="http://127.0.0.1:$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/service.log" | head -n 1)"
    lt() { target/release/loadtest --url "$url" --json --seed "$RANDOM$RANDOM" "$@"; }
    lt --scenario distinct --requests 2000 --concurrency 64 >/dev/null
    for scenario in $SCENARIOS; do
        local before after report perf_pid=
        if [ "$scenario" = distinct ] && [ -n "${PERF:-}" ]; then
            perf record -F 999 --call-graph dwarf,16384 -o "$PERF_DIR/perf-$label.data" \
                -p "$service_pid" 2>/dev/null &
            perf_pid=$!
            sleep 0.5
        fi
        before=$(sample "$service_pid")
        case $scenario in
            distinct) report=$(lt --scenario distinct --requests "$REQUESTS" --concurrency 64) ;;
            batch) report=$(lt --scenario batch --requests $((REQUESTS * 5)) --batch-size 100 --concurrency 16) ;;
            get) report=$(python3 bench/get.py "$url" "$REQUESTS") ;;
            mixed) report=$(lt --scenario mixed --requests "$REQUESTS" --concurrency 64) ;;
        esac
        after=$(sample "$service_pid")
        [ -n "$perf_pid" ] && { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
        python3 - "$label" "$scenario" "$report" "$before" "$after" "$hz" <<'PY'
import json, sys
label, scenario, report, before, after, hz = sys.argv[1:7]
r = json.loads(report)
n, hz = r["requests"], int(hz)
(u0, s0, c0), (u1, s1, c1) = (map(int, x.split()) for x in (before, after))
user, system = (u1 - u0) * 1e6 / hz / n, (s1 - s0) * 1e6 / hz / n
print(f"{label:<12}{scenario:<10}{n:>8}{r['requests_per_second']:>9.0f}{user + system:>10.1f}{user:>8.1f}{system:>8.1f}{(c1 - c0) / n:>10.2f}")
PY
    done
    printf '%-12s%-10speak RSS %s\n' "$label" "" "$(sed -n 's/^VmHWM:[[:space:]]*//p' "/proc/$service_pid/status")"
    kill -TERM "$service_pid"
    wait "$service_pid" 2>/dev/null || true
    as_pg "$bindir/pg_ctl" stop -D "$work/pg" -m fast -w >/dev/null
    rm -rf "$work"
}

printf '%-12s%-10s%8s%9s%10s%8s%8s%10s\n' build scenario requests "req/s" "CPU us" user sys switches
for round in $(seq 1 "$ROUNDS"); do
    for binary in "$@"; do
        one "$(basename "$binary")" "$binary"
    done
done
