"""A local stand-in for the Slack Web API and the Discord HTTP API, over
HTTPS with a certificate from the test PKI. It answers the calls the
real client libraries make (slack_sdk, discord.py) with the shapes the
real services return, and logs every request it receives (method, path,
body) as one JSON line to the file given, so a test can tell what
reached the "server" through the gateway.

usage: chat_standin.py CERT KEY LOG  (prints the port, then serves)
"""

import json
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CERT, KEY, LOG = sys.argv[1], sys.argv[2], sys.argv[3]
LOCK = threading.Lock()
USER = {
    "id": "80351110224678912",
    "username": "gatehouse-test",
    "discriminator": "0",
    "global_name": None,
    "avatar": None,
    "bot": True,
    "flags": 0,
    "mfa_enabled": False,
}


def discord_message(channel, payload, attachments):
    return {
        "id": str(int(time.time() * 1000) << 22),
        "channel_id": channel,
        "type": 0,
        "content": payload.get("content") or "",
        "author": USER,
        "attachments": attachments,
        "embeds": [],
        "mentions": [],
        "mention_roles": [],
        "pinned": False,
        "mention_everyone": False,
        "tts": False,
        "timestamp": "2026-01-01T00:00:00.000000+00:00",
        "edited_timestamp": None,
        "flags": 0,
        "components": [],
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, obj, content_type="application/json"):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def record(self, body):
        with LOCK, open(LOG, "a") as f:
            f.write(
                json.dumps(
                    {
                        "method": self.command,
                        "path": self.path,
                        "body": body.decode("utf-8", "replace"),
                    }
                )
                + "\n"
            )

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self.record(body)
        path = urllib.parse.unquote(self.path.split("?")[0])
        host = self.headers.get("Host", "localhost")
        if path.startswith("/api/v10/"):
            return self.discord(path[len("/api/v10") :], body)
        if path.startswith("/upload/"):
            return self.reply(200, b"OK - " + str(len(body)).encode(), "text/plain")
        if path.startswith("/api/"):
            return self.slack(path[len("/api/") :], host)
        return self.reply(404, {"error": "not found"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    def slack(self, method, host):
        if method == "auth.test":
            return self.reply(200, {"ok": True, "user_id": "U1", "team_id": "T1"})
        if method.startswith("chat."):
            return self.reply(
                200, {"ok": True, "channel": "C042", "ts": "1700000000.000100"}
            )
        if method == "files.getUploadURLExternal":
            return self.reply(
                200,
                {
                    "ok": True,
                    "upload_url": f"https://{host}/upload/v1/F0UPLOAD",
                    "file_id": "F0UPLOAD",
                },
            )
        if method == "files.completeUploadExternal":
            return self.reply(
                200, {"ok": True, "files": [{"id": "F0UPLOAD", "title": "file"}]}
            )
        if method == "files.upload":
            return self.reply(200, {"ok": True, "file": {"id": "F0V1", "name": "f"}})
        if method == "files.info":
            return self.reply(200, {"ok": True, "file": {"id": "F0UPLOAD"}})
        return self.reply(200, {"ok": False, "error": "unknown_method"})

    def discord(self, path, body):
        if path == "/users/@me":
            return self.reply(200, USER)
        if path == "/oauth2/applications/@me":
            return self.reply(
                200,
                {
                    "id": USER["id"],
                    "name": "gatehouse-test",
                    "icon": None,
                    "description": "",
                    "rpc_origins": [],
                    "bot_public": False,
                    "bot_require_code_grant": False,
                    "owner": USER,
                    "summary": "",
                    "verify_key": "00",
                    "team": None,
                    "flags": 0,
                },
            )
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "channels" and parts[2] == "messages":
            ctype = self.headers.get("Content-Type", "")
            payload, attachments = {}, []
            if ctype.startswith("application/json"):
                payload = json.loads(body or b"{}")
            elif b"payload_json" in body:
                start = body.index(b"{", body.index(b"payload_json"))
                end = body.index(b"\r\n--", start)
                payload = json.loads(body[start:end])
                attachments = [
                    {
                        "id": "1",
                        "filename": a.get("filename", "file"),
                        "size": 1,
                        "url": "https://cdn.example.test/a",
                        "proxy_url": "https://cdn.example.test/a",
                    }
                    for a in payload.get("attachments", [])
                ]
            return self.reply(200, discord_message(parts[1], payload, attachments))
        return self.reply(404, {"message": "404: Not Found", "code": 0})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
