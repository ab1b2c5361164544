"""GET /products/{id} for ids 1 to 1000 in turn, from 16 keep-alive clients; prints JSON like
loadtest's (requests, requests_per_second, statuses). usage: get.py URL REQUESTS"""
import http.client
import json
import sys
import threading
import time
import urllib.parse

url, total = urllib.parse.urlparse(sys.argv[1]), int(sys.argv[2])
clients = 16
each = total // clients
statuses = {}
lock = threading.Lock()


def client(n):
    connection = http.client.HTTPConnection(url.hostname, url.port)
    seen = {}
    for i in range(each):
        connection.request("GET", f"/products/{(n * each + i) % 1000 + 1}")
        response = connection.getresponse()
        response.read()
        seen[response.status] = seen.get(response.status, 0) + 1
    with lock:
        for status, count in seen.items():
            statuses[status] = statuses.get(status, 0) + count


started = time.time()
threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
elapsed = time.time() - started
print(json.dumps({"requests": each * clients, "requests_per_second": each * clients / elapsed,
                  "statuses": statuses}))
