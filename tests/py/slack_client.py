"""slack_sdk's WebClient through the gateway (explicit proxy) against an
in-house Slack host. Each step prints one JSON line: what the client
library returned or raised, as an application would see it.

usage: slack_client.py PROXY_URL CA_FILE BASE_URL
"""

import json
import ssl
import sys
import urllib.error
import warnings

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

PROXY, CA, BASE = sys.argv[1], sys.argv[2], sys.argv[3]
CARDS_CSV = (
    "name,card,expiry\n"
    "Ada Lovelace,4556737586899855,12/29\n"
    "Alan Turing,4916338506082832,01/30\n"
)
warnings.simplefilter("ignore")
client = WebClient(
    token="xoxb-not-a-real-token",
    base_url=BASE,
    proxy=PROXY,
    ssl=ssl.create_default_context(cafile=CA),
    timeout=20,
)


def step(name, call):
    out = {"step": name}
    try:
        resp = call()
        out.update(ok=True, status=resp.status_code, data=resp.data)
    except SlackApiError as e:
        out.update(
            ok=False,
            kind="SlackApiError",
            status=e.response.status_code,
            data=e.response.data,
            message=str(e),
        )
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace")
        try:
            data = json.loads(body)
        except ValueError:
            data = body
        out.update(ok=False, kind="HTTPError", status=e.code, data=data)
    except Exception as e:  # anything else is a client that could not parse the block
        out.update(ok=False, kind=type(e).__name__, message=str(e))
    print(json.dumps(out), flush=True)


step("plain", lambda: client.chat_postMessage(channel="C042", text="lunch at noon?"))
step(
    "card",
    lambda: client.chat_postMessage(
        channel="C042", text="my card is 4556737586899855, thanks"
    ),
)
step(
    "aws",
    lambda: client.chat_postMessage(
        channel="C043",
        text="deploy with key",
        blocks=[
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "aws_access_key_id = AKIAP8IX4EA4Q9OM4894",
                },
            }
        ],
    ),
)
step(
    "upload_v1",
    lambda: client.files_upload(
        file=CARDS_CSV.encode(),
        filename="cards.csv",
        channels="C044",
        initial_comment="the list you asked for",
    ),
)
step(
    "upload_v2",
    lambda: client.files_upload_v2(
        content=CARDS_CSV,
        filename="cards-v2.csv",
        channel="C045",
        initial_comment="again",
    ),
)
step(
    "upload_clean",
    lambda: client.files_upload(
        file=b"agenda: roadmap, hiring\n",
        filename="agenda.txt",
        channels="C046",
        initial_comment="agenda attached",
    ),
)
# A method no extractor knows, with a binary-typed file part: the
# whole-body scan skips such parts, the upload scan reads them.
step(
    "upload_unknown_method",
    lambda: client.api_call(
        "canvases.importFile",
        files={"file": CARDS_CSV.encode()},
        data={"channel_id": "C047"},
    ),
)
