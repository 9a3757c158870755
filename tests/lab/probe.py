"""Client-side probes of lab guests. Run inside the lab's client namespace (vmmlab.probe_cmd does).

  probe.py status IP        one status read from the guest's TCP service (port 7777), as JSON
  probe.py wait IP          wait until the guest answers its TCP service, then print its status
  probe.py ping IP --hz N   ICMP echo at N Hz until SIGINT/SIGTERM (or --duration), then print the
                            figures as JSON: sent, received, lost, longest reply gap (the blackout)
                            and when it happened.
"""
import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import time

STATUS_PORT = 7777


def read_status(ip, timeout):
    with socket.create_connection((ip, STATUS_PORT), timeout=timeout) as s:
        s.settimeout(timeout)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    out = {}
    for line in data.decode(errors="replace").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
    return out


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident, seq):
    payload = struct.pack("!d", time.monotonic()) + b"vmmlab-probe"
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), ident, seq) + payload


def ping(ip, hz, duration, times=False):
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    ident = os.getpid() & 0xFFFF
    interval = 1.0 / hz
    stop = {"now": False}

    def on_signal(*unused):
        stop["now"] = True
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    start = time.monotonic()
    sent = {}
    replies = []  # (receive time, seq)
    seq = 0
    next_send = start
    while not stop["now"] and (duration <= 0 or time.monotonic() - start < duration):
        now = time.monotonic()
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            try:
                sock.sendto(echo_request(ident, seq), (ip, 0))
            except OSError:
                pass
            sent[seq] = now
            next_send += interval
            if next_send < now:
                next_send = now + interval
        readable = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))[0]
        while readable:
            try:
                pkt = sock.recvfrom(2048)[0]
            except BlockingIOError:
                break
            ihl = (pkt[0] & 0x0F) * 4
            typ, rid, rseq = struct.unpack("!B3xHH", pkt[ihl:ihl + 8])
            if typ == 0 and rid == ident and rseq in sent:
                replies.append((time.monotonic(), rseq))
                sent.pop(rseq)
    end = time.monotonic()
    received = len(replies)
    total = seq
    gap, gap_at = 0.0, None
    # The longest stretch without a reply, including from the start and up to the end of the run.
    marks = [start] + [reply[0] for reply in replies] + [end]
    for a, b in zip(marks, marks[1:]):
        if b - a > gap:
            gap, gap_at = b - a, a - start
    out = {"target": ip, "hz": hz, "duration_s": round(end - start, 3), "sent": total,
           "received": received, "lost": total - received,
           "max_gap_ms": round(gap * 1000, 1), "max_gap_at_s": round(gap_at, 3) if gap_at is not None else None}
    if times:
        # CLOCK_MONOTONIC is one clock for every process and namespace: callers compare with their own
        out["reply_times"] = [round(t, 4) for t, _seq in replies]
    return out


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("status")
    p.add_argument("ip")
    p.add_argument("--timeout", type=float, default=2.0)
    p = sub.add_parser("wait")
    p.add_argument("ip")
    p.add_argument("--timeout", type=float, default=60.0)
    p = sub.add_parser("ping")
    p.add_argument("ip")
    p.add_argument("--hz", type=float, default=100.0)
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--times", action="store_true", help="also list each reply's CLOCK_MONOTONIC time")
    a = ap.parse_args()
    if a.cmd == "status":
        try:
            print(json.dumps(read_status(a.ip, a.timeout)))
        except OSError as e:
            print("no answer from %s: %s" % (a.ip, e), file=sys.stderr)
            return 1
    elif a.cmd == "wait":
        deadline = time.monotonic() + a.timeout
        t0 = time.monotonic()
        while True:
            try:
                st = read_status(a.ip, 1.0)
                if "mem_passes" in st or "disk_seq" in st or "name" in st:
                    st["waited_s"] = round(time.monotonic() - t0, 2)
                    print(json.dumps(st))
                    return 0
            except OSError as e:
                err = e
            else:
                err = "status incomplete"
            if time.monotonic() > deadline:
                print("no answer from %s: %s" % (a.ip, err), file=sys.stderr)
                return 1
            time.sleep(0.2)
    elif a.cmd == "ping":
        print(json.dumps(ping(a.ip, a.hz, a.duration, a.times)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
