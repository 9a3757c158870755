"""Benchmark: the cluster plan at scale (issue 23). Prints figures and ratios; asserts nothing.

Simulated clusters of 10, 100 and 1,000 hypervisors with 20 VMs each (sizes from a realistic mix, two CPU
generations, a shared NFS directory every host sees and a local one each host sees alone), shaped like the lab's
real cluster_facts reads and answers. For each:
  - the controller-side cluster plan's time (every drain of the run planned from the reads, cluster.plan_run);
  - the packing of the first drain against its fluid bound (the fullest destination against perfectly even use);
  - a discrete-event simulation of the rolling maintenance with the calibrated rates: each step's drain (its
    schedule under the concurrency limits), the maintenance, the return (return home) - the predicted window,
    the moves and the bytes, for return home, stay, and stay with the wave; and batch auto (rolling_maintenance_batch:
    auto - the most hosts out at once whose every step the cluster absorbs, chosen from the reads, then each step as
    long as its longest host).
Goals (issue 23): 1,000 hosts / 20,000 VMs planned in <= 30 s, packing within 5 % of the bound, the wave's moves
<= 1.05 x the VMs (return home: 2 x).

Run: .venv/bin/python tests/benchmarks/bench_cluster.py [--sizes 10,100,1000] [--maintenance-s 300]
(no lab: the lab's part - the cluster plan on 3, 6 and 9 real hosts - is tests/benchmarks/bench_cluster_lab.py)
"""
import argparse
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "unit"))
# (the unit tests' conftest makes the collection importable as ansible_collections.vmmigration.libvirt)
import conftest  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import cluster as CL  # noqa: E402
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import batch as BATCH  # noqa: E402
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import planner as P  # noqa: E402

GIB = 1024 * 1024 * 1024
SIZES_MIB = [(1024, 20), (2048, 25), (4096, 25), (8192, 15), (16384, 10), (32768, 5)]   # (size, weight %)
CPUS = {"q-skylake": "Skylake-Server-IBRS", "q-icelake": "Icelake-Server"}


