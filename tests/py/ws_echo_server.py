"""WebSocket echo server over TLS (python websockets, permessage-deflate on).

Usage: ws_echo_server.py CERT KEY -- prints the port it listens on.
"""
import asyncio
import ssl
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    async with serve(echo, "127.0.0.1", 0, ssl=ctx, compression="deflate") as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
