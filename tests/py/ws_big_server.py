"""WebSocket server over TLS for large messages (python websockets,
permessage-deflate offered, no size limit). It answers each message with
"got LEN card=BOOL" (whether the message held the test card number) and
prints the same line to stdout after its port.

Usage: ws_big_server.py CERT KEY CARD
"""
import asyncio
import ssl
import sys

from websockets.asyncio.server import serve

CARD = sys.argv[3]


async def handle(ws):
    async for message in ws:
        line = f"got {len(message)} card={CARD in message}"
        print(line, flush=True)
        await ws.send(line)


async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    async with serve(handle, "127.0.0.1", 0, ssl=ctx, compression="deflate",
                     max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
