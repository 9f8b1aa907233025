"""slixmpp without TLS: alice sends through the gateway's explicit proxy
(HTTP CONNECT), bob is connected straight to the server and records what
arrives.

usage: xmpp_plain.py PROXY_HOST:PORT SERVER_PORT BODY...

Each BODY is sent by alice to bob, 300 ms apart. Prints one JSON object:
the bodies bob received, and the stream error alice got (if any).
"""

import asyncio
import json
import socket
import sys

import slixmpp

proxy_host, proxy_port = sys.argv[1].rsplit(":", 1)
server_port, bodies = int(sys.argv[2]), sys.argv[3:]
via_proxy = {"on": False}

original = asyncio.BaseEventLoop.create_connection


def tunnel(port):
    s = socket.create_connection((proxy_host, int(proxy_port)), timeout=10)
    s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 200" in head.split(b"\r\n")[0], head
    s.setblocking(False)
    return s


async def create_connection(self, factory, host=None, port=None, **kw):
    if via_proxy["on"] and kw.get("sock") is None:
        kw.pop("server_hostname", None)
        return await original(self, factory, sock=tunnel(port), **kw)
    return await original(self, factory, host, port, **kw)


asyncio.BaseEventLoop.create_connection = create_connection


def client(jid):
    c = slixmpp.ClientXMPP(jid, "pw", plugin_config={"feature_mechanisms": {"unencrypted_plain": True}})
    c.enable_starttls = False
    c.enable_direct_tls = False
    c.enable_plaintext = True
    return c


async def main():
    received, errors = [], []
    bob, alice = client("bob@chat.test/obs"), client("alice@chat.test/pub")
    ready = {n: asyncio.Event() for n in ("bob", "alice")}
    bob.add_event_handler("session_start", lambda _: (bob.send_presence(), ready["bob"].set()))
    bob.add_event_handler("message", lambda m: received.append(m["body"]))
    alice.add_event_handler("session_start", lambda _: (alice.send_presence(), ready["alice"].set()))
    alice.add_event_handler("stream_error", lambda e: errors.append(e["condition"]))
    bob.connect("127.0.0.1", server_port)
    await asyncio.wait_for(ready["bob"].wait(), 10)
    via_proxy["on"] = True
    alice.connect("127.0.0.1", server_port)
    await asyncio.wait_for(ready["alice"].wait(), 10)
    for body in bodies:
        alice.send_message(mto="bob@chat.test", mbody=body, mtype="chat")
        await asyncio.sleep(0.3)
    await asyncio.sleep(1.0)
    print(json.dumps({"received": received, "stream_errors": errors}))
    bob.disconnect()
    alice.disconnect()
    await asyncio.sleep(0.2)


asyncio.run(main())
