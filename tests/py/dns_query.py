"""One DNS query over UDP with dnspython; prints what came back as JSON.

usage: dns_query.py SERVER NAME TYPE
{"ok": true, "rcode": 0, "answer": ["name TYPE rdata", ...],
 "https": [{"alpn": [...], "ech": bool}], "elapsed": s}
"""
import json
import sys
import time

import dns.message
import dns.query
import dns.rdatatype
from dns.rdtypes.svcbbase import ParamKey

server, name, rtype = sys.argv[1:4]
q = dns.message.make_query(name, rtype)
start = time.monotonic()
try:
    r = dns.query.udp(q, server, timeout=3)
except Exception as e:  # noqa: BLE001 - the test reads the verdict
    print(json.dumps({"ok": False, "error": repr(e), "elapsed": time.monotonic() - start}))
    sys.exit(0)
answer, https = [], []
for rrset in r.answer:
    for rd in rrset:
        answer.append(f"{rrset.name.to_text()} {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}")
        if rrset.rdtype == dns.rdatatype.HTTPS:
            alpn = rd.params.get(ParamKey.ALPN)
            https.append({
                "alpn": [i.decode() for i in alpn.ids] if alpn else [],
                "ech": ParamKey.ECH in rd.params,
            })
print(json.dumps({
    "ok": True,
    "rcode": r.rcode(),
    "answer": sorted(answer),
    "https": https,
    "elapsed": time.monotonic() - start,
}))
