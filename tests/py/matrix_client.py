"""matrix-nio (with end-to-end encryption: vodozemac) through the gateway
(explicit proxy) against a real Synapse. Two users; a plain room where a
card number is sent, and an encrypted room where two messages are sent
and the other user decrypts them. Each step prints one JSON line.

usage: matrix_client.py PROXY_URL CA_FILE HOMESERVER_URL STORE_DIR
"""

import asyncio
import json
import os
import ssl
import sys

from nio import (
    AsyncClient,
    AsyncClientConfig,
    MegolmEvent,
    RoomMessageText,
    RoomSendError,
)

PROXY, CA, HS, STORE = sys.argv[1:5]


def emit(**kw):
    print(json.dumps(kw), flush=True)


async def sync(c, **kw):
    """One sync plus the key upkeep `sync_forever` would do."""
    r = await c.sync(**kw)
    if c.should_upload_keys:
        await c.keys_upload()
    if c.should_query_keys:
        await c.keys_query()
    if c.should_claim_keys:
        await c.keys_claim(c.get_users_for_key_claiming())
    return r


async def user(name):
    store = os.path.join(STORE, name)
    os.makedirs(store, exist_ok=True)
    c = AsyncClient(
        HS,
        name,
        store_path=store,
        config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True),
        ssl=ssl.create_default_context(cafile=CA),
        proxy=PROXY or None,
    )
    password = f"pw-{name}-correct-horse"
    r = await c.register(name, password, device_name=name)
    if not getattr(r, "user_id", None):
        r = await c.login(password, device_name=name)
    emit(step=f"login_{name}", ok=bool(getattr(r, "user_id", None)), resp=str(r)[:300])
    await sync(c, timeout=0, full_state=True)
    return c


def send_result(name, r, **extra):
    if isinstance(r, RoomSendError):
        emit(step=name, ok=False, errcode=r.status_code, message=r.message, **extra)
    else:
        emit(step=name, ok=True, event_id=getattr(r, "event_id", None), resp=str(r)[:200], **extra)


async def main():
    alice = await user("alice")
    bob = await user("bob")
    try:
        # A plain room: clean text passes, a card number is blocked.
        plain = await alice.room_create(name="plain", invite=[bob.user_id])
        emit(step="plain_room", room=plain.room_id)
        await sync(alice, timeout=0)
        r = await alice.room_send(
            plain.room_id, "m.room.message", {"msgtype": "m.text", "body": "lunch at noon?"}
        )
        send_result("plain", r, room=plain.room_id)
        r = await alice.room_send(
            plain.room_id,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": "my card is 4556737586899855",
                "format": "org.matrix.custom.html",
                "formatted_body": "my card is <b>4556737586899855</b>",
            },
        )
        send_result("card", r, room=plain.room_id)

        # An encrypted room: Megolm messages, one event each at the gateway.
        enc = await alice.room_create(
            name="secret",
            invite=[bob.user_id],
            initial_state=[
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ],
        )
        emit(step="encrypted_room", room=enc.room_id)
        await sync(bob, timeout=0)
        await bob.join(enc.room_id)
        await sync(bob, timeout=0)
        await sync(alice, timeout=0)
        for i, text in enumerate(["first secret plan", "second secret plan"]):
            r = await alice.room_send(
                enc.room_id,
                "m.room.message",
                {"msgtype": "m.text", "body": text},
                ignore_unverified_devices=True,
            )
            send_result(f"encrypted_{i}", r, room=enc.room_id)
        # Bob reads them: proof that they were really end-to-end encrypted.
        decrypted, undecryptable = [], 0
        for _ in range(5):
            s = await sync(bob, timeout=1000)
            room = getattr(s, "rooms", None)
            if room and enc.room_id in room.join:
                for ev in room.join[enc.room_id].timeline.events:
                    if isinstance(ev, RoomMessageText):
                        decrypted.append(ev.body)
                    elif isinstance(ev, MegolmEvent):
                        undecryptable += 1
            if len(decrypted) >= 2:
                break
        emit(step="bob_reads", decrypted=decrypted, undecryptable=undecryptable)
    finally:
        await alice.close()
        await bob.close()


asyncio.run(main())
