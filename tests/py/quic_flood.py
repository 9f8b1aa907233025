"""Junk for the QUIC listener: random datagrams and Initials with random
connection ids (undecryptable), each from a fresh source port.

Usage: quic_flood.py ADDRESS PORT JUNK INITIALS
"""

import os
import socket
import sys


def main():
    address, port, junk, initials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sent = 0
    for i in range(junk + initials):
        s = socket.socket(family, socket.SOCK_DGRAM)
        if i < junk:
            data = os.urandom(1 + (i * 37) % 1400)
        else:
            dcid = os.urandom(8 + i % 13)
            scid = os.urandom(8)
            head = bytes([0xC3]) + (1).to_bytes(4, "big") + bytes([len(dcid)]) + dcid
            head += bytes([len(scid)]) + scid + b"\x00" + (0x4000 | 1150).to_bytes(2, "big")
            data = head + os.urandom(1200 - len(head))
        try:
            s.sendto(data, (address, port))
            sent += 1
        except OSError:
            pass
        s.close()
    print(sent, flush=True)


if __name__ == "__main__":
    main()
