"""An ICMP echo responder with faults, run inside a test's peer namespace.

    python -m tests.icmp_responder [--drop-every N] [--delay SECONDS] [--garbage]

The namespace's kernel is told not to answer echoes (net.ipv4.icmp_echo_ignore_all);
this answers them instead through a raw socket: after ``--delay``, skipping every Nth
request (deterministic loss: the kernel has no netem here), and with ``--garbage``
sending malformed and mismatched packets before each reply. It prints "ready" once its
socket is open and stops when its standard input closes.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import threading
import time

ECHO_REQUEST, ECHO_REPLY = 8, 0


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_reply(ident: int, sequence: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REPLY, 0, 0, ident, sequence)
    return (
        struct.pack("!BBHHH", ECHO_REPLY, 0, checksum(header + payload), ident, sequence) + payload
    )


def garbage_for(ident: int, sequence: int, payload: bytes) -> list[bytes]:
    return [
        b"\x00\x00",  # shorter than an ICMP header
        echo_reply((ident + 1) & 0xFFFF, sequence, payload),  # another process's echo
        echo_reply(ident, (sequence + 1000) & 0xFFFF, payload),  # a sequence never sent
        struct.pack("!BBHHH", 42, 0, 0, ident, sequence) + payload,  # an unknown type
    ]


def serve(sock: socket.socket, drop_every: int, delay: float, garbage: bool) -> None:
    seen = 0
    while True:
        packet, (source, _) = sock.recvfrom(65535)
        icmp = packet[(packet[0] & 0x0F) * 4 :]  # a raw IPv4 socket reads the IP header too
        if len(icmp) < 8 or icmp[0] != ECHO_REQUEST:
            continue
        seen += 1
        ident, sequence = struct.unpack("!HH", icmp[4:8])
        if garbage:
            for bogus in garbage_for(ident, sequence, icmp[8:]):
                sock.sendto(bogus, (source, 0))
        if drop_every and seen % drop_every == 0:
            continue
        time.sleep(delay)  # the prober sends one echo at a time: no reply waits on another
        sock.sendto(echo_reply(ident, sequence, icmp[8:]), (source, 0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drop-every", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--garbage", action="store_true")
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    worker = threading.Thread(
        target=serve, args=(sock, args.drop_every, args.delay, args.garbage), daemon=True
    )
    worker.start()
    print("ready", flush=True)
    sys.stdin.read()  # the test closes it to stop us


if __name__ == "__main__":
    main()
