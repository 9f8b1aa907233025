#!/usr/bin/env python3
"""Independent DLP evaluation corpus (see POLICY.md next to this file).

Written apart from dlp-rules/corpus/generate.py on purpose: no Faker, no
shared templates. Fake data comes from small hand-made tables for several
locales; messages are chat in six languages, JSON log lines, env files,
Kubernetes manifests, service-account JSON, stack traces, code, CSV, forms.

Every message is {"id", "part", "text", "labels": [{"type", "start", "end"}]}
with UTF-8 byte offsets into text. Labels are what a careful human marks
under POLICY.md; a finding overlapping no label of its type is a false
positive.

Two parts, frozen before any rule tuning:
    python3 inspectors/eval/generate.py --part dev      > inspectors/eval/dev.jsonl
    python3 inspectors/eval/generate.py --part heldout  > inspectors/eval/heldout.jsonl
The parts use different seeds and disjoint halves of every template pool
(dev: even indices, held-out: odd). Stdlib only; deterministic per seed.
"""
import argparse
import base64
import json
import random
import string

B64 = string.ascii_letters + string.digits + "+/"
B64URL = string.ascii_letters + string.digits + "-_"
ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"

SEEDS = {"dev": 20261207, "heldout": 77003119}

# --------------------------------------------------------------------------
# Locale tables
# --------------------------------------------------------------------------
PEOPLE = {
    "en": (["Olivia", "Liam", "Ava", "Noah", "Mia", "Ethan", "Harper", "Mason", "Chloe", "Lucas"],
           ["Walker", "Brooks", "Hayes", "Foster", "Reed", "Coleman", "Price", "Jenkins", "Perry", "Long"]),
    "de": (["Lukas", "Anna", "Jonas", "Leonie", "Felix", "Marie", "Paul", "Lena", "Tobias", "Sophie"],
           ["Schneider", "Fischer", "Weber", "Becker", "Hoffmann", "Schulz", "Koch", "Richter", "Wolf", "Krüger"]),
    "fr": (["Camille", "Hugo", "Léa", "Louis", "Manon", "Arthur", "Chloé", "Jules", "Inès", "Théo"],
           ["Martin", "Bernard", "Dubois", "Durand", "Lefèvre", "Moreau", "Laurent", "Girard", "Roux", "Fournier"]),
    "es": (["Lucía", "Hugo", "Martina", "Mateo", "Sofía", "Leo", "Valeria", "Daniel", "Paula", "Álvaro"],
           ["García", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Ruiz", "Díaz", "Moreno"]),
    "pt": (["João", "Ana", "Pedro", "Beatriz", "Gabriel", "Mariana", "Rafael", "Larissa", "Thiago", "Camila"],
           ["Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes"]),
    "ja": (["翔太", "陽菜", "蓮", "結衣", "大翔", "美咲", "悠真", "葵", "湊", "さくら"],
           ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"]),
}
ROMAJI = ["sato", "suzuki", "takahashi", "tanaka", "ito", "watanabe", "yamamoto", "nakamura"]
DOMAINS = ["northwind-logistics.com", "brightpath.io", "kessler-bau.de", "atelier-morel.fr", "grupo-ibera.es",
           "lojaverde.com.br", "sakura-denki.co.jp", "fjordline.no", "meridianhealth.org", "quantalab.ai",
           "oakridge-capital.com", "posteo.de", "gmail.com", "outlook.com", "yahoo.co.jp", "orange.fr",
           "uol.com.br", "hotmail.es", "protonmail.ch", "acme-widgets.co.uk"]
HOSTS = ["api.brightpath.io", "db-prod-3.internal", "payments.northwind-logistics.com", "10.20.4.17",
         "redis.cache.svc.cluster.local", "auth.quantalab.ai"]


# --------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------
def luhn_complete(body):
    total = 0
    for i, ch in enumerate(reversed(body)):
        x = int(ch)
        if i % 2 == 0:
            x *= 2
            if x > 9:
                x -= 9
        total += x
    return body + str((10 - total % 10) % 10)


def luhn_valid(num):
    return luhn_complete(num[:-1]) == num


def iban_check(country, bban):
    s = bban + country + "00"
    n = int("".join(str(int(c, 36)) for c in s))
    return "%02d" % (98 - n % 97)


def iban_valid(iban):
    s = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in s)) % 97 == 1


def aba_valid(d):
    w = [3, 7, 1] * 3
    return sum(int(c) * w[i] for i, c in enumerate(d)) % 10 == 0


# --------------------------------------------------------------------------
# Published test / documentation values: always negatives (POLICY.md)
# --------------------------------------------------------------------------
TEST_PANS = ["4111111111111111", "4242424242424242", "4012888888881881", "4000056655665556", "5555555555554444",
             "5105105105105100", "2223003122003222", "378282246310005", "371449635398431", "6011111111111117",
             "6011000990139424", "3530111333300000", "3566002020360505", "30569309025904", "38520000023237",
             "6200000000000005", "4000000000000002", "5200828282828210", "6304000000000000"]
DOC_IBANS = ["DE89370400440532013000", "GB82WEST12345698765432", "GB29NWBK60161331926819",
             "FR1420041010050500013M02606", "NL91ABNA0417164300", "ES9121000418450200051332",
             "CH9300762011623852957", "BE68539007547034", "AT611904300234573201", "IT60X0542811101000000123456",
             "PL61109010140000071219812874"]
AWS_DOC_ID = ["AKIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE"]
AWS_DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
JWT_IO = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
          ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
DOC_SSNS = ["078-05-1120", "123-45-6789", "219-09-9999"]


class Doc:
    """A text being built, with labelled spans (character offsets)."""

    def __init__(self):
        self.parts = []
        self.len = 0
        self.labels = []

    def add(self, s):
        self.parts.append(s)
        self.len += len(s)
        return self

    def lab(self, typ, s, lead=""):
        self.add(lead)
        if typ:
            self.labels.append((typ, self.len, self.len + len(s)))
        self.add(s)
        return self

    def text(self):
        return "".join(self.parts)


class Gen:
    def __init__(self, part):
        self.part = part
        self.rng = random.Random(SEEDS[part])

    # -- helpers ---------------------------------------------------------
    def pick(self, pool):
        """A template from this part's half of the pool."""
        half = pool[0::2] if self.part == "dev" else pool[1::2]
        return self.rng.choice(half or pool)

    def any(self, pool):
        return self.rng.choice(pool)

    def s(self, n, alphabet=ALNUM):
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def digits(self, n):
        return "".join(self.rng.choice(string.digits) for _ in range(n))

    def lang(self):
        return self.any(["en", "en", "en", "de", "fr", "es", "pt", "ja"])

    def person(self, lang):
        first, last = PEOPLE[lang]
        if lang == "ja":
            return self.any(last) + self.any(first)
        return self.any(first) + " " + self.any(last)

    # -- values ----------------------------------------------------------
    def card(self):
        brand = self.any(["visa", "visa", "mc", "mc2", "amex", "discover", "jcb", "diners", "unionpay", "maestro"])
        prefix, length = {
            "visa": ("4", 16), "mc": (str(self.rng.randint(51, 55)), 16), "mc2": (str(self.rng.randint(2221, 2720)), 16),
            "amex": (self.any(["34", "37"]), 15), "discover": (self.any(["6011", "65", "644"]), 16),
            "jcb": (str(self.rng.randint(3528, 3589)), 16), "diners": (self.any(["300", "305", "36", "38"]), 14),
            "unionpay": ("62" + self.any(["12", "22", "58", "60"]), self.any([16, 19])),
            "maestro": (self.any(["6759", "5018", "6304"]), self.any([16, 19])),
        }[brand]
        while True:
            num = luhn_complete(prefix + self.digits(length - len(prefix) - 1))
            if num not in TEST_PANS:
                return num

    def fmt_card(self, num, allow_break=True):
        style = self.any(["plain", "space", "space", "dash", "dot", "break"] if allow_break else
                         ["plain", "space", "space", "dash"])
        if len(num) == 15:
            groups = [num[:4], num[4:10], num[10:]]
        elif len(num) == 14:
            groups = [num[:4], num[4:10], num[10:]]
        else:
            groups = [num[i:i + 4] for i in range(0, len(num), 4)]
        if style == "plain":
            return num
        if style == "space":
            return " ".join(groups)
        if style == "dash":
            return "-".join(groups)
        if style == "dot":
            return ".".join(groups)
        mid = len(groups) // 2
        return " ".join(groups[:mid]) + self.any(["\n", "\r\n", " \n"]) + " ".join(groups[mid:])

    IBAN_SPECS = {  # country: BBAN layout (n digits, a upper letters, c alnum)
        "DE": "18n", "GB": "4a14n", "FR": "10n11c2n", "NL": "4a10n", "ES": "20n", "IT": "1a10n12c",
        "BE": "12n", "AT": "16n", "CH": "5n12c", "PL": "24n", "PT": "21n", "IE": "4a14n", "LU": "3n13c",
        "SE": "20n", "DK": "14n", "FI": "14n", "NO": "11n", "CZ": "20n", "HU": "24n", "RO": "4a16c", "GR": "7n16c",
    }

    def bban(self, spec):
        out, num = "", ""
        for ch in spec:
            if ch.isdigit():
                num += ch
                continue
            n, num = int(num), ""
            alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": UPPER_DIGITS}[ch]
            out += self.s(n, alphabet)
        return out

    def iban(self):
        while True:
            cc = self.any(sorted(self.IBAN_SPECS))
            b = self.bban(self.IBAN_SPECS[cc])
            v = cc + iban_check(cc, b) + b
            if v not in DOC_IBANS:
                return v

    def fmt_iban(self, v):
        style = self.any(["group", "group", "group", "compact", "lowergroup"])
        g = " ".join(v[i:i + 4] for i in range(0, len(v), 4))
        return {"group": g, "compact": v, "lowergroup": g.lower()}[style]

    def ssn(self):
        while True:
            area = self.rng.randint(1, 899)
            if area == 666:
                continue
            group, serial = self.rng.randint(1, 99), self.rng.randint(1, 9999)
            v = "%03d-%02d-%04d" % (area, group, serial)
            if v not in DOC_SSNS:
                return v

    def fmt_ssn(self, v):
        return self.any([v, v, v.replace("-", " "), v.replace("-", "")])

    def aba(self):
        while True:
            p = self.any(["0%d" % self.rng.randint(1, 9), "1%d" % self.rng.randint(0, 2),
                          "2%d" % self.rng.randint(1, 9), "3%d" % self.rng.randint(0, 2),
                          "6%d" % self.rng.randint(1, 9), "7%d" % self.rng.randint(0, 2)])
            body = p + self.digits(6)
            for c in string.digits:
                if aba_valid(body + c):
                    return body + c

    def aws_id(self):
        return self.any(["AKIA", "AKIA", "ASIA"]) + self.s(16, string.ascii_uppercase + "234567")

    def aws_secret(self):
        while True:
            v = self.s(40, B64)
            if any(c in v for c in "+/") or self.rng.random() < 0.5:
                return v

    def gh_token(self):
        if self.rng.random() < 0.2:
            return "github_pat_" + self.s(22) + "_" + self.s(59)
        return self.any(["ghp_", "ghp_", "gho_", "ghs_", "ghu_"]) + self.s(36)

    def b64url(self, raw):
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def jwt(self, lang="en"):
        alg = self.any(["HS256", "RS256", "ES256", "RS512"])
        header = {"alg": alg, "typ": "JWT"}
        if alg != "HS256" and self.rng.random() < 0.6:
            header["kid"] = self.s(16, HEX)
        now = 1760000000 + self.rng.randint(0, 30000000)
        payload = {"sub": self.any([self.s(24, HEX), str(self.rng.randint(1000, 99999999)),
                                     "auth0|" + self.s(24, HEX)]),
                   "iat": now, "exp": now + self.any([300, 3600, 86400])}
        if self.rng.random() < 0.5:
            payload["email"] = "%s@%s" % (self.any(ROMAJI), self.any(DOMAINS))
        if self.rng.random() < 0.5:
            payload["scope"] = self.any(["read:messages", "openid profile", "admin", "repo user"])
        sig_len = {"HS256": 43, "RS256": 342, "ES256": 86, "RS512": 342}[alg]
        return (self.b64url(json.dumps(header, separators=(",", ":"))) + "." +
                self.b64url(json.dumps(payload, separators=(",", ":"))) + "." + self.s(sig_len, B64URL))

    def password(self):
        return "".join(self.rng.choice(ALNUM + "!#%&*_-.") for _ in range(self.rng.randint(14, 30)))

    # private keys -----------------------------------------------------------
    def key_block(self, nl="\n"):
        kind = self.any(["rsa", "pkcs8", "openssh", "ec", "enc_pkcs8", "enc_rsa", "pgp"])
        if kind == "rsa":
            head, body = "RSA PRIVATE KEY", "MIIEo" + self.any(["wIBAAKCAQEA", "gIBAAKCAQEA", "QIBAAKCAQEA"])
            n = self.any([1580, 1620, 3180])
        elif kind == "pkcs8":
            head, body, n = "PRIVATE KEY", "MIIEv" + self.any(["QIBADANBgkqhkiG9w0BAQEFAASC", "gIBADANBgkqhkiG9w0BAQEFAASC"]), 1620
        elif kind == "openssh":
            head, body, n = "OPENSSH PRIVATE KEY", "b3BlbnNzaC1rZXktdjEAAAAA", self.any([370, 1800])
        elif kind == "ec":
            head, body, n = "EC PRIVATE KEY", "MHcCAQEEI", 160
        elif kind == "enc_pkcs8":
            head, body, n = "ENCRYPTED PRIVATE KEY", "MIIFHDBOBgkqhkiG9w0BBQ0wQTAp", 1700
        elif kind == "enc_rsa":
            head, body, n = "RSA PRIVATE KEY", "", 1640
        else:
            head, body, n = "PGP PRIVATE KEY BLOCK", "lQOYBF", 900
        body += self.s(n - len(body), B64)
        width = 70 if kind == "openssh" else 64
        lines = [body[i:i + width] for i in range(0, len(body), width)]
        pad = self.any(["", "=", "=="]) if kind not in ("openssh",) else ""
        lines[-1] += pad
        pre = []
        if kind == "enc_rsa":
            pre = ["Proc-Type: 4,ENCRYPTED", "DEK-Info: AES-256-CBC," + self.s(32, "0123456789ABCDEF"), ""]
        if kind == "pgp":
            pre = ["Version: GnuPG v2", ""]
            lines.append("=" + self.s(4, B64))
        out = ["-----BEGIN %s-----" % head] + pre + lines + ["-----END %s-----" % head]
        return nl.join(out)

    def phone(self):
        """(display string, country) in a format people really use."""
        c = self.any(["us", "us", "uk", "de", "fr", "es", "it", "nl", "be", "ch", "at", "pt", "br", "mx", "jp",
                      "in", "au", "se", "pl", "ie", "kr", "sg", "za", "dk", "no", "ca"])
        d = self.digits
        r = self.rng
        intl = r.random() < 0.45
        area_us = self.any(["201", "212", "303", "312", "404", "415", "503", "512", "617", "646", "702", "713",
                            "818", "305", "206", "602", "919", "416", "604", "514"])
        exch = str(r.randint(2, 9)) + d(2)
        forms = {
            "us": ["(%s) %s-%s" % (area_us, exch, d(4)), "%s-%s-%s" % (area_us, exch, d(4)),
                   "%s.%s.%s" % (area_us, exch, d(4)), "+1 %s %s %s" % (area_us, exch, d(4)),
                   "+1 (%s) %s-%s" % (area_us, exch, d(4)), "+1-%s-%s-%s" % (area_us, exch, d(4))],
            "ca": ["(%s) %s-%s" % (self.any(["416", "604", "514", "613"]), exch, d(4)),
                   "+1 %s %s %s" % (self.any(["416", "604", "514", "613"]), exch, d(4))],
            "uk": ["07%s %s" % (self.any(["4", "5", "7", "8", "9"]) + d(2), d(6)),
                   "+44 7%s %s" % (self.any(["4", "5", "7", "8", "9"]) + d(2), d(6)),
                   "020 %s %s" % (self.any(["7", "8"]) + d(3), d(4)), "+44 20 %s %s" % (self.any(["7", "8"]) + d(3), d(4)),
                   "+447%s%s" % (self.any(["4", "5", "7", "8", "9"]) + d(2), d(6))],
            "de": ["0%s %s" % (self.any(["151", "152", "160", "170", "171", "176", "157"]), d(8)),
                   "+49 %s %s" % (self.any(["151", "152", "160", "170", "171", "176"]), d(8)),
                   "+49 30 %s" % d(8), "030 %s %s" % (d(4), d(4)), "089 / %s %s" % (d(3), d(4)),
                   "+49 (0)40 %s" % d(8)],
            "fr": ["0%s %s %s %s %s" % (self.any(["6", "7", "1"]), d(2), d(2), d(2), d(2)),
                   "+33 %s %s %s %s %s" % (self.any(["6", "7", "1"]), d(2), d(2), d(2), d(2)),
                   "0%s.%s.%s.%s.%s" % (self.any(["6", "7"]), d(2), d(2), d(2), d(2)),
                   "+33 (0)%s %s %s %s %s" % (self.any(["6", "1"]), d(2), d(2), d(2), d(2))],
            "es": ["6%s %s %s" % (d(2), d(3), d(3)), "+34 6%s %s %s" % (d(2), d(3), d(3)),
                   "+34 91 %s %s %s" % (d(3), d(2), d(2)), "91 %s %s %s" % (d(3), d(2), d(2))],
            "it": ["3%s %s %s" % (self.any(["33", "38", "47", "49", "20", "40"]), d(3), d(4)),
                   "+39 3%s %s" % (self.any(["33", "38", "47", "49"]), d(7)), "+39 06 %s %s" % (d(4), d(4)),
                   "02 %s %s" % (d(4), d(4))],
            "nl": ["06-%s" % d(8), "+31 6 %s" % d(8), "+31 20 %s %s" % (d(3), d(4)), "020-%s" % d(7),
                   "06 %s %s" % (d(4), d(4))],
            "be": ["+32 4%s %s %s %s" % (self.any(["70", "75", "77", "85", "95"]), d(2), d(2), d(2)),
                   "04%s %s %s %s" % (self.any(["70", "75", "77", "85"]), d(2), d(2), d(2))],
            "ch": ["+41 7%s %s %s %s" % (self.any(["6", "7", "8", "9"]), d(3), d(2), d(2)),
                   "07%s %s %s %s" % (self.any(["6", "7", "8", "9"]), d(3), d(2), d(2)),
                   "044 %s %s %s" % (d(3), d(2), d(2))],
            "at": ["+43 6%s %s" % (self.any(["64", "60", "76", "99"]), d(7)),
                   "06%s %s" % (self.any(["64", "60", "76", "99"]), d(7)), "+43 1 %s" % d(7)],
            "pt": ["+351 9%s %s %s" % (self.any(["1", "2", "3", "6"]) + d(1), d(3), d(3)),
                   "9%s %s %s" % (self.any(["1", "2", "3", "6"]) + d(1), d(3), d(3))],
            "br": ["+55 %s 9%s-%s" % (self.any(["11", "21", "31", "41", "51", "61"]), d(4), d(4)),
                   "(%s) 9%s-%s" % (self.any(["11", "21", "31", "41", "51", "61"]), d(4), d(4)),
                   "+55 (11) 9%s-%s" % (d(4), d(4))],
            "mx": ["+52 55 %s %s" % (d(4), d(4)), "+52 1 %s %s %s" % (self.any(["33", "81"]), d(4), d(4)),
                   "55 %s %s" % (d(4), d(4))],
            "jp": ["0%s0-%s-%s" % (self.any(["9", "8", "7"]), d(4), d(4)),
                   "+81 %s0-%s-%s" % (self.any(["9", "8", "7"]), d(4), d(4)),
                   "03-%s-%s" % (d(4), d(4)), "06-%s-%s" % (d(4), d(4)), "+81 3-%s-%s" % (d(4), d(4))],
            "in": ["+91 %s %s" % (self.any(["98", "97", "99", "91", "88", "70"]) + d(3), d(5)),
                   "+91-%s%s" % (self.any(["98", "97", "99", "91"]) + d(3), d(5)),
                   "0%s %s" % (self.any(["98", "97", "99"]) + d(3), d(5))],
            "au": ["+61 4%s %s %s" % (d(2), d(3), d(3)), "04%s %s %s" % (d(2), d(3), d(3)),
                   "(02) %s %s" % (self.any(["8", "9"]) + d(3), d(4)), "+61 2 %s %s" % (self.any(["8", "9"]) + d(3), d(4))],
            "se": ["+46 7%s %s %s %s" % (self.any(["0", "2", "3", "6"]), d(3), d(2), d(2)),
                   "07%s-%s %s %s" % (self.any(["0", "2", "3", "6"]), d(3), d(2), d(2)),
                   "08-%s %s %s" % (d(3), d(2), d(2))],
            "pl": ["+48 %s %s %s" % (self.any(["5", "6", "7", "8"]) + d(2), d(3), d(3)),
                   "%s %s %s" % (self.any(["50", "51", "53", "60", "66", "69", "72", "78", "79", "88"]) + d(1), d(3), d(3))],
            "ie": ["+353 8%s %s %s" % (self.any(["3", "5", "6", "7", "9"]), d(3), d(4)),
                   "08%s %s %s" % (self.any(["3", "5", "6", "7", "9"]), d(3), d(4)), "+353 1 %s %s" % (d(3), d(4))],
            "kr": ["+82 10-%s-%s" % (d(4), d(4)), "010-%s-%s" % (d(4), d(4)), "02-%s-%s" % (d(4), d(4))],
            "sg": ["+65 %s %s" % (self.any(["8", "9", "6"]) + d(3), d(4)), "+65 %s%s" % (self.any(["8", "9"]) + d(3), d(4))],
            "za": ["+27 %s %s %s" % (self.any(["82", "83", "72", "71", "84"]), d(3), d(4)),
                   "0%s %s %s" % (self.any(["82", "83", "72", "71", "84"]), d(3), d(4)), "+27 21 %s %s" % (d(3), d(4))],
            "dk": ["+45 %s %s %s %s" % (self.any(["20", "21", "22", "30", "31", "40", "42", "50", "60"]), d(2), d(2), d(2))],
            "no": ["+47 %s %s %s" % (self.any(["4", "9"]) + d(2), d(2), d(3)), "+47 %s%s" % (self.any(["4", "9"]) + d(2), d(5))],
        }[c]
        intl_forms = [f for f in forms if f.startswith("+")]
        nat_forms = [f for f in forms if not f.startswith("+")]
        if intl and intl_forms:
            return self.any(intl_forms), c
        if nat_forms:
            return self.any(nat_forms), c
        return self.any(intl_forms), c

    def email(self, lang):
        first, last = PEOPLE["en" if lang == "ja" else lang]
        fn = self.any(first).lower()
        ln = self.any(last).lower()
        fold = str.maketrans("éèêëáàâäíìóòôöúùüçñãõ", "eeeeaaaaiioooouuucnao")
        fn, ln = fn.translate(fold), ln.translate(fold)
        if lang == "ja":
            fn, ln = self.any(ROMAJI), self.any(ROMAJI)
        local = self.any(["%s.%s" % (fn, ln), "%s%s" % (fn[0], ln), "%s_%s%d" % (fn, ln, self.rng.randint(1, 99)),
                          "%s+%s" % (fn, self.any(["news", "dev", "shop"])), "%s.%s" % (ln, fn)])
        return "%s@%s" % (local, self.any(DOMAINS))


# --------------------------------------------------------------------------
# Chat phrasing per language: {v} is the value
# --------------------------------------------------------------------------
CHAT = {
    "card": {
        "en": ["can you book it on my card {v}, exp {exp}", "visa ending... actually here's all of it: {v}",
               "corporate amex {v} cvc {cvv}", "Card number: {v}\nExpiry: {exp}", "pls charge {v} for the renewal",
               "my new debit card is {v}", "use this one -> {v} (exp {exp})", "cc# {v}"],
        "de": ["Kannst du es auf meine Karte buchen? {v}, gültig bis {exp}", "Kreditkartennummer: {v}",
               "hier die Firmenkarte {v} Prüfziffer {cvv}", "Kartennr. {v} bitte nicht weitergeben"],
        "fr": ["tu peux payer avec ma carte {v} exp {exp}", "numéro de carte bancaire : {v}",
               "voici la carte de la boîte {v}, cryptogramme {cvv}", "ma CB: {v}"],
        "es": ["te paso la tarjeta {v} caduca {exp}", "número de tarjeta: {v}", "paga con la visa {v} por favor",
               "mi tarjeta de crédito es {v}, CVV {cvv}"],
        "pt": ["pode usar meu cartão {v} validade {exp}", "número do cartão: {v}", "cartão de crédito {v} cvv {cvv}",
               "passa no cartão {v}"],
        "ja": ["カード番号は{v}です。有効期限{exp}", "クレジットカード: {v}", "このカードで払ってください {v}", "カード {v} セキュリティコード{cvv}"],
    },
    "iban": {
        "en": ["please wire the deposit to {v}", "IBAN: {v} (account holder {name})", "our bank details: {v}",
               "send the refund to {v} thanks"],
        "de": ["Bitte überweise an {v}", "IBAN {v}, Kontoinhaber {name}", "meine Bankverbindung: {v}",
               "Kontonummer (IBAN): {v}"],
        "fr": ["virement sur le compte {v}", "mon IBAN : {v}", "RIB : {v} au nom de {name}", "coordonnées bancaires {v}"],
        "es": ["haz la transferencia a {v}", "IBAN: {v} titular {name}", "mi cuenta es {v}", "ingresa en {v}"],
        "pt": ["faz a transferência para o IBAN {v}", "o meu NIB/IBAN é {v}", "conta {v} em nome de {name}",
               "IBAN {v}"],
        "ja": ["振込先IBAN: {v}", "海外送金はこちらへ {v}", "IBANは{v}です", "口座 {v}"],
    },
    "ssn": {
        "en": ["my SSN is {v}", "Social Security Number: {v}", "ssn {v} for the background check",
               "for the W-4 form, SS# {v}", "SSN - {v}", "her social is {v}", "taxpayer id (SSN) {v}",
               "employee ssn: {v}"],
        "es": ["mi número de seguro social es {v}", "SSN: {v} para la solicitud", "seguro social {v}", "número SSN {v}"],
        "pt": ["meu SSN é {v}", "número do seguro social americano: {v}"],
        "de": ["US-Sozialversicherungsnummer (SSN): {v}", "seine SSN lautet {v}"],
        "fr": ["numéro de sécurité sociale américain (SSN) : {v}", "SSN {v}"],
        "ja": ["米国社会保障番号(SSN): {v}", "SSNは{v}です"],
    },
    "aba": {
        "en": ["routing number {v}", "ABA {v}, account {acct}", "Routing #: {v}\nAccount #: {acct}",
               "use routing {v} for the ACH", "bank routing no. {v}", "RTN: {v}", "wire: ABA routing {v} acct {acct}",
               "direct deposit routing number is {v}"],
        "es": ["número de ruta (routing) {v}, cuenta {acct}", "ABA {v} para la transferencia"],
        "pt": ["routing number do banco: {v}", "ABA {v} conta {acct}"],
        "de": ["ABA-Routing-Nummer {v}, Konto {acct}", "Routing {v} (US-Bank)"],
        "fr": ["numéro de routage ABA {v}", "routing number {v} compte {acct}"],
        "ja": ["ABAルーティング番号 {v}", "routing number: {v}"],
    },
    "phone": {
        "en": ["call me at {v}", "my cell is {v}", "you can reach {name} on {v}", "Phone: {v}", "text me {v} when you land",
               "whatsapp {v}", "mobile {v}", "tel. {v}", "new number: {v}", "ring the front desk on {v}"],
        "de": ["ruf mich unter {v} an", "meine Handynummer: {v}", "Tel.: {v}", "erreichbar unter {v}",
               "Mobil {v}", "Telefon {v} (ab 9 Uhr)"],
        "fr": ["appelle-moi au {v}", "mon portable : {v}", "Tél : {v}", "tu peux joindre {name} au {v}",
               "numéro de téléphone {v}", "rappelle au {v} stp"],
        "es": ["llámame al {v}", "mi móvil es {v}", "Tel: {v}", "puedes llamar a {name} al {v}", "teléfono {v}",
               "whatsapp: {v}"],
        "pt": ["me liga no {v}", "meu celular: {v}", "telefone {v}", "contato do {name}: {v}", "tel: {v}",
               "zap {v}"],
        "ja": ["電話番号は{v}です", "携帯: {v}", "TEL {v}", "{name}さんの連絡先 {v}", "こちらまでお電話ください {v}",
               "電話 {v}"],
    },
    "email": {
        "en": ["send it to {v}", "email: {v}", "cc {v} on that please", "{name} <{v}>", "reach out to {v}",
               "her address is {v}"],
        "de": ["schick es an {v}", "E-Mail: {v}", "bitte {v} in CC setzen", "Mail an {v}"],
        "fr": ["envoie-le à {v}", "mon mail : {v}", "adresse e-mail {v}", "écris à {v}"],
        "es": ["mándalo a {v}", "correo: {v}", "mi email es {v}", "escribe a {v}"],
        "pt": ["manda pra {v}", "e-mail: {v}", "meu email é {v}", "escreve para {v}"],
        "ja": ["メールは{v}まで", "連絡先メール: {v}", "{v} に送ってください", "メールアドレス {v}"],
    },
    "secret": {
        "en": ["here's the key: {v}", "the token is {v} - don't share", "new creds {v}", "use {v}", "paste: {v}",
               "rotated it, new one {v}"],
        "de": ["hier der Schlüssel: {v}", "Token: {v} bitte nicht weitergeben", "neuer Zugang {v}"],
        "fr": ["voici la clé : {v}", "le jeton {v}", "nouveau token {v}"],
        "es": ["aquí está la clave: {v}", "el token es {v}", "usa {v}"],
        "pt": ["segue a chave: {v}", "o token é {v}", "usa esse {v}"],
        "ja": ["キーはこちら: {v}", "トークン {v} 共有しないで", "新しいキー {v}"],
    },
    "password": {
        "en": ["the wifi password is {v}", "password: {v}", "db pass = {v}", "login admin / password {v}"],
        "de": ["Passwort: {v}", "das Kennwort ist {v}", "WLAN-Passwort {v}"],
        "fr": ["mot de passe : {v}", "le mdp c'est {v}", "password {v}"],
        "es": ["contraseña: {v}", "la clave del wifi es {v}", "password: {v}"],
        "pt": ["senha: {v}", "a senha do banco é {v}", "password {v}"],
        "ja": ["パスワード: {v}", "パスワードは{v}です", "password: {v}"],
    },
}

OPEN = {
    "en": ["hey", "hi team,", "quick q:", "", "", "ok", "fyi", "@channel", "sorry for the delay,", "morning!"],
    "de": ["Hallo", "Hi zusammen,", "kurze Frage:", "", "Moin,", "sorry,"],
    "fr": ["Salut", "Bonjour à tous,", "petite question :", "", "coucou", "désolé,"],
    "es": ["Hola", "buenas,", "una pregunta:", "", "oye,", "perdón,"],
    "pt": ["Oi", "bom dia pessoal,", "rapidinho:", "", "opa,", "desculpa,"],
    "ja": ["お疲れ様です。", "こんにちは、", "", "すみません、", "確認です。"],
}
CLOSE = {
    "en": ["thanks!", "ty", "", "", "cheers", "lmk", "see you at the 10:30 standup", "👍"],
    "de": ["danke!", "", "Gruß", "bis später", "LG"],
    "fr": ["merci !", "", "à plus", "bonne journée", "bises"],
    "es": ["gracias!", "", "saludos", "un abrazo", "nos vemos"],
    "pt": ["valeu!", "", "obrigado", "abs", "até mais"],
    "ja": ["よろしくお願いします。", "", "ありがとうございます！", "以上です。"],
}
BENIGN = {
    "en": ["the release train leaves on 2026-12-09 at 14:00 UTC", "we hit 1,284,552 requests yesterday, p99 was 412ms",
           "upgrade to v3.14.1592 fixed it", "room 4.021 is booked until 17:45", "budget line 7 is $48,250.00",
           "build #88213 passed, coverage 87.4%", "I'll be out from 12/22 to 01/03", "see PR 4471 and issue 9021",
           "the invoice INV-2026-004518 is paid", "order #114-8823310-4471902 arrived damaged",
           "epoch 1765094400 is when the cert rotates", "our Q3 NPS went from 41 to 56", "lunch at 12:30?",
           "ticket SUP-220931 is closed", "kernel 6.8.0-49-generic on all nodes", "port 5432 is open on 10.0.12.4",
           "the parcel weighs 2.45 kg, tracking 1Z4W9R070312345678", "isbn 978-0-13-468599-1 is the book",
           "card expires 09/28 and cvv is on the back, don't send it here", "meeting id 845 2931 0457 passcode 118833",
           "uuid 3f2b8c1e-9a4d-4e7b-b1c2-7d8e9f0a1b2c", "ts=1765101234567 took 1827 ms", "call went well, send notes"],
    "de": ["Termin am 09.12.2026 um 14:30 Uhr", "Rechnung Nr. 2026-10-0345 ist bezahlt", "Version 4.2.18 ist ausgerollt",
           "Bestellnummer 302-5417789-2213949 kam heute", "Raum 3.114, Etage 3", "Umsatz 1.234.567,89 € im Q3",
           "PLZ 80331 München", "Ticket #482193 erledigt", "Kaffee um 15 Uhr?"],
    "fr": ["réunion le 09/12/2026 à 10h30", "facture n° FA-2026-00912 réglée", "version 12.0.3 déployée",
           "commande 4012-7781-22 livrée", "chiffre d'affaires 2 345 678,90 €", "salle B-204 réservée",
           "code postal 75011", "on déjeune à 12h15 ?"],
    "es": ["reunión el 09/12/2026 a las 16:00", "factura 2026/000877 pagada", "la versión 2.11.4 ya está",
           "pedido nº 5521-0098-77 enviado", "total 12.450,75 €", "sala 2-17 libre", "CP 28013 Madrid",
           "¿comemos a las 14:00?"],
    "pt": ["reunião dia 09/12/2026 às 15h", "nota fiscal 000.123.456 emitida", "versão 5.3.21 no ar",
           "pedido 882341-7 entregue", "total R$ 12.345,67", "CEP 01310-100", "sala 1203 reservada",
           "bora almoçar 12h30?"],
    "ja": ["会議は2026年12月9日 14:00からです", "請求書番号 INV-20261207-0042", "バージョン3.2.1にアップデートしました",
           "注文番号 250-1234567-8901234", "会議室は12階です", "合計 ¥1,234,500", "郵便番号 150-0002", "ランチ12時半でどう？"],
}


class Corpus:
    def __init__(self, part, n):
        self.g = Gen(part)
        self.part = part
        self.n = n

    # -- assembling a chat message ------------------------------------------
    def chat(self, lang, kind, value, typ, extra=None):
        g = self.g
        tpl = g.pick(CHAT[kind][lang] if lang in CHAT[kind] else CHAT[kind]["en"])
        fill = {"exp": "%02d/%02d" % (g.rng.randint(1, 12), g.rng.randint(26, 31)), "cvv": g.digits(3),
                "name": g.person(lang), "acct": g.digits(g.rng.randint(8, 12))}
        if extra:
            fill.update(extra)
        before, after = tpl.split("{v}")
        d = Doc()
        opener = g.any(OPEN[lang])
        if opener:
            d.add(opener + g.any([" ", "\n", " "]))
        if g.rng.random() < 0.3:
            d.add(g.any(BENIGN[lang]) + g.any([". ", "\n", " - "]))
        d.add(before.format(**fill))
        d.lab(typ, value)
        d.add(after.format(**fill))
        closer = g.any(CLOSE[lang])
        if closer:
            d.add(g.any([" ", "\n", " "]) + closer)
        return d

    def benign(self):
        g = self.g
        lang = g.lang()
        d = Doc()
        k = g.rng.randint(1, 3)
        d.add(g.any(OPEN[lang]) + " " if g.rng.random() < 0.5 else "")
        d.add(g.any([". ", "\n", " "]).join(g.any(BENIGN[lang]) for _ in range(k)))
        return d

    # -- structured formats --------------------------------------------------
    def json_log(self, fields):
        """fields: list of (key, value, label-type or None)."""
        g = self.g
        d = Doc()
        head = [("ts", "2026-12-%02dT%02d:%02d:%02d.%03dZ" % (g.rng.randint(1, 28), g.rng.randint(0, 23),
                                                            g.rng.randint(0, 59), g.rng.randint(0, 59),
                                                            g.rng.randint(0, 999)), None),
                ("level", g.any(["info", "debug", "warn", "error"]), None),
                ("svc", g.any(["billing", "auth", "checkout", "notifier", "crm-sync"]), None)]
        d.add("{")
        items = head + fields + [("req_id", g.s(12, HEX), None)]
        for i, (k, v, t) in enumerate(items):
            if i:
                d.add(",")
            d.add('"%s":' % k)
            if isinstance(v, int):
                d.add(str(v))
            else:
                d.add('"')
                d.lab(t, v)
                d.add('"')
        d.add("}")
        return d

    def env_file(self, entries):
        g = self.g
        d = Doc()
        filler = [("NODE_ENV", "production"), ("LOG_LEVEL", "info"), ("PORT", str(g.rng.randint(3000, 9000))),
                  ("DATABASE_HOST", g.any(HOSTS)), ("FEATURE_FLAGS", "checkout_v2,new_search"),
                  ("TZ", "Europe/Berlin"), ("REDIS_URL", "redis://redis:6379/0")]
        lines = [(k, v, None) for k, v in g.rng.sample(filler, g.rng.randint(1, 4))]
        for e in entries:
            lines.insert(g.rng.randint(0, len(lines)), e)
        if g.rng.random() < 0.5:
            d.add("# %s\n" % g.any([".env.production", "copied from the vault, do not commit", "staging config"]))
        for k, v, t in lines:
            q = g.any(["", "", '"']) if t else ""
            d.add("%s=%s" % (k, q))
            d.lab(t, v)
            d.add(q + "\n")
        return d

    def k8s_secret(self, entries):
        g = self.g
        d = Doc()
        d.add("apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\ntype: Opaque\nstringData:\n" % (
            g.any(["app-secrets", "billing-env", "db-credentials", "worker-config"]), g.any(["prod", "default", "payments"])))
        for k, v, t in entries:
            q = g.any(['"', "", "'"])
            d.add("  %s: %s" % (k, q))
            d.lab(t, v)
            d.add(q + "\n")
        return d

    def code(self, lang_kind, var, value, typ):
        g = self.g
        d = Doc()
        if lang_kind == "py":
            d.add("import boto3\n\n" if "aws" in var.lower() else "import os\n\n")
            d.add('%s = "' % var)
            d.lab(typ, value)
            d.add('"\nclient = make_client(%s)\n' % var)
        elif lang_kind == "js":
            d.add("const config = {\n  region: 'eu-west-1',\n  %s: '" % var)
            d.lab(typ, value)
            d.add("',\n};\nmodule.exports = config;\n")
        elif lang_kind == "go":
            d.add('package main\n\nconst %s = "' % var)
            d.lab(typ, value)
            d.add('"\n\nfunc main() { run(%s) }\n' % var)
        elif lang_kind == "java":
            d.add('private static final String %s = "' % var.upper())
            d.lab(typ, value)
            d.add('";\n')
        else:  # shell
            d.add("export %s='" % var.upper())
            d.lab(typ, value)
            d.add("'\n./deploy.sh --env prod\n")
        if g.rng.random() < 0.5:
            d.parts.insert(0, "```\n")
            d.labels = [(t, s + 4, e + 4) for t, s, e in d.labels]
            d.len += 4
            d.add("```")
        return d

    def stack_trace(self, value, typ, kind):
        g = self.g
        d = Doc()
        if kind == "py":
            d.add("Traceback (most recent call last):\n  File \"/srv/app/db.py\", line %d, in connect\n"
                  "    conn = psycopg2.connect(dsn)\npsycopg2.OperationalError: connection failed for dsn "
                  % g.rng.randint(20, 400))
            d.add("'host=%s user=app password=" % g.any(HOSTS))
            d.lab(typ, value)
            d.add(" dbname=orders'\n")
        else:
            d.add("Exception in thread \"main\" java.lang.IllegalStateException: auth failed, token=")
            d.lab(typ, value)
            d.add("\n\tat com.acme.billing.Client.call(Client.java:%d)\n\tat com.acme.billing.Main.main(Main.java:%d)\n"
                  % (g.rng.randint(30, 300), g.rng.randint(10, 90)))
        return d

    # -- positives per type ----------------------------------------------------
    def pos_card(self):
        g = self.g
        num = g.card()
        r = g.rng.random()
        if r < 0.65:
            lang = g.lang()
            return self.chat(lang, "card", g.fmt_card(num), "payment-card")
        if r < 0.8:
            return self.json_log([("event", "payment_failed", None), ("card_number", g.fmt_card(num, False), "payment-card"),
                                  ("amount", g.rng.randint(100, 99999), None)])
        if r < 0.9:
            d = Doc()
            d.add("name,card,exp\n%s," % g.person("en"))
            d.lab("payment-card", num)
            d.add(",%02d/%02d\n" % (g.rng.randint(1, 12), g.rng.randint(26, 31)))
            return d
        d = Doc()
        d.add(g.pick(["Cardholder: %s\nPAN: " % g.person("en"), "Nome no cartão: %s\nNúmero: " % g.person("pt"),
                      "Titular: %s\nTarjeta: " % g.person("es"), "Karteninhaber: %s\nKarte: " % g.person("de")]))
        d.lab("payment-card", g.fmt_card(num))
        d.add("\n")
        return d

    def pos_iban(self):
        g = self.g
        v = g.fmt_iban(g.iban())
        if g.rng.random() < 0.75:
            return self.chat(g.lang(), "iban", v, "iban")
        if g.rng.random() < 0.5:
            return self.json_log([("action", "payout.created", None), ("iban", v.replace(" ", ""), "iban"),
                                  ("currency", "EUR", None)])
        d = Doc()
        d.add(g.pick(["Beneficiary: %s\nIBAN: " % g.person("en"), "Empfänger: %s\nIBAN: " % g.person("de"),
                      "Bénéficiaire : %s\nIBAN : " % g.person("fr"), "Beneficiario: %s\nIBAN: " % g.person("es")]))
        d.lab("iban", v)
        d.add("\nBIC: %s\n" % g.s(8, string.ascii_uppercase))
        return d

    def pos_ssn(self):
        g = self.g
        v = g.fmt_ssn(g.ssn())
        r = g.rng.random()
        if r < 0.7:
            return self.chat(g.any(["en", "en", "en", "es", "pt", "de", "fr", "ja"]), "ssn", v, "us-ssn")
        if r < 0.85:
            return self.json_log([("form", "w4", None), ("ssn", v, "us-ssn"), ("state", g.any(["CA", "TX", "NY"]), None)])
        d = Doc()
        d.add("Employee: %s\nDOB: %02d/%02d/19%02d\nSSN: " % (g.person("en"), g.rng.randint(1, 12), g.rng.randint(1, 28),
                                                              g.rng.randint(50, 99)))
        d.lab("us-ssn", v)
        d.add("\n")
        return d

    def pos_aba(self):
        g = self.g
        v = g.aba()
        if g.rng.random() < 0.75:
            return self.chat(g.any(["en", "en", "en", "es", "pt", "de", "fr", "ja"]), "aba", v, "us-bank-routing")
        return self.json_log([("type", "ach_debit", None), ("routing_number", v, "us-bank-routing"),
                              ("account_last4", g.digits(4), None)])

    def pos_phone(self):
        g = self.g
        v, _ = g.phone()
        r = g.rng.random()
        if r < 0.75:
            return self.chat(g.lang(), "phone", v, "phone-number")
        if r < 0.88:
            return self.json_log([("event", "sms.sent", None), ("to", v, "phone-number")])
        d = Doc()
        d.add(g.pick(["%s\n%s\nTel: " % (g.person("en"), "Account Manager"), "Mit freundlichen Grüßen\n%s\nTel. " % g.person("de"),
                      "Cordialement,\n%s\nTél. : " % g.person("fr"), "Atentamente,\n%s\nMóvil: " % g.person("es")]))
        d.lab("phone-number", v)
        d.add("\n")
        return d

    def pos_email(self):
        g = self.g
        lang = g.lang()
        v = g.email(lang)
        r = g.rng.random()
        if r < 0.7:
            return self.chat(lang, "email", v, "email-address")
        if r < 0.85:
            return self.json_log([("event", "user.invited", None), ("email", v, "email-address")])
        d = Doc()
        d.add("From: ")
        d.lab("email-address", v)
        d.add("\nSubject: %s\n" % g.any(["Re: contract", "invoice", "Fwd: slides"]))
        return d

    def pos_private_key(self):
        g = self.g
        r = g.rng.random()
        if r < 0.3:  # service-account JSON, pretty or one line; escaped newlines
            key = g.key_block("\\n") + "\\n"
            pkid = g.s(40, HEX)
            proj = g.any(["acme-prod-3321", "billing-analytics", "ml-sandbox-77"])
            d = Doc()
            nl = g.any(["\n", ""])
            ind = "  " if nl else " "
            d.add("{" + nl + ind + '"type": "service_account",' + nl + ind + '"project_id": "%s",' % proj + nl + ind)
            d.add('"private_key_id": "')
            d.lab("gcp-service-account-key", pkid)
            d.add('",' + nl + ind + '"private_key": "')
            d.lab("private-key-block", key[:-2])
            d.add('\\n",' + nl + ind + '"client_email": "deployer@%s.iam.gserviceaccount.com",' % proj)
            d.add(nl + ind + '"client_id": "%s"' % g.digits(21) + nl + "}")
            return d
        if r < 0.4:  # a log line carrying a key with escaped newlines
            return self.json_log([("msg", "loaded signing key", None),
                                  ("key", g.key_block("\\n"), "private-key-block")])
        nl = "\r\n" if g.rng.random() < 0.2 else "\n"
        key = g.key_block(nl)
        lang = g.lang()
        d = Doc()
        d.add(g.any(["here's the deploy key, delete after use:", "Schlüssel für den Server:", "clé SSH du bastion :",
                     "la llave del servidor:", "chave do servidor:", "サーバーの鍵です:", "id_rsa for staging",
                     "```"]) + nl)
        if g.rng.random() < 0.15:  # truncated paste: no END line
            cut = key.rfind(nl, 0, len(key) // 2)
            d.lab("private-key-block", key[:cut])
            d.add(nl + "(rest in the next message)")
            return d
        d.lab("private-key-block", key)
        d.add(nl + g.any(CLOSE[lang]))
        return d

    def pos_aws(self):
        g = self.g
        kid, sec = g.aws_id(), g.aws_secret()
        r = g.rng.random()
        d = Doc()
        if r < 0.2:  # credentials file
            d.add("[%s]\n" % g.any(["default", "prod", "deploy"]))
            d.add("aws_access_key_id = ")
            d.lab("aws-access-key-id", kid)
            d.add("\naws_secret_access_key = ")
            d.lab("aws-secret-access-key", sec)
            d.add("\n")
            return d
        if r < 0.35:  # env
            return self.env_file([("AWS_ACCESS_KEY_ID", kid, "aws-access-key-id"),
                                  ("AWS_SECRET_ACCESS_KEY", sec, "aws-secret-access-key")])
        if r < 0.5:  # STS / IAM JSON
            d.add('{\n    "AccessKey": {\n        "UserName": "%s",\n        "AccessKeyId": "' % g.any(ROMAJI))
            d.lab("aws-access-key-id", kid)
            d.add('",\n        "Status": "Active",\n        "SecretAccessKey": "')
            d.lab("aws-secret-access-key", sec)
            d.add('",\n        "CreateDate": "2026-12-0%dT10:11:12+00:00"\n    }\n}' % g.rng.randint(1, 9))
            return d
        if r < 0.6:  # console CSV export
            d.add("Access key ID,Secret access key\n")
            d.lab("aws-access-key-id", kid)
            d.add(",")
            d.lab("aws-secret-access-key", sec)
            d.add("\n")
            return d
        if r < 0.7:
            var = g.pick(["aws_secret_access_key", "AWS_SECRET", "secretAccessKey", "aws_secret_key"])
            return self.code(g.any(["py", "js", "go", "java", "sh"]), var, sec, "aws-secret-access-key")
        if r < 0.85:  # chat: id and secret together
            lang = g.lang()
            tpl = g.pick(["key id {i} secret {s}", "AWS creds: {i} / {s}", "access key {i}\nsecret key {s}",
                          "Zugangsdaten AWS: {i} {s}", "id: {i} clé secrète: {s}", "AWSキー {i} シークレット {s}",
                          "{i}:{s}", "usa {i} y el secret {s}"])
            a, rest = tpl.split("{i}")
            b, c = rest.split("{s}")
            d.add(g.any(OPEN[lang]) + " " + a)
            d.lab("aws-access-key-id", kid)
            d.add(b)
            d.lab("aws-secret-access-key", sec)
            d.add(c)
            return d
        # secret alone with words
        tpl = g.pick(["the AWS secret access key is {s}", "aws secret: {s}", "AWS secret key = {s}",
                      "new secret access key for the backup user: {s}"])
        a, b = tpl.split("{s}")
        d.add(a)
        d.lab("aws-secret-access-key", sec)
        d.add(b)
        return d

    def pos_token(self):
        g = self.g
        kind = g.any(["gh", "gh", "ghurl", "gl", "slack", "slackhook", "gcp", "azure", "jwt", "jwt"])
        if kind == "gh":
            v, t, var = g.gh_token(), "github-token", "GITHUB_TOKEN"
        elif kind == "ghurl":
            v = g.gh_token()
            d = Doc()
            d.add(g.any(["git clone https://", "remote: https://", "git remote set-url origin https://"]))
            if g.rng.random() < 0.4:
                d.add(g.any(ROMAJI) + ":")
            d.lab("github-token", v)
            d.add("@github.com/%s/%s.git" % (g.any(["acme", "brightpath", "quantalab"]), g.any(["infra", "web", "billing"])))
            return d
        elif kind == "gl":
            v, t, var = "glpat-" + g.s(20, ALNUM + "-_"), "gitlab-token", "GITLAB_TOKEN"
        elif kind == "slack":
            v = "xox%s-%s-%s-%s" % (g.any(["b", "p"]), g.digits(12), g.digits(13), g.s(24))
            t, var = "slack-token", "SLACK_BOT_TOKEN"
        elif kind == "slackhook":
            v = "https://hooks.slack.com/services/T%s/B%s/%s" % (g.s(10, UPPER_DIGITS), g.s(10, UPPER_DIGITS), g.s(24))
            t, var = "slack-token", "SLACK_WEBHOOK_URL"
        elif kind == "gcp":
            v, t, var = "AIza" + g.s(35, ALNUM + "-_"), "gcp-api-key", "GOOGLE_MAPS_KEY"
        elif kind == "azure":
            v = g.s(86, B64) + "=="
            d = Doc()
            d.add(g.any(["connection string: ", "AZURE_STORAGE_CONNECTION_STRING=", '"ConnectionStrings": {"Blob": "']))
            d.add("DefaultEndpointsProtocol=https;AccountName=%s;AccountKey=" % g.any(["acmeprod", "billingstore"]))
            d.lab("azure-storage-key", v)
            d.add(";EndpointSuffix=core.windows.net")
            return d
        else:
            v, t = g.jwt(), "jwt"
            r = g.rng.random()
            d = Doc()
            if r < 0.4:
                d.add(g.any(["curl -H 'Authorization: Bearer ", "Authorization: Bearer "]))
                d.lab(t, v)
                d.add(g.any(["' https://%s/v1/me" % g.any(HOSTS), ""]))
                return d
            if r < 0.6:
                d.add("https://%s/callback?state=%s&id_token=" % (g.any(HOSTS), g.s(8)))
                d.lab(t, v)
                return d
            if r < 0.75:
                return self.json_log([("msg", "token refresh", None), ("access_token", v, t)])
            return self.chat(g.lang(), "secret", v, t)
        r = g.rng.random()
        if r < 0.45:
            return self.chat(g.lang(), "secret", v, t)
        if r < 0.7:
            return self.env_file([(var, v, t)])
        if r < 0.85:
            return self.k8s_secret([(var.lower().replace("_", "-"), v, t)])
        return self.code(g.any(["py", "js", "go", "java", "sh"]), var.lower(), v, t)

    def pos_generic(self):
        g = self.g
        v = g.password()
        r = g.rng.random()
        if r < 0.35:
            return self.chat(g.lang(), "password", v, "generic-secret")
        if r < 0.5:
            return self.env_file([(g.pick(["DB_PASSWORD", "POSTGRES_PASSWORD", "SMTP_PASSWORD", "API_SECRET",
                                           "CLIENT_SECRET", "JWT_SECRET"]), v, "generic-secret")])
        if r < 0.62:
            return self.k8s_secret([(g.pick(["password", "db-password", "client-secret", "api-key"]), v, "generic-secret")])
        if r < 0.75:
            return self.json_log([("msg", "config loaded", None),
                                  (g.pick(["password", "client_secret", "apiKey", "api_key"]), v, "generic-secret")])
        if r < 0.87:
            return self.stack_trace(v, "generic-secret", g.any(["py", "java"]))
        return self.code(g.any(["py", "js", "go", "java", "sh"]), g.pick(["db_password", "api_key", "client_secret",
                                                                          "smtp_password"]), v, "generic-secret")

    # -- hard negatives ----------------------------------------------------------
    def negative(self):
        g = self.g
        lang = g.lang()
        kind = g.any(["test_pan", "luhn_bad", "order", "doc_iban", "bad_iban", "bad_ssn", "ssn_nocontext9", "aba_nocontext",
                      "aba_bad", "aws_doc", "sha", "jwt_io", "placeholder", "epoch", "version", "expiry", "dates",
                      "userinfo", "retina", "npm", "gitssh", "example_mail", "pubkey", "key_mention", "ids", "money",
                      "ip", "phone_like_ids", "card_phone_mix"])
        d = Doc()
        if kind == "test_pan":
            d.add(g.pick(["use the test card {} in staging", "Stripe test: {} any CVC", "Testkarte {} für die Sandbox",
                          "carte de test {} (sandbox)", "tarjeta de prueba {}", "cartão de teste {}"]).format(
                g.fmt_card(g.any(TEST_PANS), False)))
        elif kind == "luhn_bad":
            num = g.card()
            bad = num[:-1] + str((int(num[-1]) + g.rng.randint(1, 9)) % 10)
            d.add(g.any(["card {} (typo?)", "Karte {} stimmt nicht", "la carte {} est refusée"]).format(g.fmt_card(bad, False)))
        elif kind == "order":
            d.add(g.any(["order {} shipped", "Bestellung {} versendet", "pedido {} enviado", "tracking no. {}",
                         "invoice {}", "注文番号 {}"]).format(
                g.any(["9", "8", "1"]) + g.digits(15) if g.rng.random() < 0.5 else "%s-%s-%s" % (g.digits(3), g.digits(7), g.digits(7))))
        elif kind == "doc_iban":
            v = g.any(DOC_IBANS)
            d.add(g.pick(["the docs use {} as the example IBAN", "Beispiel-IBAN: {}", "exemple d'IBAN : {}",
                          "IBAN de ejemplo {}"]).format(g.fmt_iban(v)))
        elif kind == "bad_iban":
            v = g.iban()
            v = v[:2] + "%02d" % ((int(v[2:4]) + g.rng.randint(1, 50)) % 100) + v[4:]
            if iban_valid(v):
                v = v[:-1] + str((int(v[-1]) + 1) % 10) if v[-1].isdigit() else v[:-2] + "00"
            d.add(g.any(["IBAN {} bounced", "IBAN {} ist ungültig", "IBAN {} invalide"]).format(g.fmt_iban(v)))
        elif kind == "bad_ssn":
            v = g.any(["%03d-%02d-%04d" % (g.any([0, 666, g.rng.randint(900, 999)]), g.rng.randint(1, 99), g.rng.randint(1, 9999)),
                       "%03d-00-%04d" % (g.rng.randint(1, 665), g.rng.randint(1, 9999)),
                       "%03d-%02d-0000" % (g.rng.randint(1, 665), g.rng.randint(1, 99)), g.any(DOC_SSNS)])
            d.add(g.any(["SSN {} (the example from the form)", "ssn {}", "the sample SSN {}", "ITIN {}"]).format(v))
        elif kind == "ssn_nocontext9":
            d.add(g.any(["zip {}-{}", "ref {}{}", "part {}-{}", "claim {}{}"]).format(g.digits(5), g.digits(4)))
        elif kind == "aba_nocontext":
            d.add(g.any(["reference {} attached", "case {} opened", "Vorgang {} erledigt", "ID {}"]).format(g.aba()))
        elif kind == "aba_bad":
            v = g.aba()
            v = v[:-1] + str((int(v[-1]) + g.rng.randint(1, 9)) % 10)
            d.add(g.any(["routing number {} (wrong?)", "ABA {} rejected"]).format(v))
        elif kind == "aws_doc":
            d.add(g.pick(["aws_access_key_id = {}\naws_secret_access_key = {}", "docs example: {} / {}",
                          "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}", "Beispiel aus der Doku {} {}"]).format(
                g.any(AWS_DOC_ID), AWS_DOC_SECRET))
        elif kind == "sha":
            d.add(g.any(["aws deploy at commit {}", "secret rotation merged in {}", "fixed in {} (aws lambda)",
                         "sha1 {} for the secret bundle"]).format(g.s(40, HEX)))
        elif kind == "jwt_io":
            d.add(g.any(["the jwt.io sample {} decodes to John Doe", "example token: Bearer {}", "Beispiel-JWT {}"]).format(JWT_IO))
        elif kind == "placeholder":
            d.add(g.any(["password: ${DB_PASSWORD}", "DB_PASSWORD=changeme", "api_key: <your-api-key>", "secret = \"********\"",
                         "password={{ .Values.db.password }}", "client_secret: REPLACE_ME", "token: %s", "Passwort: ********",
                         "mot de passe : (voir le coffre)", "contraseña: la de siempre", "senha: a mesma de antes",
                         "password is in 1Password", "AWS_SECRET_ACCESS_KEY=${{ secrets.AWS_SECRET_ACCESS_KEY }}",
                         "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx is a placeholder", "-----BEGIN PRIVATE KEY-----\n<paste key here>\n-----END PRIVATE KEY-----"]))
        elif kind == "epoch":
            d.add(g.any(["created_at={} updated", "epoch {}", "timestamp: {}", "expires {}", "Zeitstempel {}"]).format(
                g.any([str(g.rng.randint(1600000000, 1800000000)), str(g.rng.randint(1600000000000, 1800000000000))])))
        elif kind == "version":
            d.add(g.any(["upgraded to {}", "Version {} ausgerollt", "build {}", "versión {}", "バージョン {}"]).format(
                "%d.%d.%d.%d" % (g.rng.randint(1, 20), g.rng.randint(0, 20), g.rng.randint(1000, 30000), g.rng.randint(100, 9999))))
        elif kind == "expiry":
            d.add(g.any(["exp {}/{} cvv {}", "valid thru {}/{} code {}", "gültig bis {}/{} CVC {}", "expira {}/{} cvv {}"]).format(
                "%02d" % g.rng.randint(1, 12), "%02d" % g.rng.randint(26, 32), g.digits(3)))
        elif kind == "dates":
            d.add(g.any(["between {} and {}", "vom {} bis {}", "du {} au {}", "del {} al {}"]).format(
                "%02d.%02d.%d" % (g.rng.randint(1, 28), g.rng.randint(1, 12), g.rng.randint(2020, 2030)),
                "%d-%02d-%02d %02d:%02d:%02d" % (g.rng.randint(2020, 2030), g.rng.randint(1, 12), g.rng.randint(1, 28),
                                                  g.rng.randint(0, 23), g.rng.randint(0, 59), g.rng.randint(0, 59))))
        elif kind == "userinfo":
            d.add(g.any(["https://{}:{}@{}/path", "clone https://{}:{}@git.{}/repo.git", "proxy http://{}:{}@{}:3128"]).format(
                g.any(ROMAJI), g.any(["x-oauth-basic", "readonly", "pw" + g.digits(4)]), g.any(DOMAINS)))
        elif kind == "retina":
            d.add(g.any(["use logo@2x.png and logo@3x.png", "icons/arrow@2x.webp is blurry", "background@1.5x.jpg"]))
        elif kind == "npm":
            d.add(g.any(["npm i @babel/core@7.26.0", "bump react@18.3.1 and vite@6.0.3", "docker pull nginx@sha256:%s" % g.s(64, HEX)]))
        elif kind == "gitssh":
            d.add(g.any(["git clone git@github.com:%s/infra.git", "remote: git@gitlab.com:%s/web.git"]) % g.any(["acme", "quantalab"]))
        elif kind == "example_mail":
            d.add(g.any(["e.g. jane.doe@example.com", "test with user@example.org", "admin@example.net is a placeholder",
                         "foo@bar.test", "alice@company.invalid"]))
        elif kind == "pubkey":
            body = g.s(392, B64)
            d.add("-----BEGIN PUBLIC KEY-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64)) +
                  "\n-----END PUBLIC KEY-----")
            if g.rng.random() < 0.5:
                d.add("\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI%s %s@laptop" % (g.s(43, B64), g.any(ROMAJI)))
        elif kind == "key_mention":
            d.add(g.any(["grep for '-----BEGIN RSA PRIVATE KEY-----' in the repo", "the file starts with -----BEGIN OPENSSH PRIVATE KEY----- right?",
                         "never paste anything that says BEGIN PRIVATE KEY", "Die Datei beginnt mit -----BEGIN EC PRIVATE KEY-----"]))
        elif kind == "ids":
            d.add(g.any(["request ids {} {} {}", "rows {}, {}, {}", "ids: {};{};{}"]).format(g.digits(9), g.digits(10), g.digits(11)))
        elif kind == "money":
            d.add(g.any(["total ${:,}.{:02d}", "Betrag {:,} EUR und {} Cent", "montant {} € ({})"]).format(
                g.rng.randint(100000, 999999999), g.rng.randint(0, 99)))
        elif kind == "ip":
            d.add("%d.%d.%d.%d:%d and 2001:db8::%s" % (g.rng.randint(1, 223), g.rng.randint(0, 255), g.rng.randint(0, 255),
                                                       g.rng.randint(1, 254), g.rng.randint(1024, 65535), g.s(4, HEX)))
        elif kind == "phone_like_ids":
            d.add(g.any(["invoice no. {}", "order {}", "Rechnungsnummer {}", "n° de commande {}", "ticket {}", "case #{}"]).format(
                g.any([g.digits(10), "%s-%s-%s" % (g.digits(3), g.digits(3), g.digits(4)), "%s %s %s" % (g.digits(3), g.digits(3), g.digits(4))])))
        else:  # card_phone_mix: card labelled, not a phone
            num = g.card()
            d.add("card ")
            d.lab("payment-card", g.fmt_card(num, False))
            d.add(" exp %02d/%02d" % (g.rng.randint(1, 12), g.rng.randint(26, 31)))
        if g.rng.random() < 0.3:
            d.add(" " + g.any(CLOSE[lang]))
        return d

    def multi(self):
        """Two positives in one message (a form or a pasted record)."""
        g = self.g
        d = Doc()
        name = g.person("en")
        d.add("New hire: %s\n" % name)
        d.add("Phone: ")
        d.lab("phone-number", g.phone()[0])
        d.add("\nEmail: ")
        d.lab("email-address", g.email("en"))
        if g.rng.random() < 0.6:
            d.add("\nSSN: ")
            d.lab("us-ssn", g.fmt_ssn(g.ssn()))
        if g.rng.random() < 0.5:
            d.add("\nDirect deposit: routing ")
            d.lab("us-bank-routing", g.aba())
            d.add(" account %s" % g.digits(10))
        d.add("\n")
        return d

    def generate(self):
        g = self.g
        makers = [(self.benign, 30), (self.negative, 22), (self.pos_card, 6), (self.pos_iban, 5), (self.pos_ssn, 5),
                  (self.pos_aba, 4), (self.pos_phone, 8), (self.pos_email, 4), (self.pos_private_key, 4),
                  (self.pos_aws, 4), (self.pos_token, 6), (self.pos_generic, 5), (self.multi, 2)]
        pool = [m for m, w in makers for _ in range(w)]
        for i in range(self.n):
            d = g.any(pool)()
            text = d.text()
            labels = []
            for t, s, e in d.labels:
                bs = len(text[:s].encode())
                be = bs + len(text[s:e].encode())
                labels.append({"type": t, "start": bs, "end": be})
            yield {"id": "%s-%05d" % (self.part, i), "part": self.part, "text": text, "labels": labels}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=sorted(SEEDS), required=True)
    ap.add_argument("--n", type=int, default=6000)
    args = ap.parse_args()
    for rec in Corpus(args.part, args.n).generate():
        print(json.dumps(rec, ensure_ascii=False))


if __name__ == "__main__":
    main()
