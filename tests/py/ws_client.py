"""WebSocket client through an HTTP proxy (python websockets).

Usage: ws_client.py PROXY_URL HOST:PORT SNI CAFILE MESSAGE...
Sends each message, prints one JSON line per reply:
{"echo": text, "compressed": bool} or {"closed": code, "reason": text}.
"""
import asyncio
import json
import ssl
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def main():
    proxy, target, sni, cafile, *messages = sys.argv[1:]
    ctx = ssl.create_default_context(cafile=cafile)
    async with connect(
        f"wss://{target}/chat",
        proxy=proxy,
        ssl=ctx,
        server_hostname=sni,
        compression="deflate",
        open_timeout=20,
    ) as ws:
        compressed = any(
            type(e).__name__ == "PerMessageDeflate" for e in ws.protocol.extensions
        )
        for m in messages:
            try:
                await ws.send(m)
                reply = await asyncio.wait_for(ws.recv(), 20)
                print(json.dumps({"echo": reply, "compressed": compressed}), flush=True)
            except ConnectionClosed as e:
                rcvd = e.rcvd
                print(json.dumps({"closed": rcvd.code if rcvd else None,
                                  "reason": rcvd.reason if rcvd else ""}), flush=True)
                return


asyncio.run(main())
