#!/usr/bin/env python3
"""Generate the labelled DLP corpus: chat messages with embedded positives
(varied formatting), hard negatives and benign chat.

Each output line is {"id": n, "text": ..., "expect": [rule ids]} where
`expect` lists the high/critical rules that must fire on the text; any
other high/critical finding is a false positive.

    pip install faker
    python3 dlp-rules/corpus/generate.py --seed 4 --n 3000 > dlp-rules/corpus/corpus.jsonl

Deterministic for a given seed and Faker version; the committed corpus.jsonl
is what the test suite reads.
"""
import argparse
import json
import random
import string

from faker import Faker

ALNUM = string.ascii_letters + string.digits


def luhn_digit(s):
    total = 0
    for i, ch in enumerate(reversed(s + "0")):
        x = int(ch)
        if i % 2:
            x *= 2
            if x > 9:
                x -= 9
        total += x
    return str((10 - total % 10) % 10)


def luhn_ok(s):
    return luhn_digit(s[:-1]) == s[-1]


def group(digits, sizes, sep):
    out, i = [], 0
    for n in sizes:
        out.append(digits[i:i + n])
        i += n
    if i < len(digits):
        out.append(digits[i:])
    return sep.join(x for x in out if x)


def fmt_card(num, rng):
    sep = rng.choice(["", " ", "-", " "])
    if len(num) == 15:
        return group(num, [4, 6, 5], sep) if sep else num
    return group(num, [4, 4, 4, 4, 3], sep) if sep else num


def aba_ok(d):
    w = [3, 7, 1] * 3
    return sum(int(c) * w[i] for i, c in enumerate(d)) % 10 == 0


def rand_aba(rng):
    while True:
        prefix = rng.choice(["0%d" % rng.randint(1, 9), "1%d" % rng.randint(0, 2),
                             str(rng.randint(21, 32)), str(rng.randint(61, 72))])
        d = prefix + "".join(rng.choice(string.digits) for _ in range(6))
        for c in string.digits:
            if aba_ok(d + c):
                return d + c


