# A Python app that takes its socket from pmi the systemd way (LISTEN_FDS / LISTEN_PID).
import http.server
import os
import socket
import socketserver
import sys

if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
    print("not for me:", os.environ.get("LISTEN_PID"), os.getpid(), file=sys.stderr)
    sys.exit(3)
sock = socket.socket(fileno=3)
sock.setblocking(True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.TCPServer):
    def server_bind(self):
        pass

    def server_activate(self):
        pass


srv = Server(sock.getsockname(), Handler, bind_and_activate=False)
srv.socket = sock
srv.serve_forever()
