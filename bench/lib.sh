# Shared by bench/run.sh and bench/soak.sh: release binaries, a private PostgreSQL with default
# settings (fsync on) and the service on it. Source it from the repository root; it sets
# $bindir, $work (removed on exit), $service_pid and $url.

echo "== building release binaries" >&2
cargo build --release --bins --quiet

bindir=$( (pg_config --bindir 2>/dev/null || true) | head -n 1)
[ -x "$bindir/initdb" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bindir/initdb" ] && [ -x "$bindir/pgbench" ] || {
    echo "need PostgreSQL server binaries and pgbench (apt-get install postgresql)" >&2
    exit 1
}

work=$(mktemp -d /tmp/product-service-bench.XXXXXX)
chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
service_pid=
cleanup() {
    [ -n "$service_pid" ] && kill -TERM "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
    as_pg "$bindir/pg_ctl" stop -D "$work/pg" -m fast -w >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== private PostgreSQL (default settings, fsync on)" >&2
mkdir -p "$work/pg" "$work/sock"
[ "$(id -u)" = 0 ] && chown postgres: "$work/pg" "$work/sock"
as_pg "$bindir/initdb" -D "$work/pg" -U postgres -A trust -E UTF8 --locale=C >/dev/null
as_pg "$bindir/pg_ctl" start -D "$work/pg" -l "$work/sock/pg.log" -w \
    -o "-k $work/sock -c listen_addresses='' -c max_connections=300" >/dev/null
as_pg "$bindir/createdb" -h "$work/sock" -U postgres bench

echo "== product-service" >&2
DATABASE_URL="host=$work/sock port=5432 user=postgres dbname=bench" BIND_ADDR=127.0.0.1:0 \
    RUST_LOG="warn,product_service::startup=info" DUPLICATE_SCAN_INTERVAL_SECS=0 \
    GROUP_COMMIT="${GROUP_COMMIT:-true}" DB_POOL_SIZE="${DB_POOL_SIZE:-16}" \
    LOCK_TIMEOUT_MS="${LOCK_TIMEOUT_MS:-5000}" \
    target/release/product-service serve 2>"$work/service.log" &
service_pid=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$work/service.log" && break; sleep 0.2; done
port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/service.log" | head -n 1)
[ -n "$port" ] || { cat "$work/service.log" >&2; exit 1; }
url="http://127.0.0.1:$port"
