#!/usr/bin/env python3
"""Phone numbers nobody here wrote: the example numbers of libphonenumber's
metadata (PhoneNumberMetadata.xml, Apache-2.0, shipped in the `phonenumber`
crate 0.3.10+9.0.33), fixed-line and mobile, for every region, written in
E.164 (+CC NSN) the way a chat message would carry them. Labelled as
phone-number over the whole number (POLICY.md).

    python3 inspectors/eval/external_phones.py PATH/TO/PhoneNumberMetadata.xml > inspectors/eval/external_phones.jsonl
"""
import json
import sys
import xml.etree.ElementTree as ET


def main():
    root = ET.parse(sys.argv[1]).getroot()
    n = 0
    for terr in root.iter("territory"):
        region, cc = terr.get("id"), terr.get("countryCode")
        if region == "001" or not cc:
            continue
        for kind in ("fixedLine", "mobile"):
            el = terr.find(kind)
            ex = el.find("exampleNumber") if el is not None else None
            if ex is None or not ex.text:
                continue
            value = "+%s %s" % (cc, ex.text.strip())
            text = "reach me on %s" % value
            start = len(text.encode()) - len(value.encode())
            rec = {"id": "ext-%s-%s" % (region, kind), "part": "external", "text": text,
                   "labels": [{"type": "phone-number", "start": start, "end": len(text.encode())}]}
            print(json.dumps(rec, ensure_ascii=False))
            n += 1
    print(n, file=sys.stderr)


if __name__ == "__main__":
    main()
