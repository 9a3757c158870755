"""Benchmark: draining a hypervisor of 8 guests (issue 6). Prints figures and ratios; asserts nothing.

  - the link rate between two lab hypervisors, measured (a TCP stream h1 -> h2, 512 MiB)
  - the drain with the evacuate_host playbook (the drain's own wall time and the playbook's)
  - the same 8 guests moved back and then out again by a serial loop of plain `virsh migrate --live`
    to the destinations the drain chose
  - the lower bound: the bytes the drain moved / the measured link rate
Run as root: .venv/bin/python tests/benchmarks/bench_evacuate.py  (brings its own lab up and down)
"""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

GUESTS = 8
STREAM_MIB = 512
SERVER = ("import socket, sys, time\n"
          "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "s.bind((sys.argv[1], 5999)); s.listen(1); print('ready', flush=True)\n"
          "c, _ = s.accept(); n = 0; t0 = time.monotonic()\n"
          "while True:\n"
          "    b = c.recv(1 << 20)\n"
          "    if not b: break\n"
          "    n += len(b)\n"
          "print(n, time.monotonic() - t0, flush=True)\n")
CLIENT = ("import socket, sys\n"
          "c = socket.create_connection((sys.argv[1], 5999)); buf = b'x' * (1 << 20)\n"
          "for _ in range(int(sys.argv[2])): c.sendall(buf)\n"
          "c.close()\n")


def link_rate():
    """MiB/s of one TCP stream from h1 to h2 (the path a migration takes)."""
    server = subprocess.Popen(L.ns_exec("h2", [sys.executable, "-c", SERVER, L.host_ip("h2")]),
                              stdout=subprocess.PIPE, text=True)
    try:
        server.stdout.readline()
        L.run(L.ns_exec("h1", [sys.executable, "-c", CLIENT, L.host_ip("h2"), str(STREAM_MIB)]), timeout=120)
        n, secs = server.stdout.readline().split()
        return int(n) / 1048576.0 / float(secs)
    finally:
        server.wait(30)


def virsh_serial(placements, src_of):
    t0 = time.monotonic()
    for name, dst in placements:
        L.run(["virsh", "-c", L.uri(src_of(name)), "migrate", "--live", "--p2p", "--persistent", "--undefinesource",
               name, L.tcp_uri(dst)], timeout=300)
    return time.monotonic() - t0


def main():
    own_lab = not L.load_state()
    if own_lab:
        L.up(3)
    names = ["bench_ev%d" % i for i in range(GUESTS)]
    try:
        rate = link_rate()
        for i, name in enumerate(names):
            # two guests rewrite memory, the rest are idle; all on shared NBD disks
            L.define_guest(name, "h1", disk="nbd", memory_mib=128,
                           mem_workload_mib=32 if i < 2 else 0, mem_rate=16 if i < 2 else 0)
        for name in names:
            L.wait_guest(L.load_state()["guests"][name]["ip"])
        reports = L.state_path("bench-reports")
        extra = {"source": "h1", "evacuate_host_max_outbound": 2, "evacuate_host_max_inbound": 1,
                 "evacuate_host_headroom_mib": 64, "evacuate_host_state_dir": L.state_path("bench-evac"),
                 "evacuate_host_report_dir": reports, "evacuate_host_rate_mibps": int(rate),
                 "evacuate_host_migrate_options": {"memory_reserve_mib": 64}}
        t0 = time.monotonic()
        p = L.playbook(os.path.join(L.TOP, "playbooks", "evacuate_host.yml"), extra_vars=extra)
        playbook_s = time.monotonic() - t0
        if p.returncode != 0:
            print(p.stdout[-5000:])
            print("the drain failed; no figures")
            return
        with open(os.path.join(reports, "h1", "report.json")) as f:
            report = json.load(f)
        moved = sum(r.get("bytes_transferred") or 0 for r in report["results"]) / 1048576.0
        placements = [(r["name"], r["destination"]) for r in report["results"]]
        # back to h1 (not timed), then the same moves one by one with plain virsh
        virsh_serial([(n, "h1") for n, _d in placements], lambda n: dict(placements)[n])
        virsh_s = virsh_serial(placements, lambda n: "h1")
        bound = moved / rate
        print()
        print("drain of %d guests (128 MiB each, 2 rewriting 32 MiB at 16 MiB/s), 2 out of h1 at once, 1 into "
              "each destination at once" % GUESTS)
        print("measured link rate h1 -> h2 (one TCP stream): %.0f MiB/s" % rate)
        print("%-44s %9s %12s" % ("run", "wall s", "x bound"))
        for label, secs in (("lower bound (%.0f MiB moved / link rate)" % moved, bound),
                            ("evacuate: the drain itself", report["wall_s"]),
                            ("evacuate_host playbook (plan, drain, report)", playbook_s),
                            ("serial loop of virsh migrate --live", virsh_s)):
            print("%-44s %9.2f %12.1f" % (label, secs, secs / bound if bound else 0))
        print("ratio drain / serial virsh: %.2f; predicted drain %s s" % (
            report["wall_s"] / virsh_s, report["plan"]["predicted_total_s"]))
        print(json.dumps({"link_mibps": round(rate), "moved_mib": round(moved, 1), "bound_s": round(bound, 2),
                          "drain_s": report["wall_s"], "playbook_s": round(playbook_s, 1),
                          "virsh_serial_s": round(virsh_s, 1)}))
    finally:
        for name in names:
            L.remove_guest(name)
        if own_lab:
            L.down()


if __name__ == "__main__":
    main()
