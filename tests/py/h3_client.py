"""An HTTP/3 client (aioquic) for the QUIC egress tests.

Usage: h3_client.py ADDRESS PORT SERVER_NAME CAFILE [TIMEOUT]
Prints one JSON line: {"ok", "elapsed", "status", "len", "sha256", "error"}.
Exit 0 on a response, 2 when the connection failed (refused, timed out).
"""

import asyncio
import hashlib
import json
import sys
import time

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._waiters = {}

    def quic_event_received(self, event):
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

    async def get(self, authority, path):
        stream_id = self._quic.get_next_available_stream_id()
        waiter = {"headers": {}, "body": b"", "done": self._loop.create_future()}
        self._waiters[stream_id] = waiter
        self._http.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
            ],
            end_stream=True,
        )
        self.transmit()
        await waiter["done"]
        return waiter


async def run(address, port, name, cafile):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=name)
    config.load_verify_locations(cafile)
    async with connect(address, port, configuration=config, create_protocol=H3Client) as client:
        return await client.get(name, "/")


def main():
    address, port, name, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 10.0
    start = time.monotonic()
    out = {"ok": False, "status": None, "len": 0, "sha256": None, "error": None}
    try:
        r = asyncio.run(asyncio.wait_for(run(address, port, name, cafile), timeout))
        out.update(
            ok=True,
            status=int(r["headers"].get(b":status", b"0")),
            len=len(r["body"]),
            sha256=hashlib.sha256(r["body"]).hexdigest(),
        )
    except BaseException as e:  # noqa: BLE001 - any failure is the answer
        out["error"] = f"{type(e).__name__}: {e}"
    out["elapsed"] = time.monotonic() - start
    print(json.dumps(out), flush=True)
    sys.exit(0 if out["ok"] else 2)


if __name__ == "__main__":
    main()
