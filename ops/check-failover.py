#!/usr/bin/env python3
"""Failover check: the service keeps its promises while its primary dies and a standby is
promoted under steady write load.

Two PostgreSQL clusters on unix sockets: a primary replicating synchronously
(synchronous_commit = on, synchronous_standby_names = 'standby1'), so that every commit, hence
every write the service acknowledges, is on the standby before the answer and survives a
failover; and that standby. The service gets a multi-host DATABASE_URL naming both with
target_session_attrs=read-write, so that after the failover its new connections skip the dead
and the read-only host and find the promoted one, with no restart. Eight writers POST over 300
keys; the primary is killed (pg_ctl stop -m immediate) and the standby promoted. Checked: no
acknowledged write missing on the new primary (per key, the highest acknowledged version is at
most its row's, same id); no duplicated key; only 2xx, 503 with Retry-After and problem+json,
or no answer during the switch (no other 4xx/5xx); writes acknowledged again within 10 s of the
kill; /healthz and /readyz 200 at the end. db_errors_total is printed.

usage: python3 ops/check-failover.py target/debug/product-service
"""
import glob
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

KEYS, WRITERS, REQUEST_TIMEOUT = 300, 8, 5.0
LOAD_BEFORE_KILL, LOAD_AFTER_PROMOTION, SERVING_AGAIN_WITHIN = 3.0, 8.0, 10.0


class Failure(Exception):
    """A step that could not be done, with the reason."""


def run(args, timeout=30, as_postgres=False):
    """Runs a command (as the postgres user when we are root and as_postgres); its stdout."""
    if as_postgres and os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Failure(f"{' '.join(args)}: still running after {timeout} s") from None
    if done.returncode != 0:
        raise Failure(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def pg_bindir():
    """The PostgreSQL binaries: pg_config --bindir, else the newest /usr/lib/postgresql/*/bin."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True,
                        key=lambda d: [int(n) for n in re.findall(r"\d+", d)])
    try:
        candidates.insert(0, run(["pg_config", "--bindir"]).strip())
    except (OSError, Failure):
        pass  # no pg_config: the newest installed
    for bindir in candidates:
        if all(os.access(f"{bindir}/{tool}", os.X_OK)
               for tool in ("initdb", "pg_ctl", "pg_basebackup", "psql")):
            return bindir
    raise Failure("no PostgreSQL server binaries with pg_basebackup (apt-get install postgresql)")


def wait_until(what, timeout, probe):
    """Calls probe() until it returns something true, at most timeout s; else fails naming what."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    raise Failure(f"{what}: not within {timeout} s")


def psql(bindir, sock, sql, db="postgres"):
    """Runs one SQL statement on the cluster whose socket is in sock; its rows, as field lists."""
    out = run([f"{bindir}/psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-h", sock,
               "-p", "5432", "-U", "postgres", "-d", db, "-c", sql], timeout=30)
    return [line.split("\t") for line in out.splitlines() if line]


def pg_ctl(bindir, data, *args):
    """Runs pg_ctl on the cluster in data, as the postgres user, waiting at most 30 s."""
    run([f"{bindir}/pg_ctl", *args, "-D", data, "-w", "-t", "30"], timeout=40, as_postgres=True)


def start_clusters(bindir, work):
    """Starts a primary replicating synchronously to a standby; returns their socket dirs."""
    sock_a, sock_b = f"{work}/sockA", f"{work}/sockB"
    for d in (sock_a, sock_b):
        os.mkdir(d)
    if os.geteuid() == 0:
        for d in (work, sock_a, sock_b):
            shutil.chown(d, "postgres", "postgres")
    run([f"{bindir}/initdb", "-A", "trust", "-U", "postgres", "--locale=C", "-E", "UTF8",
         "-D", f"{work}/primary"], as_postgres=True)
    with open(f"{work}/primary/postgresql.conf", "a") as conf:
        conf.write("listen_addresses = ''\nport = 5432\nwal_level = replica\n"
                   "max_wal_senders = 5\nsynchronous_commit = on\n"
                   "synchronous_standby_names = 'standby1'\nfsync = on\n")
    pg_ctl(bindir, f"{work}/primary", "start", "-l", f"{work}/primary.log", "-o", f"-k {sock_a}")
    conninfo = f"host={sock_a} port=5432 user=postgres application_name=standby1"
    run([f"{bindir}/pg_basebackup", "-R", "-D", f"{work}/standby", "-d", conninfo],
        as_postgres=True)
    with open(f"{work}/standby/postgresql.auto.conf", "r+") as auto:
        if not re.search(r"primary_conninfo = '.*application_name=standby1\b", auto.read()):
            auto.write(f"primary_conninfo = '{conninfo}'\n")
    pg_ctl(bindir, f"{work}/standby", "start", "-l", f"{work}/standby.log", "-o", f"-k {sock_b}")
    wait_until("the standby replicating synchronously (pg_stat_replication)", 30, lambda: psql(
        bindir, sock_a, "SELECT 1 FROM pg_stat_replication "
                        "WHERE application_name = 'standby1' AND sync_state = 'sync'"))
    psql(bindir, sock_a, "CREATE DATABASE app")
    return sock_a, sock_b


def request(port, method, path, body=None):
    """One HTTP request to 127.0.0.1:port; (status, headers, body), or None when no answer came
    (refused, reset, or REQUEST_TIMEOUT without progress)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request(method, path, body=body and json.dumps(body),
                     headers={"content-type": "application/json"} if body else {})
        answer = conn.getresponse()
        return answer.status, answer.headers, answer.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def start_service(binary, sock_a, sock_b, log):
    """Starts the service on both clusters (a multi-host URL) on a free loopback port."""
    env = dict(os.environ, BIND_ADDR="127.0.0.1:0", RUST_LOG="info", LOCK_TIMEOUT_MS="2000",
               STATEMENT_TIMEOUT_MS="3000", DB_POOL_TIMEOUT_MS="1000",
               DUPLICATE_SCAN_INTERVAL_SECS="0", DATABASE_URL=(
                   f"host={sock_a},{sock_b} port=5432,5432 user=postgres dbname=app "
                   "target_session_attrs=read-write"))
    env.pop("METRICS_ADDR", None)  # /metrics on the API port
    return subprocess.Popen([binary, "serve"], env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT)


def service_port(service, log_path):
    """The service's port (its "listening on" log line), once /readyz answers 200."""
    def logged_port():
        if service.poll() is not None:
            raise Failure(f"the service exited with status {service.returncode}")
        with open(log_path, errors="replace") as log:
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read())
        return found and found.group(1)
    found = int(wait_until("the service listening", 30, logged_port))
    wait_until("/readyz 200", 30, lambda: (request(found, "GET", "/readyz") or [0])[0] == 200)
    return found


