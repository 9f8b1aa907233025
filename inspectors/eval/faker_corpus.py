#!/usr/bin/env python3
"""A DLP evaluation whose values and formats nobody here wrote: card numbers,
IBANs, SSNs, ABA routing numbers, phone numbers, e-mail addresses and the
look-alike negatives (expiry dates, CVVs, EAN/ISBN codes, epoch times, IP
addresses, UUIDs, hashes, safe example addresses) all come from Faker's
providers, in 20 locales, seeded. Only the short sentences around them are
ours. Labels follow POLICY.md; the label of a value is the Faker provider
that made it.

    pip install Faker==40.63.0
    python3 inspectors/eval/faker_corpus.py > inspectors/eval/faker.jsonl
    python3 inspectors/eval/faker_corpus.py heldout > inspectors/eval/faker_heldout.jsonl

The held-out part (another seed) is scored but its mistakes are not shown
while tuning (POLICY.md).
"""
import datetime
import json
import random
import re

from faker import Faker

import sys

HELDOUT = sys.argv[1:] == ["heldout"]
SEED = 90_417 if HELDOUT else 40_063
PART = "faker_heldout" if HELDOUT else "faker"
random.seed(SEED)
Faker.seed(SEED)

# Locales whose country is in the phone-number policy, and which make
# their own country's IBANs.
PHONE_LOCALES = ["en_US", "en_CA", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL",
                 "nl_BE", "de_CH", "de_AT", "pt_PT", "pt_BR", "es_MX", "ja_JP", "en_IN",
                 "en_AU", "sv_SE", "pl_PL", "en_IE", "ko_KR", "da_DK", "no_NO"]
IBAN_LOCALES = ["de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "nl_BE", "de_CH", "de_AT",
                "pt_PT", "pt_BR", "pl_PL", "en_IE", "da_DK", "no_NO", "en_GB", "fr_CH"]
CARD_TYPES = ["visa16", "visa13", "visa19", "mastercard", "amex", "discover", "jcb15",
              "jcb16", "diners", "maestro"]
fakers = {loc: Faker(loc) for loc in sorted(set(PHONE_LOCALES + IBAN_LOCALES + ["en_US"]))}
us = fakers["en_US"]

records = []


def add(kind, template, value=None, label=None):
    """A record from `template` with `{v}` replaced by `value`, labelled
    `label` over the value (None: a negative)."""
    if value is None:
        text = template
        labels = []
    else:
        pre, post = template.split("{v}")
        text = pre + value + post
        labels = []
        if label:
            start = len(pre.encode())
            labels = [{"type": label, "start": start, "end": start + len(value.encode())}]
    records.append({"id": "%s-%s-%05d" % (PART, kind, len(records)), "part": PART,
                    "text": text, "labels": labels})


def group(s, sizes):
    out, i = [], 0
    for n in sizes:
        out.append(s[i:i + n])
        i += n
    if i < len(s):
        out.append(s[i:])
    return out


CARD_T = ["card number {v} exp next year", "pls charge {v} for the order", "my visa is {v}",
          "Kartennummer: {v}", "numéro de carte {v}", "use this card: {v} thanks!",
          "tarjeta {v} por favor", "cc={v}"]
for i in range(600):
    t = random.choice(CARD_TYPES)
    pan = us.credit_card_number(card_type=t)
    style = i % 3
    if style == 1:
        sizes = [4, 6, 5] if len(pan) == 15 else [4, 4, 4, 4, 3]
        pan = random.choice([" ", "-"]).join(p for p in group(pan, sizes) if p)
    add("card", random.choice(CARD_T), pan, "payment-card")

IBAN_T = ["IBAN: {v}", "please wire it to {v}", "Überweisung bitte auf {v}",
          "mon IBAN est {v}", "rekeningnummer {v}", "bank account {v} (salary)"]
for i in range(500):
    loc = random.choice(IBAN_LOCALES)
    iban = fakers[loc].iban()
    if i % 2:
        iban = " ".join(group(iban, [4] * 9)).strip()
    add("iban", random.choice(IBAN_T), iban, "iban")

SSN_T = ["my SSN is {v}", "SSN: {v}", "social security number {v}",
         "here's the employee's social security no. {v}", '{"ssn": "{v}"}']
for i in range(300):
    ssn = us.ssn()
    if i % 3 == 2:
        ssn = ssn.replace("-", "")
    add("ssn", random.choice(SSN_T), ssn, "us-ssn")

ABA_T = ["routing number {v}", "ABA {v}, account 000123", "wire: routing # {v}"]
for i in range(200):
    add("aba", random.choice(ABA_T), us.aba(), "us-bank-routing")

PHONE_T = ["call me at {v}", "my number is {v}", "Tel.: {v}", "ring me on {v} tonight",
           "Rufnummer {v}", "mon portable : {v}", "WhatsApp me: {v}", "phone {v}"]
for i in range(800):
    loc = PHONE_LOCALES[i % len(PHONE_LOCALES)]
    num = fakers[loc].phone_number()
    if re.search(r"x|ext", num, re.I):
        continue
    add("phone", random.choice(PHONE_T), num, "phone-number")

EMAIL_T = ["mail me at {v}", "cc {v} on that", "E-Mail: {v}", "contact: {v}"]
for i in range(300):
    loc = random.choice(PHONE_LOCALES)
    add("email", random.choice(EMAIL_T), fakers[loc].free_email(), "email-address")

# Negatives: values that look like the above and are not, by provider.
# Time-based providers get fixed bounds, so the corpus does not depend on
# the day it is made.
T0 = datetime.datetime(2020, 1, 1)
T1 = datetime.datetime(2030, 1, 1)
NEG = [
    ("expire", lambda: us.credit_card_expire(start=T0, end=T1), ["expires {v}", "exp {v}"]),
    ("cvv", lambda: us.credit_card_security_code(), ["cvv {v}", "security code {v}"]),
    ("ean", lambda: us.ean13(), ["EAN {v}", "barcode {v}"]),
    ("isbn", lambda: us.isbn13(), ["ISBN {v}", "the book is {v}"]),
    ("epoch", lambda: str(int(us.unix_time(start_datetime=T0, end_datetime=T1))), ["ts={v}", "created_at: {v}"]),
    ("ipv4", lambda: us.ipv4(), ["server {v} is down", "ping {v}"]),
    ("uuid", lambda: us.uuid4(), ["request id {v}", "trace {v}"]),
    ("sha1", lambda: us.sha1(), ["commit {v}", "fixed in {v}"]),
    ("safe-email", lambda: us.safe_email(), ["e.g. {v}", "send it to {v}"]),
    ("aba-no-context", lambda: us.aba(), ["item {v} shipped", "ticket {v}"]),
    ("date", lambda: us.date(end_datetime=T1), ["due {v}", "on {v}"]),
    ("price", lambda: us.pricetag(), ["costs {v}", "total {v}"]),
    ("zip", lambda: us.zipcode_plus4(), ["ZIP {v}", "zip code {v}"]),
    ("bban-order", lambda: us.numerify("##########"), ["order #{v}", "invoice {v}"]),
]
for i in range(1400):
    kind, make, tpls = NEG[i % len(NEG)]
    add("neg-" + kind, random.choice(tpls), make(), None)

# Benign chat in several languages.
for i in range(900):
    loc = random.choice(["en_US", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "ja_JP", "pt_BR", "pl_PL"])
    add("chat", fakers[loc].sentence(nb_words=random.randint(5, 18)))

for r in records:
    print(json.dumps(r, ensure_ascii=False))
