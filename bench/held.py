"""Requests for a key that another session holds, one every 100 ms, each on its own thread,
until the file named by the second argument exists; then waits for the answers and writes one
line per request ("<status> <seconds>") to the third argument.

usage: python3 bench/held.py <service URL> <stop file> <output file>
"""
import os
import sys
import threading
import time
import urllib.error
import urllib.request

BODY = b'{"brand":"held","serial":"1","manufacturer":"M","name":"held"}'


def main(url: str, stop_file: str, output: str) -> None:
    answers, lock, threads = [], threading.Lock(), []

    def one() -> None:
        started = time.monotonic()
        request = urllib.request.Request(
            f"{url}/products", data=BODY, method="POST",
            headers={"content-type": "application/json"})
        try:
            status = urllib.request.urlopen(request, timeout=60).status
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError:
            status = 0
        with lock:
            answers.append(f"{status} {time.monotonic() - started:.3f}")

    while not os.path.exists(stop_file):
        thread = threading.Thread(target=one)
        thread.start()
        threads.append(thread)
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    with open(output, "a", encoding="utf-8") as out:
        out.write("".join(f"{line}\n" for line in answers))


if __name__ == "__main__":
    main(*sys.argv[1:4])