class Load:
    """WRITERS threads POSTing over KEYS keys until stopped; every answer recorded as
    (start, end, status or None for no answer, acknowledged (serial, id, version) or None)."""

    def __init__(self, port):
        self.port, self.stop, self.lock = port, threading.Event(), threading.Lock()
        self.answers = []
        self.threads = [threading.Thread(target=self.writer, args=(n,), daemon=True)
                        for n in range(WRITERS)]
        for thread in self.threads:
            thread.start()

    def writer(self, n):
        """One writer: a random key, a POST, its answer recorded; again until stopped."""
        rng = random.Random(n)
        while not self.stop.is_set():
            serial, start = str(rng.randrange(KEYS)), time.monotonic()
            answer = request(self.port, "POST", "/products", {
                "brand": "fo", "serial": serial, "manufacturer": "M", "name": f"w{n}"})
            status, ack = answer and answer[0], None
            if status in (200, 201):
                try:
                    product = json.loads(answer[2])
                    ack = (product["serial"], product["id"], product["version"])
                except (ValueError, KeyError, TypeError):
                    status = f"{status} without a product"
            elif status == 503 and not (answer[1].get("Retry-After") and answer[1].get(
                    "content-type", "").startswith("application/problem+json")):
                status = "503 without Retry-After or problem+json"
            with self.lock:
                self.answers.append((start, time.monotonic(), status, ack))

    def finish(self):
        """Stops the writers (each ends within one request timeout); the answers."""
        self.stop.set()
        for thread in self.threads:
            thread.join(REQUEST_TIMEOUT + 5)
        return self.answers


def fail_over(bindir, work, sock_b):
    """Kills the primary and promotes the standby; returns when the kill was ordered and when
    the primary was gone."""
    ordered = time.monotonic()
    pg_ctl(bindir, f"{work}/primary", "stop", "-m", "immediate")
    gone = time.monotonic()
    pg_ctl(bindir, f"{work}/standby", "promote")
    # The promoted node inherited synchronous_standby_names = 'standby1' and has no standby left:
    # every commit would wait for one forever. A failover manager (Patroni, pg_auto_failover)
    # clears it on promotion; so do we.
    psql(bindir, sock_b, "ALTER SYSTEM SET synchronous_standby_names = ''")
    psql(bindir, sock_b, "SELECT pg_reload_conf()")
    print(f"primary killed in {gone - ordered:.2f} s; standby promoted and without synchronous "
          f"standby {time.monotonic() - gone:.2f} s later")
    return ordered, gone


def lost_writes(bindir, sock_b, answers):
    """Acknowledged writes the new primary lacks: per key, the acknowledged (id, version) of
    highest version must be a row of that id with at least that version."""
    stored = {}  # serial -> {id: version}
    for brand, serial, manufacturer, row_id, version in psql(
            bindir, sock_b, "SELECT brand, serial, manufacturer, id, version FROM products", "app"):
        if (brand, manufacturer) == ("fo", "M"):
            stored.setdefault(serial, {})[int(row_id)] = int(version)
    newest = {}  # serial -> (id, version)
    for *_, ack in answers:
        if ack and ack[2] > newest.get(ack[0], (0, 0))[1]:
            newest[ack[0]] = ack[1:]
    return len(newest), [f"serial {s}: acknowledged id {i} version {v}, stored {stored.get(s)}"
                         for s, (i, v) in sorted(newest.items())
                         if stored.get(s, {}).get(i, 0) < v]


