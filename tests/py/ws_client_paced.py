"""WebSocket client through an HTTP proxy that pauses between messages.

Usage: ws_client_paced.py PROXY_URL HOST:PORT SNI CAFILE MESSAGE...
Sends each message and prints {"echo": text} per reply; before each message
after the first it prints {"ready": true} and waits for a line on stdin.
Prints {"closed": code} if the connection closes.
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
    loop = asyncio.get_running_loop()
    async with connect(
        f"wss://{target}/chat", proxy=proxy, ssl=ctx, server_hostname=sni, open_timeout=20
    ) as ws:
        for i, m in enumerate(messages):
            if i > 0:
                print(json.dumps({"ready": True}), flush=True)
                await loop.run_in_executor(None, sys.stdin.readline)
            try:
                await ws.send(m)
                reply = await asyncio.wait_for(ws.recv(), 20)
                print(json.dumps({"echo": reply}), flush=True)
            except ConnectionClosed as e:
                rcvd = e.rcvd
                print(json.dumps({"closed": rcvd.code if rcvd else None}), flush=True)
                return


asyncio.run(main())
