"""An HTTPS client that pauses before and inside its request body, through
an HTTP proxy (CONNECT), on a raw socket (Python ssl).

Usage: slow_body_client.py PROXY_HOST:PORT TARGET_HOST:PORT SNI CAFILE PATH
       CONTENT_TYPE BODY_FILE PAUSE_SECONDS PIECES
Sends the head, pauses, then the body in PIECES equal pieces with a pause
after each but the last. Prints one JSON line: {"status": int, "headers":
{...}, "body": str}, or {"error": str} when the connection ends without an
answer.
"""
import json
import socket
import ssl
import sys
import time


def main():
    proxy, target, sni, cafile, path, ctype, body_file, pause, pieces = sys.argv[1:]
    pause, pieces = float(pause), int(pieces)
    body = open(body_file, "rb").read()
    host, port = proxy.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=60)
    raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = raw.recv(4096)
        if not chunk:
            print(json.dumps({"error": "proxy closed during CONNECT"}))
            return
        head += chunk
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        print(json.dumps({"error": head.decode(errors="replace")}))
        return
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    tls = ctx.wrap_socket(raw, server_hostname=sni)
    tls.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: {sni}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
    )
    time.sleep(pause)
    size = -(-len(body) // pieces)
    try:
        for i in range(pieces):
            tls.sendall(body[i * size:(i + 1) * size])
            if i + 1 < pieces:
                time.sleep(pause)
    except OSError as e:
        # An early answer (a block) may close the connection first.
        sys.stderr.write(f"send stopped: {e}\n")
    answer = b""
    try:
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
    except (OSError, ssl.SSLError) as e:
        sys.stderr.write(f"recv stopped: {e}\n")
    if b"\r\n\r\n" not in answer:
        print(json.dumps({"error": "no answer", "got": answer.decode(errors="replace")}))
        return
    head, rest = answer.split(b"\r\n\r\n", 1)
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    print(json.dumps({"status": status, "headers": headers,
                      "body": rest.decode(errors="replace")}))


main()
