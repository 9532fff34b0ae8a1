#!/usr/bin/python3
"""A tiny HTTPS endpoint for the https_get mechanism test: 200 for the right Basic
credentials, 401 otherwise. usage: https_auth_endpoint.py PORT CERT KEY USER PASSWORD"""
import base64
import http.server
import ssl
import sys

port, cert, key, user, password = sys.argv[1:6]
expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.headers.get("Authorization") == expected and self.path == "/auth"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", int(port)), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
