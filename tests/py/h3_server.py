"""A small HTTP/3 server (aioquic) for the QUIC egress tests.

Usage: h3_server.py HOST PORT CERT KEY
GET answers 200 with BODY (deterministic bytes, so a client can check it
arrived byte-identical); POST answers 200 with the number of bytes read.
Prints "ready" once listening.
"""

import asyncio
import sys

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated

BODY = bytes((i * 7 + 3) % 251 for i in range(50_000))


class H3Server(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = None
        self._requests = {}

    def quic_event_received(self, event):
        if isinstance(event, ProtocolNegotiated):
            self._http = H3Connection(self._quic)
        if self._http is None:
            return
        for ev in self._http.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self._requests[ev.stream_id] = [dict(ev.headers), 0]
                if ev.stream_ended:
                    self._answer(ev.stream_id)
            elif isinstance(ev, DataReceived) and ev.stream_id in self._requests:
                self._requests[ev.stream_id][1] += len(ev.data)
                if ev.stream_ended:
                    self._answer(ev.stream_id)

    def _answer(self, stream_id):
        headers, read = self._requests.pop(stream_id)
        if headers.get(b":method") == b"POST":
            body = f"read {read}".encode()
        else:
            body = BODY
        self._http.send_headers(
            stream_id,
            [
                (b":status", b"200"),
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
                (b"server", b"aioquic-test"),
            ],
        )
        self._http.send_data(stream_id, body, end_stream=True)
        self.transmit()


async def main(host, port, cert, key):
    config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    config.load_cert_chain(cert, key)
    await serve(host, port, configuration=config, create_protocol=H3Server)
    print("ready", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
