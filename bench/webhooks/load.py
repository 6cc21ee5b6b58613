"""Appends for bench/webhook-bench.sh: N records to acme/orders from T
keep-alive connections; fails on any answer but 201."""
import http.client, json, sys, time, threading

port, key, n, threads = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def worker(k):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    for i in range(n // threads):
        body = json.dumps({"payload": {"i": i, "t": k}})
        c.request('POST', '/v1/ledgers/orders/records', body,
                  {'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json'})
        r = c.getresponse()
        r.read()
        assert r.status == 201, r.status


t0 = time.time()
ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
[t.start() for t in ts]
[t.join() for t in ts]
print(f"appended {n} records in {time.time() - t0:.1f} s")