CHAT_OPENERS = ["hey", "hi", "ok so", "fyi", "quick one:", "sorry,", "as discussed", "re your question,", "", "", "lol"]
CHAT_CLOSERS = ["thanks!", "cheers", "let me know", "", "", "ty", "see you at 3pm", "ping me if anything"]


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        Faker.seed(seed)
        self.fk = Faker("en_US")
        self.fk_ibans = [Faker(loc) for loc in ["de_DE", "en_GB", "fr_FR", "nl_NL", "es_ES", "it_IT", "pl_PL"]]
        for f in self.fk_ibans:
            f.seed_instance(seed)

    def r(self, n, alphabet=ALNUM):
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def chat(self, core):
        rng = self.rng
        parts = [rng.choice(CHAT_OPENERS), core, rng.choice(CHAT_CLOSERS)]
        if rng.random() < 0.3:
            parts.insert(1, self.fk.sentence())
        if rng.random() < 0.3:
            parts.append(self.fk.sentence())
        sep = rng.choice([" ", " ", "\n", "  "])
        text = sep.join(p for p in parts if p)
        return text

    # ---- positives: (rule, text fragment) -------------------------------
    def card(self):
        kind = self.rng.choice(["visa16", "mastercard", "amex", "discover", "jcb"])
        while True:
            num = self.fk.credit_card_number(card_type=kind)
            # Faker's JCB numbers use the whole 35 prefix; JCB's IIN range is
            # 3528-3589, so outside it the label would be wrong.
            if kind == "jcb" and not 3528 <= int(num[:4]) <= 3589:
                continue
            if num not in TEST_CARDS:
                break
        v = fmt_card(num, self.rng)
        tpl = self.rng.choice(["my card is {}", "card: {}", "{}", "use {} exp 0{}/2{}", "cc {} cvv {}",
                               "visa {}", "pay with {} please", "number `{}`", "({})"])
        return "payment-card", tpl.format(v, self.rng.randint(1, 9), self.rng.randint(5, 9), self.rng.randint(100, 999))

    def iban(self):
        v = self.rng.choice(self.fk_ibans).iban()
        if self.rng.random() < 0.5:
            v = " ".join(v[i:i + 4] for i in range(0, len(v), 4))
        if self.rng.random() < 0.2:
            v = v.lower()
        tpl = self.rng.choice(["IBAN {}", "send it to {}", "account: {}", "{}", "bank details {} thanks"])
        return "iban", tpl.format(v)

    def ssn(self):
        while True:
            v = self.fk.ssn()
            d = v.replace("-", "")
            if d not in ("078051120", "219099999", "123456789") and d[3:5] != "00" and d[5:] != "0000":
                break
        if self.rng.random() < 0.3:
            v = v.replace("-", " ")
        tpl = self.rng.choice(["my ssn is {}", "SSN: {}", "social security number {}", "{}", "it's {} for the form",
                               "here you go {}"])
        return "us-ssn", tpl.format(v)

    def routing(self):
        v = rand_aba(self.rng)
        tpl = self.rng.choice(["routing number {}", "ABA {}", "routing: {} account {}", "wire via {} please",
                               "our bank routing # is {}", "RTN {}"])
        return "us-bank-routing", tpl.format(v, self.rng.randint(10 ** 7, 10 ** 10))

    def secret(self):
        rng = self.rng
        kind = rng.choice(["aws", "awss", "gcp", "gh", "gl", "slack", "pk", "jwt", "generic", "azure"])
        if kind == "aws":
            return "aws-access-key-id", rng.choice(["key {}", "AWS_ACCESS_KEY_ID={}", "{}"]).format(
                rng.choice(["AKIA", "ASIA"]) + self.r(16, string.ascii_uppercase + string.digits))
        if kind == "awss":
            return "aws-secret-access-key", rng.choice(["aws_secret_access_key = {}", "AWS_SECRET_ACCESS_KEY: \"{}\""]).format(
                self.r(40, ALNUM + "/+"))
        if kind == "gcp":
            return "gcp-api-key", rng.choice(["maps key {}", "use {} for the API", "{}"]).format("AIza" + self.r(35, ALNUM + "_-"))
        if kind == "gh":
            return "github-token", rng.choice(["token {}", "GH_TOKEN={}", "{}"]).format(rng.choice(["ghp_", "gho_", "ghs_"]) + self.r(36))
        if kind == "gl":
            return "gitlab-token", rng.choice(["CI token glpat-{}", "glpat-{}"]).format(self.r(20, ALNUM + "_-"))
        if kind == "slack":
            return "slack-token", "SLACK_TOKEN=xoxb-%s-%s-%s" % (self.r(12, string.digits), self.r(13, string.digits), self.r(24))
        if kind == "pk":
            return "private-key-block", rng.choice(["-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + self.r(40),
                                                    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE" + self.r(30),
                                                    "-----BEGIN PRIVATE KEY-----"])
        if kind == "jwt":
            import base64
            def b64(s):
                return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")
            tok = b64('{"alg":"HS256","typ":"JWT"}') + "." + b64('{"sub":"%d","name":"%s"}' % (rng.randint(1, 10 ** 6), self.fk.name())) + "." + self.r(43, ALNUM + "_-")
            return "jwt", rng.choice(["Bearer {}", "token={}", "{}"]).format(tok)
        if kind == "azure":
            return "azure-storage-key", "AccountName=x;AccountKey=%s==;EndpointSuffix=core.windows.net" % self.r(86, ALNUM + "+/")
        key = rng.choice(["password", "db password", "secret", "api_key", "client_secret", "access_token"])
        return "generic-secret", rng.choice(["{}: {}", "{}={}", "{} is {}", "{} = \"{}\""]).format(key, self.r(rng.randint(14, 28), ALNUM + "!@#%"))

    def code_name(self):
        w = self.rng.choice(["Project Bluebird", "Nightjar", "Operation Red Kite", "Kestrel Prime", "Project Halcyon", "Moonraker", "Sandpiper"])
        if self.rng.random() < 0.3:
            w = w.upper()
        if self.rng.random() < 0.2:
            w = w.replace("i", "1").replace("o", "0").replace("e", "3")
        tpl = self.rng.choice(["any news on {}?", "{} launch slipped", "the {} deck is ready", "re: {}"])
        return "code-name", tpl.format(w)

    # ---- hard negatives -------------------------------------------------
    def hard_negative(self):
        rng = self.rng
        k = rng.randrange(14)
        if k == 0:  # Luhn-invalid card-like number
            num = self.fk.credit_card_number(card_type=rng.choice(["visa16", "mastercard", "amex"]))
            bad = num[:-1] + str((int(num[-1]) + rng.randint(1, 9)) % 10)
            return "card {}".format(fmt_card(bad, rng))
        if k == 1:  # Luhn-valid order number outside every IIN range
            body = rng.choice(["9", "8", "1"]) + self.r(14, string.digits)
            return "order #{} shipped".format(body + luhn_digit(body))
        if k == 2:  # published test card
            return "use test card {} in staging".format(fmt_card(rng.choice(sorted(TEST_CARDS)), rng))
        if k == 3:  # phone numbers
            return "call me on {} or {}".format(self.fk.phone_number(), Faker("en_GB").phone_number())
        if k == 4:  # invalid SSNs
            return "ticket {}-{:02d}-{:04d}".format(rng.choice(["000", "666", "9%02d" % rng.randint(0, 99)]), rng.randint(1, 99), rng.randint(1, 9999))
        if k == 5:  # nine-digit number, valid ABA but no banking context
            return "reference {} attached".format(rand_aba(rng))
        if k == 6:  # IBAN with a broken checksum
            v = rng.choice(self.fk_ibans).iban()
            return "iban {}".format(v[:2] + "%02d" % ((int(v[2:4]) + 1) % 100) + v[4:])
        if k == 7:  # example keys and placeholders
            return rng.choice(["AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                               "password: changeme", "api_key = your_api_key_here", "token: <redacted>",
                               "set password=xxxxxxxxxxxxxxxx in the config"])
        if k == 8:  # secret-ish words in plain chat
            return rng.choice(["I forgot my password again", "the secret is to add salt", "what's the api key policy?",
                               "our access token expired", "ghp_ tokens are personal"])
        if k == 9:  # code-name-like words
            return rng.choice(["a bluebirds nest", "nightjars at dusk", "red kites overhead", "halcyon days", "sandpipers on the beach"])
        if k == 10:  # dates, times, money, versions
            return "on {} at {} for ${:,}.{:02d} (v{}.{}.{})".format(self.fk.date(), self.fk.time(), rng.randint(1, 10 ** 6), rng.randint(0, 99), rng.randint(0, 9), rng.randint(0, 20), rng.randint(0, 99))
        if k == 11:  # tracking / long ids
            return "tracking {} and {}".format("1Z" + self.r(16, string.ascii_uppercase + string.digits), self.r(20, string.digits))
        if k == 12:  # UUIDs and hashes
            return "build {} commit {}".format(self.fk.uuid4(), self.r(40, "0123456789abcdef"))
        return "meeting id {} {} {}".format(rng.randint(100, 999), rng.randint(1000, 9999), rng.randint(1000, 9999))

    def benign(self):
        rng = self.rng
        pieces = [self.fk.sentence(nb_words=rng.randint(4, 14)) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.2:
            pieces.append("email {} or call {}".format(self.fk.email(), self.fk.phone_number()))
        if rng.random() < 0.1:
            pieces.append("{} from {} says hi".format(self.fk.name(), self.fk.company()))
        return " ".join(pieces)


TEST_CARDS = {
    "4111111111111111", "4242424242424242", "4000056655665556", "4012888888881881",
    "5555555555554444", "5105105105105100", "2223003122003222", "378282246310005",
    "371449635398431", "6011111111111117", "6011000990139424", "3530111333300000",
    "3566002020360505",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    g = Gen(args.seed)
    positives = [g.card, g.card, g.iban, g.ssn, g.routing, g.secret, g.secret, g.code_name]
    for i in range(1, args.n + 1):
        roll = g.rng.random()
        if roll < 0.45:
            expect, frags = set(), []
            for _ in range(1 if g.rng.random() < 0.8 else 2):
                rule, frag = g.rng.choice(positives)()
                expect.add(rule)
                frags.append(frag)
            text = g.chat(" and ".join(frags))
        elif roll < 0.75:
            expect, text = set(), g.chat(g.hard_negative())
        else:
            expect, text = set(), g.chat(g.benign())
        print(json.dumps({"id": i, "text": text, "expect": sorted(expect)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
