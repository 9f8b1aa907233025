"""WebSocket client through an HTTP proxy for large messages (python
websockets, no size limit).

Usage: ws_big_client.py PROXY_URL HOST:PORT SNI CAFILE deflate|none FILE[:N]...
Sends each file's content as one text message (in N fragments when :N is
given) and prints one JSON line per message: {"reply": text,
"compressed": bool} or {"closed": code, "reason": text}.
"""
import asyncio
import json
import ssl
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def main():
    proxy, target, sni, cafile, compression, *files = sys.argv[1:]
    ctx = ssl.create_default_context(cafile=cafile)
    async with connect(
        f"wss://{target}/chat",
        proxy=proxy,
        ssl=ctx,
        server_hostname=sni,
        compression="deflate" if compression == "deflate" else None,
        max_size=None,
        open_timeout=20,
    ) as ws:
        compressed = any(
            type(e).__name__ == "PerMessageDeflate" for e in ws.protocol.extensions
        )
        for spec in files:
            path, _, parts = spec.partition(":")
            text = open(path, encoding="utf-8").read()
            try:
                if parts:
                    n = int(parts)
                    size = -(-len(text) // n)
                    await ws.send([text[i * size:(i + 1) * size] for i in range(n)])
                else:
                    await ws.send(text)
                reply = await asyncio.wait_for(ws.recv(), 60)
                print(json.dumps({"reply": reply, "compressed": compressed}), flush=True)
            except ConnectionClosed as e:
                rcvd = e.rcvd
                print(json.dumps({"closed": rcvd.code if rcvd else None,
                                  "reason": rcvd.reason if rcvd else ""}), flush=True)
                return


asyncio.run(main())
