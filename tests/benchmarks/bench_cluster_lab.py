"""Benchmark: the cluster plan on the lab's real hypervisors (issue 23). Prints figures and ratios; asserts nothing.

As a new user measures it: one small guest per host, the rolling_maintenance playbook in check mode (the cluster
plan only: each host read once, the group's questions answered once per host, every drain planned on the
controller), on 3, 6 and 9 hosts (a lab of each size, brought up and down in turn), and one host's
evacuate_host --check (a drain planned from that host, which connects to every other). Goal: the 9-host cluster plan
in <= 2 x the 3-host one (the per-host planning it replaces took 6.7 s, 15.9 s and 31.4 s: 4.7 x).

Run as root: .venv/bin/python tests/benchmarks/bench_cluster_lab.py [--sizes 3,6,9] [--runs 2]
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

BEFORE_S = {3: 6.7, 6: 15.9, 9: 31.4}     # issue 23: the per-host plans, measured on this lab


def timed_playbook(name, extra, check=True):
    t0 = time.monotonic()
    p = L.playbook(os.path.join(L.TOP, "playbooks", name), extra_vars=extra, check=check)
    took = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (name, p.stdout[-4000:]))
    return took


def one_size(n, runs):
    L.up(n)
    guests = ["cp%d" % i for i in range(1, n + 1)]
    try:
        for i, g in enumerate(guests):
            L.define_guest(g, "h%d" % (i + 1), disk="none", memory_mib=96)
        common = {"rolling_maintenance_report_dir": L.state_path("bench-cp-reports"),
                  "rolling_maintenance_state_dir": L.state_path("bench-cp-state") + "/{{ inventory_hostname }}",
                  "rolling_maintenance_tasks": os.path.join(L.TOP, "tests", "lab", "rolling_hook.yml"),
                  "evacuate_host_headroom_mib": 64, "rolling_maintenance_cpu_check": False}
        # (libvirtd's first getCapabilities probes every emulator: one warm-up run, not measured)
        timed_playbook("rolling_maintenance.yml", common)
        plan = [timed_playbook("rolling_maintenance.yml", common) for _r in range(runs)]
        drain = [timed_playbook("evacuate_host.yml", {"source": "h1", "evacuate_host_headroom_mib": 64,
                                                      "evacuate_host_report_dir": L.state_path("bench-cp-evac")})
                 for _r in range(runs)]
        return statistics.median(plan), statistics.median(drain)
    finally:
        for g in guests:
            L.remove_guest(g)
        L.down()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="3,6,9")
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args()
    rows = {}
    for n in [int(x) for x in a.sizes.split(",")]:
        rows[n] = one_size(n, a.runs)
    print()
    print("cluster plan on the lab (rolling_maintenance --check, one 96 MiB guest a host, median of %d)" % a.runs)
    print("%-6s %16s %22s %26s" % ("hosts", "cluster plan s", "before (per-host) s", "evacuate_host --check s"))
    for n, (plan, drain) in sorted(rows.items()):
        print("%-6d %16.1f %22s %26.1f" % (n, plan, BEFORE_S.get(n, "-"), drain))
    small, large = min(rows), max(rows)
    if large != small:
        ratio = rows[large][0] / rows[small][0]
        print("%d hosts against %d: %.2f x (goal <= 2 x: %s; before: %.1f x)" % (
            large, small, ratio, "met" if ratio <= 2 else "NOT met",
            BEFORE_S.get(large, 0) / BEFORE_S.get(small, 1)))


if __name__ == "__main__":
    main()
