"""discord.py's HTTP client through the gateway (explicit proxy) against an
in-house Discord API host (Route.BASE pointed at it). Each step prints one
JSON line: what the library returned or raised.

usage: discord_client.py PROXY_URL CA_FILE BASE_URL
"""

import asyncio
import io
import json
import ssl
import sys

import aiohttp
import discord

PROXY, CA, BASE = sys.argv[1], sys.argv[2], sys.argv[3]
CHANNEL = 1100000000000000042
CARDS_CSV = (
    "name,card,expiry\n"
    "Ada Lovelace,4556737586899855,12/29\n"
    "Alan Turing,4916338506082832,01/30\n"
)
discord.http.Route.BASE = BASE


async def step(name, coro):
    out = {"step": name}
    try:
        msg = await coro
        out.update(ok=True, id=msg.id, content=msg.content)
    except discord.HTTPException as e:
        out.update(
            ok=False,
            kind=type(e).__name__,
            status=e.status,
            text=e.text,
            event=e.response.headers.get("x-gatehouse-event"),
            content_type=e.response.headers.get("content-type"),
        )
    except Exception as e:  # a block the library could not read
        out.update(ok=False, kind=type(e).__name__, message=str(e))
    print(json.dumps(out), flush=True)


async def main():
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=CA))
    client = discord.Client(
        intents=discord.Intents.none(), connector=connector, proxy=PROXY
    )
    await client.login("not-a-real-token")
    ch = client.get_partial_messageable(CHANNEL)
    await step("plain", ch.send("lunch at noon?"))
    await step("card", ch.send("my card is 4556737586899855, thanks"))
    await step(
        "embed_aws",
        ch.send(
            "deploy notes",
            embed=discord.Embed(description="aws_access_key_id = AKIAP8IX4EA4Q9OM4894"),
        ),
    )
    await step(
        "upload",
        ch.send(
            "the list you asked for",
            file=discord.File(io.BytesIO(CARDS_CSV.encode()), filename="cards.csv"),
        ),
    )
    await step(
        "upload_clean",
        ch.send(
            "agenda attached",
            file=discord.File(io.BytesIO(b"agenda: roadmap, hiring\n"), filename="agenda.txt"),
        ),
    )
    await client.close()


asyncio.run(main())
