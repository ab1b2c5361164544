#!/usr/bin/env bash
# Schemathesis against the service's own OpenAPI document (issue 9, item 7), then a Python
# client generated from it (ops/check-generated-client.py) against the same service. Every check
# (--checks all), every phase (examples, coverage, fuzzing, stateful), at least 1000 generated
# test cases over every operation, a fixed seed; passes only with zero failures (hence zero 5xx).
#
# The service runs on a fresh embedded database (a temporary DATA_DIR, a free loopback port,
# group commit as by default) and is stopped whatever happens. Schemathesis is installed, at the
# versions pinned in ops/schemathesis-requirements.txt, into the virtualenv
# target/schemathesis-venv when it is not there yet or holds other versions.
# ops/schemathesis.toml holds the settings a flag cannot give. The JSON and NDJSON reports stay
# in target/schemathesis-report; on failure, ops/schemathesis-causes.py lists every failing
# request grouped by check, operation and cause (what the server said was wrong).
#
# usage: ops/check-schemathesis.sh [path/to/product-service]   (needs python3 with venv, curl)
#   ST_SEED, ST_MAX_EXAMPLES, ST_WORKERS override the seed (1), the examples per operation and
#   phase (300) and the workers (1). One worker: schemathesis' workers are threads, and on
#   Python 3.11 two threads in ast.parse at once (Hypothesis parses sources to describe filters)
#   can fail with "AST constructor recursion depth mismatch" (CPython gh-106905), a spurious
#   "Runtime Error" in the report; one worker takes about 50 s here.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/debug/product-service}
[ -x "$binary" ] || { echo "usage: ops/check-schemathesis.sh path/to/product-service" >&2; exit 2; }

requirements=ops/schemathesis-requirements.txt   # schemathesis==4.32.5 and its dependencies, pinned
MIN_CASES=1000
BUDGET_SECS=240   # the whole schemathesis run (about 50 s); far over it means a hang
seed=${ST_SEED:-1}
max_examples=${ST_MAX_EXAMPLES:-300}
workers=${ST_WORKERS:-1}

venv=target/schemathesis-venv
if ! cmp -s "$requirements" "$venv/installed-requirements.txt" ||
    ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
    echo "== installing $requirements into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/installed-requirements.txt"
fi
"$venv/bin/schemathesis" --version

work=$(mktemp -d /tmp/product-service-schemathesis.XXXXXX)
chmod 755 "$work"   # the embedded PostgreSQL may run as the postgres user
pid= st_pid=
cleanup() {
    if [ -n "$st_pid" ]; then kill -TERM "$st_pid" 2>/dev/null || true; wait "$st_pid" 2>/dev/null || true; fi
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "check-schemathesis: FAIL $*" >&2
    if [ -f "$work/service.log" ]; then
        echo "--- service log: errors and warnings (the first 40)" >&2
        grep -E ' (ERROR|WARN) ' "$work/service.log" | head -n 40 >&2 || true
    fi
    exit 1
}

echo "== service on a fresh embedded database"
env -u DATABASE_URL -u METRICS_ADDR -u GROUP_COMMIT DATA_DIR="$work/data" BIND_ADDR=127.0.0.1:0 \
    RUST_LOG=info "$binary" serve >"$work/service.log" 2>&1 &
pid=$!
port=
for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || fail "the service exited: $(tail -n 20 "$work/service.log")"
    port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$work/service.log" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.5
done
[ -n "$port" ] || fail "the service did not log its port within 60 s"
ready=
for _ in $(seq 1 120); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ]; then
        ready=1
        break
    fi
    sleep 0.5
done
[ -n "$ready" ] || fail "/readyz not 200 within 60 s"
echo "service on 127.0.0.1:$port"

report=target/schemathesis-report
rm -rf "$report" && mkdir -p "$report"
cmd=("$venv/bin/schemathesis" --config-file ops/schemathesis.toml run
    "http://127.0.0.1:$port/openapi.json"
    --checks all --phases examples,coverage,fuzzing,stateful --mode all
    --max-examples "$max_examples" --seed "$seed" --workers "$workers"
    --generation-database none --continue-on-failure --request-timeout 10
    --report json,ndjson --report-json-path "$report/report.json"
    --report-ndjson-path "$report/events.ndjson" --no-color)
echo "== ${cmd[*]}"
started=$(date +%s)
status=0
# In the background and waited for, so that a SIGTERM to this script runs the trap at once.
timeout --kill-after=10 "$BUDGET_SECS" "${cmd[@]}" &
st_pid=$!
wait "$st_pid" || status=$?
st_pid=
echo "schemathesis exited $status after $(($(date +%s) - started)) s"
[ "$status" = 124 ] && fail "schemathesis still running after $BUDGET_SECS s"

# The count of generated test cases, from the JSON report (the summary's "N generated").
cases=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["test_cases"]["generated"])' \
    "$report/report.json" 2>/dev/null || echo 0)
if [ "$status" != 0 ]; then
    python3 ops/schemathesis-causes.py "$report/events.ndjson" || true
    fail "schemathesis reported failures (exit $status; $cases test cases; reports in $report)"
fi
[ "$cases" -ge "$MIN_CASES" ] || fail "only $cases test cases generated, at least $MIN_CASES required"
echo "check-schemathesis: PASS: $cases test cases, no failures"

# A client generated from the same document (openapi-python-client, pinned in
# ops/generated-client-requirements.txt) against the same service.
client_requirements=ops/generated-client-requirements.txt
client_venv=target/generated-client-venv
if ! cmp -s "$client_requirements" "$client_venv/installed-requirements.txt" ||
    ! "$client_venv/bin/openapi-python-client" --version >/dev/null 2>&1; then
    echo "== installing $client_requirements into $client_venv"
    rm -rf "$client_venv"
    python3 -m venv "$client_venv"
    "$client_venv/bin/pip" install -q --disable-pip-version-check -r "$client_requirements"
    cp "$client_requirements" "$client_venv/installed-requirements.txt"
fi
"$client_venv/bin/python" ops/check-generated-client.py "http://127.0.0.1:$port" \
    "$client_venv/bin/openapi-python-client" || fail "the generated client failed"
