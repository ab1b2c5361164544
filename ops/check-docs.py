#!/usr/bin/env python3
"""Docs check: the interactive API page at /docs, rendered by a real browser, lists every
operation of the OpenAPI document.

The service starts on its embedded database in a temporary DATA_DIR, on a free loopback port.
Every (method, path) operation is read from /openapi.json; then headless Chromium (Debian's
`chromium`) loads /docs/, runs Swagger UI's JavaScript and dumps the rendered DOM. Each operation
Swagger UI renders is an element of class `opblock` holding an `opblock-summary-method` (GET,
POST, ...) and an `opblock-summary-path` whose `data-path` is the path. Every documented
operation must be among them. Chromium may reach nothing but 127.0.0.1 (every other host name
resolves to nothing), so the check also shows that the page works offline: all its files come
from the service.

usage: python3 ops/check-docs.py target/debug/product-service
       [--page /docs/]            the page to load (another one shows that the check can fail)
       [--expect 'GET /nowhere']  an operation to require besides the document's (the same)
Exit status 0 when every operation is listed; 1 when one is missing, naming it, or when
Chromium or the service cannot be run.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
CHROMIUM_TIMEOUT = 120


class Failure(Exception):
    """A step that could not be done, with the reason."""


def wait_until(what, timeout, probe):
    """Calls probe() until it returns something true, at most timeout s; else fails naming what."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    raise Failure(f"{what}: not within {timeout} s")


def request(port, method, path):
    """One HTTP request to 127.0.0.1:port; (status, body), or None when no answer came."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def start_service(binary, work, log):
    """Starts the service on its embedded database in work/data, on a free loopback port."""
    env = dict(os.environ, BIND_ADDR="127.0.0.1:0", RUST_LOG="info", DATA_DIR=f"{work}/data",
               DUPLICATE_SCAN_INTERVAL_SECS="0")
    env.pop("DATABASE_URL", None)  # the embedded database
    env.pop("METRICS_ADDR", None)  # /metrics on the API port, as the document says
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
    port = int(wait_until("the service listening", 60, logged_port))
    wait_until("/readyz 200", 60, lambda: (request(port, "GET", "/readyz") or [0])[0] == 200)
    return port


def documented_operations(port):
    """Every (METHOD, path) of the service's /openapi.json."""
    answer = request(port, "GET", "/openapi.json")
    if not answer or answer[0] != 200:
        raise Failure(f"GET /openapi.json answered {answer[0] if answer else 'nothing'}")
    paths = json.loads(answer[1])["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item
            if method in METHODS}


class Operations(HTMLParser):
    """The operations Swagger UI rendered: for each element of class `opblock`, the text of its
    `opblock-summary-method` and the `data-path` of its `opblock-summary-path`."""

    def __init__(self):
        super().__init__()
        self.blocks, self.in_method = [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if "opblock" in classes:
            self.blocks.append({"method": "", "path": None})
        elif self.blocks and "opblock-summary-method" in classes:
            self.in_method = True
        elif self.blocks and "opblock-summary-path" in classes:
            self.blocks[-1]["path"] = attrs.get("data-path")

    def handle_endtag(self, tag):
        self.in_method = False

    def handle_data(self, data):
        if self.in_method:
            self.blocks[-1]["method"] += data.strip()

    def found(self):
        """The (METHOD, path) pairs rendered."""
        return {(b["method"].upper(), b["path"]) for b in self.blocks if b["path"]}


def chromium():
    """The Chromium binary: $CHROMIUM, else `chromium` on PATH (Debian's package)."""
    binary = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not binary:
        raise Failure("chromium is not installed (Debian: apt-get install chromium), "
                      "or set CHROMIUM to a Chromium or Chrome binary")
    return binary


def rendered_dom(binary, url, work):
    """The DOM of url after headless Chromium ran its scripts, as HTML."""
    args = [binary, "--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", f"--user-data-dir={work}/chromium",
            # Offline: every host but the service's resolves to nothing.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            # Time enough for Swagger UI to fetch the document and render it.
            "--virtual-time-budget=15000", "--dump-dom", url]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Failure(f"chromium: still running after {CHROMIUM_TIMEOUT} s") from None
    if done.returncode != 0 or not done.stdout.strip():
        raise Failure(f"chromium exited {done.returncode} with no DOM: {done.stderr.strip()[-2000:]}")
    return done.stdout


def parse_expect(text):
    """'GET /path' -> ('GET', '/path')."""
    method, _, path = text.strip().partition(" ")
    if method.lower() not in METHODS or not path.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r} is not 'METHOD /path'")
    return method.upper(), path.strip()


def check(binary, page, extra, work):
    """Runs the service and Chromium; prints the result; whether every operation is listed."""
    browser = chromium()
    log_path, service = f"{work}/service.log", None
    try:
        with open(log_path, "w") as log:
            service = start_service(binary, work, log)
        port = service_port(service, log_path)
        documented = documented_operations(port)
        expected = documented | set(extra)
        print(f"service on 127.0.0.1:{port}; /openapi.json documents {len(documented)} "
              f"operations" + (f", plus {len(expected - documented)} required by --expect"
                               if expected - documented else ""))
        url = f"http://127.0.0.1:{port}{page}"
        print(f"rendering {url} in {browser} (headless)")
        parser = Operations()
        parser.feed(rendered_dom(browser, url, work))
        listed = parser.found()
        missing = sorted(expected - listed, key=lambda op: (op[1], op[0]))
        for method, path in sorted(expected & listed, key=lambda op: (op[1], op[0])):
            print(f"  listed  {method} {path}")
        for method, path in missing:
            print(f"  MISSING {method} {path}")
        for method, path in sorted(listed - expected, key=lambda op: (op[1], op[0])):
            print(f"  listed but not documented: {method} {path}")
        if not parser.blocks:
            print(f"FAIL {page} rendered no operation at all (no element of class opblock): "
                  "not Swagger UI, or its scripts or the document did not load")
        elif missing:
            print(f"FAIL {len(missing)} of {len(expected)} operations not listed on {page}: "
                  + ", ".join(f"{m} {p}" for m, p in missing))
        else:
            print(f"PASS all {len(expected)} operations listed on {page}")
        return not missing
    finally:
        if service:
            service.terminate()  # SIGTERM: the service stops its embedded database
            try:
                service.wait(30)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()


def main():
    """Parses the arguments, checks, and always cleans up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", help="the service binary, e.g. target/debug/product-service")
    parser.add_argument("--page", default="/docs/", help="the page to load (default /docs/)")
    parser.add_argument("--expect", action="append", type=parse_expect, default=[],
                        metavar="'METHOD /path'", help="an operation to require besides the "
                                                        "document's (repeatable)")
    args = parser.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"FAIL {args.binary} is not an executable (build it: cargo build)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up on SIGTERM too
    work = tempfile.mkdtemp(prefix="product-service-docs.", dir="/tmp")
    os.chmod(work, 0o755)  # as root, the embedded PostgreSQL runs as the postgres user
    passed, failed_to_run = False, False
    try:
        passed = check(os.path.abspath(args.binary), args.page, args.expect, work)
    except Failure as e:
        print(f"FAIL {e}")
        failed_to_run = True
    finally:
        log_path = f"{work}/service.log"
        if failed_to_run and os.path.exists(log_path):
            with open(log_path, errors="replace") as log:
                lines = [line for line in log if " access]" not in line]
            print("--- the end of the service log, without access lines")
            print("".join(lines[-20:]), end="")
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
