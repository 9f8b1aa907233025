"""A raw TLS client (Python ssl) through the gateway's explicit proxy to a
TLS echo server of its own, speaking no protocol any parser knows.

usage: tls_stream.py PROXY_HOST:PORT GATEWAY_CA SERVER_CERT SERVER_KEY ALPN CHUNK...

ALPN is a protocol name or "-" for none. Each CHUNK is written 100 ms after
the previous one. Prints one JSON object: what the server received, what
the client got back, and whether the gateway cut the stream.
"""

import json
import socket
import ssl
import sys
import threading
import time

proxy_host, proxy_port = sys.argv[1].rsplit(":", 1)
gateway_ca, cert, key, alpn = sys.argv[2:6]
chunks = [c.encode() for c in sys.argv[6:]]

server_got = bytearray()
srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
srv_ctx.load_cert_chain(cert, key)
if alpn != "-":
    srv_ctx.set_alpn_protocols([alpn])
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]


def serve():
    conn, _ = listener.accept()
    try:
        with srv_ctx.wrap_socket(conn, server_side=True) as tls:
            while True:
                data = tls.recv(4096)
                if not data:
                    break
                server_got.extend(data)
                tls.sendall(data)
    except (OSError, ssl.SSLError):
        pass


server = threading.Thread(target=serve, daemon=True)
server.start()

raw = socket.create_connection((proxy_host, int(proxy_port)), timeout=10)
raw.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:
    head += raw.recv(1)
assert b" 200" in head.split(b"\r\n")[0], head
ctx = ssl.create_default_context(cafile=gateway_ca)
if alpn != "-":
    ctx.set_alpn_protocols([alpn])
tls = ctx.wrap_socket(raw, server_hostname="stream.test")
client_got = bytearray()
cut = False
for i, chunk in enumerate(chunks):
    if i:
        time.sleep(0.1)
    try:
        tls.sendall(chunk)
    except (OSError, ssl.SSLError):
        cut = True
        break
tls.settimeout(3)
try:
    while True:
        data = tls.recv(4096)
        if not data:
            cut = cut or len(client_got) < sum(map(len, chunks))
            break
        client_got.extend(data)
        if len(client_got) >= sum(map(len, chunks)):
            break
except socket.timeout:
    pass
except (OSError, ssl.SSLError):
    cut = True
tls.close()
server.join(3)
print(
    json.dumps(
        {
            "server_got": server_got.decode(errors="replace"),
            "client_got": client_got.decode(errors="replace"),
            "cut": cut,
        }
    )
)
