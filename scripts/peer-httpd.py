#!/usr/bin/env python3
"""A tiny dual-stack HTTP server for the demo and the end-to-end tests.

    peer-httpd.py PORT DIR [READY_FILE]

GET /peer answers with the client address the server saw (IPv4-mapped IPv6
addresses are shown as plain IPv4), which is how the tests see that
masquerade rewrote the source. Every other path is a file served from DIR.
READY_FILE is created once the socket listens, so a caller can wait for it
instead of guessing how long start-up takes.
"""
import functools
import http.server
import socket
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/peer":
            peer = self.client_address[0]
            if peer.startswith("::ffff:"):
                peer = peer[len("::ffff:"):]
            body = (peer + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.client_address[0], fmt % args))


class DualStackServer(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    port, root = int(sys.argv[1]), sys.argv[2]
    server = DualStackServer(("::", port), functools.partial(Handler, directory=root))
    if len(sys.argv) > 3:
        open(sys.argv[3], "w").close()
    sys.stderr.write("listening on [::]:%d serving %s\n" % (port, root))
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
