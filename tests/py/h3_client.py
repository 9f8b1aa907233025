"""An HTTP/3 client (aioquic) for the QUIC egress tests.

Usage: h3_client.py ADDRESS PORT SERVER_NAME CAFILE [TIMEOUT [METHOD PATH [BODY]]]
METHOD GET (default) or POST (BODY sent as application/json), or
WEBSOCKET: an extended CONNECT (RFC 9220, `:protocol websocket`) to PATH;
CONNECT: a tunnel to PATH (an authority, host:port).
Prints one JSON line: {"ok", "elapsed", "status", "len", "sha256", "error",
"headers", "text", "reset"} (`text`: the body's first 4 KiB, decoded
lossily; `reset`: the error code when the server reset the stream).
Exit 0 on a response, 2 when the connection failed (refused, timed out).
H3_AUTHORITY in the environment: the requests' :authority, when it should
not be SERVER_NAME.
"""

import asyncio
import hashlib
import json
import os
import sys
import time

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.events import StreamReset
from aioquic.quic.configuration import QuicConfiguration


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._waiters = {}

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            w = self._waiters.get(event.stream_id)
            if w is not None and not w["done"].done():
                w["reset"] = event.error_code
                w["done"].set_result(True)
            return
        for ev in self._http.handle_event(event):
            w = self._waiters.get(ev.stream_id)
            if w is None:
                continue
            if isinstance(ev, HeadersReceived):
                w["headers"] = dict(ev.headers)
            elif isinstance(ev, DataReceived):
                w["body"] += ev.data
            if getattr(ev, "stream_ended", False):
                w["done"].set_result(True)

    async def request(self, authority, method, path, body):
        stream_id = self._quic.get_next_available_stream_id()
        waiter = {"headers": {}, "body": b"", "done": self._loop.create_future()}
        self._waiters[stream_id] = waiter
        if method == "CONNECT":
            headers = [(b":method", b"CONNECT"), (b":authority", path.encode())]
        elif method == "WEBSOCKET":
            headers = [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
                (b"sec-websocket-version", b"13"),
            ]
        else:
            headers = [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
            ]
        if body is not None:
            headers.append((b"content-type", b"application/json"))
            headers.append((b"content-length", str(len(body)).encode()))
        tunnel = method in ("CONNECT", "WEBSOCKET")
        self._http.send_headers(stream_id, headers, end_stream=body is None and not tunnel)
        if body is not None:
            self._http.send_data(stream_id, body, end_stream=True)
        self.transmit()
        await waiter["done"]
        return waiter


async def run(address, port, name, cafile, method, path, body):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=name)
    config.load_verify_locations(cafile)
    async with connect(address, port, configuration=config, create_protocol=H3Client) as client:
        # H3_AUTHORITY: another :authority than the SNI (domain fronting).
        authority = os.environ.get("H3_AUTHORITY", name)
        return await client.request(authority, method, path, body)


def main():
    address, port, name, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 10.0
    method = sys.argv[6] if len(sys.argv) > 6 else "GET"
    path = sys.argv[7] if len(sys.argv) > 7 else "/"
    body = sys.argv[8].encode() if len(sys.argv) > 8 else None
    start = time.monotonic()
    out = {"ok": False, "status": None, "len": 0, "sha256": None, "error": None}
    try:
        r = asyncio.run(
            asyncio.wait_for(run(address, port, name, cafile, method, path, body), timeout)
        )
        out.update(
            ok=True,
            status=int(r["headers"].get(b":status", b"0")),
            len=len(r["body"]),
            sha256=hashlib.sha256(r["body"]).hexdigest(),
            headers={k.decode(errors="replace"): v.decode(errors="replace") for k, v in r["headers"].items()},
            text=r["body"][:4096].decode(errors="replace"),
            reset=r.get("reset"),
        )
    except BaseException as e:  # noqa: BLE001 - any failure is the answer
        out["error"] = f"{type(e).__name__}: {e}"
    out["elapsed"] = time.monotonic() - start
    print(json.dumps(out), flush=True)
    sys.exit(0 if out["ok"] else 2)


if __name__ == "__main__":
    main()