def check(bindir, sock_b, port, answers, kill):
    """Prints every check with its figure; whether all passed."""
    # The switch: from the kill order to the answer of the first acknowledged write that started
    # once the primary was gone.
    ordered, gone = kill
    again = min((end for start, end, _, ack in answers if ack and start > gone), default=None)
    switch_end = again or float("inf")
    statuses = Counter(status for _, _, status, _ in answers)
    other = {s: n for s, n in statuses.items() if s not in (200, 201, 503, None)}
    in_switch = {status: sum(1 for start, end, s, _ in answers
                             if s == status and end >= ordered and start <= switch_end)
                 for status in (503, None)}
    keys, missing = lost_writes(bindir, sock_b, answers)
    dups = psql(bindir, sock_b, "SELECT brand, serial, manufacturer, count(*) FROM products "
                                "GROUP BY brand, serial, manufacturer HAVING count(*) > 1", "app")
    print(f"answers: {len(answers)}: 201 {statuses[201]}, 200 {statuses[200]}, "
          f"503 {statuses[503]} ({in_switch[503]} during the switch), "
          f"no answer {statuses[None]}, other {other or 0}")
    results = [
        (not missing, f"acknowledged writes missing: {len(missing)} (over {keys} keys, "
                      f"{statuses[200] + statuses[201]} acknowledged) " + "; ".join(missing[:5])),
        (not dups, f"duplicated keys: {len(dups)} {dups[:5] or ''}"),
        (not other, f"other answers (4xx, 5xx, 503 without Retry-After): "
                    f"{sum(other.values())} {other or ''}"),
        (statuses[None] == in_switch[None], f"no answer outside the switch: "
         f"{statuses[None] - in_switch[None]} (during it: {in_switch[None]})"),
        (again is not None and again - ordered <= SERVING_AGAIN_WITHIN,
         "serving again after " + (f"{again - ordered:.2f} s" if again else "never")
         + f" (limit {SERVING_AGAIN_WITHIN:.0f} s)"),
    ]
    metrics = request(port, "GET", "/metrics")
    for line in (metrics[2].decode().splitlines() if metrics else ["no answer from /metrics"]):
        if line.startswith("db_errors_total{") or not metrics:
            print(f"  {line}")
    for probe in ("/healthz", "/readyz"):
        answer = request(port, "GET", probe)
        results.append((answer and answer[0] == 200,
                        f"{probe} at the end: {answer[0] if answer else 'no answer'}"))
    for ok, text in results:
        print(f"{'PASS' if ok else 'FAIL'} {text}")
    print(f"{sum(1 for ok, _ in results if ok)}/{len(results)} checks passed")
    return all(ok for ok, _ in results)


def main():
    """Sets up, runs the load through the failover, checks, and always cleans up."""
    if len(sys.argv) != 2 or not os.access(sys.argv[1], os.X_OK):
        sys.exit("usage: python3 ops/check-failover.py target/debug/product-service")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up on SIGTERM too
    try:
        bindir = pg_bindir()
    except Failure as e:
        sys.exit(f"FAIL {e}")
    work = tempfile.mkdtemp(prefix="product-service-failover.", dir="/tmp")
    os.chmod(work, 0o755)
    log_path, service, passed = f"{work}/service.log", None, False
    try:
        sock_a, sock_b = start_clusters(bindir, work)
        with open(log_path, "w") as log:
            service = start_service(os.path.abspath(sys.argv[1]), sock_a, sock_b, log)
        port = service_port(service, log_path)
        print(f"service on 127.0.0.1:{port}; primary on {sock_a}, synchronous standby on {sock_b}")
        load = Load(port)
        try:
            time.sleep(LOAD_BEFORE_KILL)
            kill = fail_over(bindir, work, sock_b)
            time.sleep(LOAD_AFTER_PROMOTION)
        finally:
            answers = load.finish()
        passed = check(bindir, sock_b, port, answers, kill)
    except Failure as e:
        print(f"FAIL {e}")
    finally:
        if service:
            service.terminate()
            try:
                service.wait(10)
            except subprocess.TimeoutExpired:
                service.kill()
        if not passed and os.path.exists(log_path):
            with open(log_path, errors="replace") as log:
                lines = log.readlines()
            notable = [line for line in lines
                       if " ERROR " in line or " WARN " in line and "answering 503" not in line]
            print(f"--- service log: {len(notable)} errors and warnings besides 503s (the first 40)"
                  ", or its end without access lines")
            print("".join(notable[:40] or [line for line in lines if " access]" not in line][-30:]),
                  end="")
        for data in (f"{work}/primary", f"{work}/standby"):
            for mode in ("fast", "immediate"):
                if not os.path.exists(f"{data}/postmaster.pid"):
                    break
                try:
                    pg_ctl(bindir, data, "stop", "-m", mode)
                except Failure as e:
                    print(f"cleanup: {e}")
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