def make_cluster(hosts, vms_per_host=20, seed=1, load=(0.45, 0.6)):
    """{host: read}, {host: answers} of a simulated cluster: the newer CPU generation on a quarter of the hosts
    (the Icelake guests run only there), a shared directory every host sees, one local directory per host."""
    rnd = random.Random(seed)
    names = ["hv%04d" % i for i in range(hosts)]
    new_gen = set(names[: max(1, hosts // 4)])
    reads, answers = {}, {}
    for h in names:
        cap = rnd.choice([256, 512]) * 1024          # MiB
        vms = []
        used = 0
        target = cap * rnd.uniform(*load)
        i = 0
        while len(vms) < vms_per_host and used < target:
            size = rnd.choices([s for s, _w in SIZES_MIB], [w for _s, w in SIZES_MIB])[0]
            local = rnd.random() < 0.1
            q = "q-icelake" if h in new_gen and rnd.random() < 0.3 else "q-skylake"
            vms.append({
                "name": "%s-vm%02d" % (h, i), "uuid": "%s-%02d" % (h, i), "active": True, "persistent": True,
                "memory_kib": size * 1024, "domain_type": "kvm", "arch": "x86_64", "machine": "pc-q35-9.2",
                "cpu": {"mode": "custom", "model": CPUS[q]}, "cpu_question": q,
                "interfaces": [{"type": "bridge", "bridge": "br0", "mac": "52:54:00:%06x" % rnd.randrange(1 << 24)}],
                "disks": [{"target": "vda", "type": "file", "cache": "none",
                           "source": ("/var/lib/libvirt/images/local/%s.qcow2" if local else
                                      "/srv/nfs/images/%s.qcow2") % i,
                           "dir": "/var/lib/libvirt/images/local" if local else "/srv/nfs/images"}],
                "blockers": [], "tpm": False, "nvram": None})
            used += size
            i += 1
        reads[h] = {"version": CL.READ_VERSION,
                    "host": {"uuid": "uuid-" + h, "uri": "qemu:///system", "memory_total": cap * 1024 * 1024,
                             "memory_free": (cap - used) * 1024 * 1024, "domain_types": ["kvm", "qemu"],
                             "machine_types": {"x86_64": ["pc-q35-9.2", "pc-i440fx-9.2"]},
                             "libvirt_version": "11.3.0", "hypervisor_version": "10.0.2", "bridges": ["br0"],
                             "networks": [{"name": "default", "active": True, "bridge": "virbr0"}]},
                    "domains": vms, "cpu_questions": dict((q, {"xml": "<cpu/>"}) for q in CPUS),
                    "markers": {"/srv/nfs/images": {"name": "vmm-probe-%s-nfs.marker" % h, "size": 4096},
                                "/var/lib/libvirt/images/local": {"name": "vmm-probe-%s-loc.marker" % h, "size": 512}}}
    nfs_seen = dict((reads[h]["markers"]["/srv/nfs/images"]["name"], 4096) for h in names)
    for h in names:
        local = reads[h]["markers"]["/var/lib/libvirt/images/local"]
        answers[h] = {"version": CL.READ_VERSION,
                      "cpus": {"q-skylake": None,
                               "q-icelake": None if h in new_gen else "the host CPU does not provide: avx512ifma"},
                      "dirs": {"/srv/nfs/images": {"seen": nfs_seen},
                               "/var/lib/libvirt/images/local": {"seen": {local["name"]: local["size"]}}},
                      "servers": {}}
    return reads, answers, names


def simulate(out, reads, p, maintenance_s, return_vms):
    """The run's window by steps: each drain's predicted schedule, the maintenance, then the return moves (return
    home: the VMs of the host, back from where they went, under the same limits)."""
    window = 0.0
    for h in out["order"]:
        plan = out["plans"][h]
        back = 0.0
        if return_vms == "original" and plan["moves"]:
            moves = [{"name": m["name"], "source": m["destination"], "dest": h, "memory_mib": m["memory_mib"]}
                     for m in plan["moves"]]
            _t, back = P.schedule(moves, p["rate_mibps"], p["max_outbound"], p["max_inbound"], p["max_total"],
                                  p["overhead_s"])
        window += plan["predicted_total_s"] + maintenance_s + back
    return window


def simulate_steps(out, steps, p, maintenance_s):
    """A run of several hosts out at once (return home): each step as long as its longest host - its drain (the
    step's drains share the destinations' inbound slots), the maintenance, the return."""
    window = 0.0
    for step in steps:
        longest = 0.0
        for h in step:
            plan = out["plans"][h]
            moves = [{"name": m["name"], "source": m["destination"], "dest": h, "memory_mib": m["memory_mib"]}
                     for m in plan["moves"]]
            _t, back = P.schedule(moves, p["rate_mibps"], p["max_outbound"], p["max_inbound"], p["max_total"],
                                  p["overhead_s"]) if moves else ([], 0.0)
            longest = max(longest, plan["predicted_total_s"] + maintenance_s + back)
        window += longest
    return window


def packing(reads, dests, free_after, headroom_mib):
    """One drain's packing, by the rule it places with (keep the most memory free on every host): the least free
    memory a receiving host keeps, against the bound - the level perfectly even filling would leave (the moved
    memory poured into the roomiest hosts down to one level, as water). Ratio bound / kept: 1.0 is perfect."""
    before = sorted((reads[h]["host"]["memory_free"] / 1048576.0 - headroom_mib for h in dests), reverse=True)
    moved = sum(b + headroom_mib - free_after[h] for b, h in zip([reads[h]["host"]["memory_free"] / 1048576.0
                                                                 - headroom_mib for h in dests], dests))
    level, poured = before[0], 0.0
    for i in range(1, len(before) + 1):
        nxt = before[i] if i < len(before) else float("-inf")
        # lowering the level from LEVEL to NXT over the i roomiest hosts pours i * (level - nxt)
        if poured + i * (level - nxt) >= moved:
            level -= (moved - poured) / i
            break
        poured += i * (level - nxt)
        level = nxt
    received = [h for h in dests if free_after[h] < reads[h]["host"]["memory_free"] / 1048576.0 - 0.5]
    kept = min(free_after[h] - headroom_mib for h in received) if received else level
    return {"kept_mib": kept, "bound_mib": level, "ratio": round(level / kept, 4) if kept > 0 else None}


def run_size(n, maintenance_s):
    reads, answers, names = make_cluster(n)
    vms = sum(len(r["domains"]) for r in reads.values())
    p = CL.plan_options({"headroom_mib": 4096, "rate_mibps": 1100, "overhead_s": 2.0, "max_outbound": 2,
                         "max_inbound": 2, "max_total": 8})
    rows = []
    for label, ret, wave in (("return home", "original", False), ("stay", "stay", False), ("stay + wave", "stay", True)):
        order = CL.wave_order(reads, names) if wave else names
        t0 = time.perf_counter()
        out = CL.plan_run(reads, answers, [[h] for h in order], p, return_vms=ret, wave=wave)
        took = time.perf_counter() - t0
        left = sum(len(pl["left"]) for pl in out["plans"].values())
        rows.append((label, took, out["moves"], out["moves"] / float(vms), max(out["moves_per_vm"].values() or [0]),
                     out["moved_mib"] / 1024.0, simulate(out, reads, p, maintenance_s, ret), left))
        if ret == "original":
            first = out["plans"][names[0]]
            bal = packing(reads, names[1:], first["free_after_mib"], p["headroom_mib"])
    # batch auto: the most hosts out at once whose every step the cluster absorbs (chosen, then planned and run)
    t0 = time.perf_counter()
    auto = BATCH.auto_batch(reads, answers, names, p)
    steps = [names[i:i + auto["batch"]] for i in range(0, len(names), auto["batch"])]
    out = CL.plan_run(reads, answers, steps, p, return_vms="original")
    took = time.perf_counter() - t0
    left = sum(len(pl["left"]) for pl in out["plans"].values())
    rows.append(("auto: %d" % auto["batch"], took, out["moves"], out["moves"] / float(vms),
                 max(out["moves_per_vm"].values() or [0]), out["moved_mib"] / 1024.0,
                 simulate_steps(out, steps, p, maintenance_s), left))
    return vms, rows, bal


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--maintenance-s", type=float, default=300.0)
    a = ap.parse_args()
    print()
    print("cluster plan on the controller, simulated clusters (20 VMs a host, %d s maintenance a host)"
          % a.maintenance_s)
    print("%-6s %-7s %-12s %9s %7s %9s %9s %10s %12s %5s" % ("hosts", "VMs", "placement", "plan s", "moves",
                                                             "moves/VM", "max/VM", "GiB moved", "window h", "left"))
    goals = []
    for n in [int(x) for x in a.sizes.split(",")]:
        vms, rows, bal = run_size(n, a.maintenance_s)
        for label, took, moves, per_vm, most, gib, window, left in rows:
            print("%-6d %-7d %-12s %9.2f %7d %9.3f %9d %10.0f %12.2f %5d" % (
                n, vms, label, took, moves, per_vm, most, gib, window / 3600.0, left))
        home, wave = rows[0], rows[2]
        print("       packing of the first drain: the fullest receiving host keeps %.0f MiB free, perfectly even filling "
              "%.0f MiB (ratio %.3f); the wave moves %.2f x the bytes of return home" % (
                  bal["kept_mib"], bal["bound_mib"], bal["ratio"] or 0, wave[5] / home[5]))
        if n >= 1000:
            goals = [("plan of 1,000 hosts <= 30 s", max(r[1] for r in rows[:3]), 30.0),
                     ("packing within 5 % of the bound", bal["ratio"] or 0, 1.05),
                     ("wave moves <= 1.05 x the VMs", wave[3], 1.05)]
    for what, got, limit in goals:
        print("goal %-34s %8.3f against %6.2f: %s" % (what, got, limit, "met" if got <= limit else "NOT met"))
    print("median per-host plan time at the largest size: %.1f ms" % (
        1000 * statistics.median([r[1] for r in rows]) / max(1, n)))


if __name__ == "__main__":
    main()
