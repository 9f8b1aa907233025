"""A WebSocket server that pushes and a client that only listens.

  ws_push.py server CERT KEY COUNT INTERVAL   -- prints its port, then pushes
      COUNT text messages INTERVAL seconds apart to each client, then closes
  ws_push.py client PROXY_URL HOST:PORT SNI CAFILE
      -- connects through the proxy, sends nothing, prints {"received": N,
      "code": close code}
"""
import asyncio
import json
import ssl
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def server(cert, key, count, interval):
    async def push(ws):
        for i in range(count):
            await ws.send(f"tick {i}")
            await asyncio.sleep(interval)
        await ws.close(1000, "done")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    async with serve(push, "127.0.0.1", 0, ssl=ctx) as s:
        print(s.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().create_future()


async def client(proxy, target, sni, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    received = 0
    code = None
    async with connect(f"wss://{target}/feed", proxy=proxy, ssl=ctx,
                       server_hostname=sni, open_timeout=20) as ws:
        try:
            async for _ in ws:
                received += 1
        except ConnectionClosed:
            pass
        code = ws.close_code
    print(json.dumps({"received": received, "code": code}), flush=True)


if sys.argv[1] == "server":
    asyncio.run(server(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
else:
    asyncio.run(client(*sys.argv[2:6]))
