"""A webhook receiver for bench/webhook-bench.sh: answers every POST 204 and
prints how many it has taken and at what rate, once a second. Loopback
only; ends when its parent kills it."""
import http.server, threading, time, sys
count=0; first=None; last=None
lock=threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version="HTTP/1.1"
    def do_POST(self):
        global count, first, last
        n=int(self.headers.get('content-length',0)); self.rfile.read(n)
        with lock:
            count+=1; now=time.time()
            if first is None: first=now
            last=now
        self.send_response(204); self.send_header('content-length','0'); self.end_headers()
    def log_message(self,*a): pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True
s=Server(('127.0.0.1',int(sys.argv[1])),H)
def rep():
    while True:
        time.sleep(1)
        with lock:
            if first: print(f"count={count} rate={count/max(last-first,1e-9):.0f}/s", flush=True)
threading.Thread(target=rep,daemon=True).start()
s.serve_forever()
