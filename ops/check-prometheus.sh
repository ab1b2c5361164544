#!/usr/bin/env bash
# Checks the ops files against a real Prometheus: the rules and their unit tests pass promtool,
# the dashboard is valid JSON, and a Prometheus server scraping the service on loopback sees the
# target up and product_upserts_total arrive.
#
# usage: ops/check-prometheus.sh [path/to/product-service]   (needs prometheus, promtool, curl, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/debug/product-service}

work=$(mktemp -d /tmp/product-service-prom.XXXXXX)
chmod 755 "$work"   # the embedded PostgreSQL may run as the postgres user
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "check-prometheus: $*" >&2
    for log in "$work"/*.log; do echo "--- $log" >&2; tail -n 20 "$log" >&2; done
    exit 1
}

echo "== promtool check rules / test rules"
promtool check rules ops/alerts.yml
promtool test rules ops/alerts.test.yml
echo "== dashboard JSON"
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["panels"], "no panels"' \
    ops/grafana-dashboard.json

echo "== service with METRICS_ADDR"
DATA_DIR="$work/data" BIND_ADDR=127.0.0.1:0 METRICS_ADDR=127.0.0.1:0 RUST_LOG=info \
    DATABASE_URL= "$binary" serve 2>"$work/service.log" &
pids+=($!)
for _ in $(seq 1 120); do
    grep -q 'serving /metrics on' "$work/service.log" && break
    sleep 0.5
done
api_port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/service.log" | head -n 1)
metrics_port=$(sed -n 's|.*serving /metrics on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/service.log" | head -n 1)
[ -n "$api_port" ] && [ -n "$metrics_port" ] || fail "the service did not start"

status=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
    -d '{"brand":"Prom","serial":"1","manufacturer":"M","name":"scraped"}' "http://127.0.0.1:$api_port/products")
[ "$status" = 201 ] || fail "POST /products answered $status"

echo "== prometheus scraping 127.0.0.1:$metrics_port"
prom_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -e 's/scrape_interval: 15s/scrape_interval: 1s/' -e 's/evaluation_interval: 15s/evaluation_interval: 1s/' \
    -e "s/127.0.0.1:8080/127.0.0.1:$metrics_port/" \
    -e "s|  - alerts.yml|  - $PWD/ops/alerts.yml|" ops/prometheus.yml >"$work/prometheus.yml"
promtool check config "$work/prometheus.yml" >/dev/null
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" 2>"$work/prometheus.log" &
pids+=($!)

query() {
    curl -s --get "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")' 2>/dev/null || true
}
for _ in $(seq 1 60); do
    up=$(query 'up{job="product-service"}')
    created=$(query 'product_upserts_total{job="product-service",outcome="created"}')
    [ "$up" = 1 ] && [ "$created" = 1 ] && break
    sleep 1
done
[ "$up" = 1 ] || fail "Prometheus does not see the target up (up=$up)"
[ "$created" = 1 ] || fail "product_upserts_total{outcome=\"created\"} did not arrive (got '$created')"
rules=$(curl -s "http://127.0.0.1:$prom_port/api/v1/rules" | python3 -c 'import json, sys
print(sum(len(g["rules"]) for g in json.load(sys.stdin)["data"]["groups"]))')
[ "$rules" = 5 ] || fail "Prometheus loaded $rules alerting rules, expected 5"
echo "Prometheus sees the target up, product_upserts_total{outcome=\"created\"} = $created, $rules rules loaded"
