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
  - the calibration: a world whose rates the model is not told (and noisy, with VMs slower than their size says),
    two windows - the first predicted from the configured guesses, the second from what the first measured, through
    the roles' own calibration code (each host's samples, merged) - and the median error of a host's drain.
Goals (issue 23): 1,000 hosts / 20,000 VMs planned in <= 30 s, packing within 5 % of the bound, the wave's moves
<= 1.05 x the VMs (return home: 2 x), the calibrated drain's median error <= 25 %.

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

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import calibration as CAL  # noqa: E402
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import cluster as CL  # noqa: E402
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import batch as BATCH  # noqa: E402
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import planner as P  # noqa: E402
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as ROLLING  # noqa: E402

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


# The calibration under a world the model does not know (tests of the calibration, not of the plan): each move of
# a VM takes TRUE_OVERHEAD_S + its memory / TRUE_RATE_MIBPS, a VM that rewrites its memory (BUSY_SHARE of them, the
# same ones every month) BUSY_FACTOR times that, every move and every role run varied by a log-normal NOISE; the
# plan starts from the configured guesses (p), then learns from the first window's drains, as the roles do.
TRUE_RATE_MIBPS, TRUE_OVERHEAD_S, TRUE_FIXED_S, TRUE_ROLE_S = 900.0, 3.0, 0.5, 10.0
BUSY_SHARE, BUSY_FACTOR, NOISE = 0.1, 2.5, 0.2


def drained(h, plan, busy, rng, p):
    """What host H's drain of PLAN measures in the simulated world: the evacuate report (its moves' times, each
    noisy, scheduled under the limits) and the role's wall."""
    true = {}
    for m in plan["moves"]:
        t = TRUE_OVERHEAD_S + m["memory_mib"] / TRUE_RATE_MIBPS
        true[m["name"]] = t * (BUSY_FACTOR if m["name"] in busy else 1.0) * rng.lognormvariate(0.0, NOISE)
    moves = [{"name": m["name"], "source": h, "dest": m["destination"], "memory_mib": m["memory_mib"]}
             for m in plan["moves"]]
    timeline, span = P.schedule(moves, p["rate_mibps"], p["max_outbound"], p["max_inbound"], p["max_total"],
                                durations=true)
    wall = span + TRUE_FIXED_S
    report = {"plan": {"moves": [{"name": m["name"], "memory_mib": m["memory_mib"]} for m in plan["moves"]]},
              "wall_s": wall,
              "results": [{"name": t["name"], "state": "migrated", "method": "live", "start_s": t["start_s"],
                           "end_s": t["end_s"], "total_time_s": t["end_s"] - t["start_s"]} for t in timeline]}
    return report, wall + TRUE_ROLE_S * rng.lognormvariate(0.0, NOISE)


def predicted(out, names, opts):
    """{host: its drain's seconds} as the rolling role predicts them: the cluster plan's entries (rolling.cluster_plan,
    the role's rolling_plan filter) over the drains OUT (cluster.plan_run, planned with the options OPTS gives -
    calibration.plan_options: rate, a move's cost, each VM's own pace, the drain's fixed cost) and the role's cost
    beyond the moves from OPTS."""
    cp = ROLLING.cluster_plan([{"name": h, "record": {}, "plan": out["plans"][h]} for h in names], names,
                              expected_s=0, return_vms="stay", role_overhead_s=opts["role_overhead_s"],
                              role_overheads=opts["role_overheads"])
    return dict((e["name"], e["predicted"]["drain_s"]) for e in cp["hosts"])


def with_options(p, opts):
    """The planning options P with what the calibration OPTS measured."""
    return dict(p, **dict((k, opts[k]) for k in ("rate_mibps", "overhead_s", "fixed_s", "move_times")))


def calibration_error(reads, answers, names, p, seed=7):
    """Two monthly windows of the simulated cluster, one host out at a time: the first predicted from the configured
    guesses, the second from what the first measured (each host's calibration kept on the host, merged for the plan,
    as rolling_maintenance does). Returns the median error of a host's drain (its role's wall) for each window."""
    rng = random.Random(seed)
    vms = sorted(d["name"] for r in reads.values() for d in r["domains"])
    busy = set(rng.sample(vms, int(BUSY_SHARE * len(vms))))
    guess = CAL.plan_options({}, p["rate_mibps"], p["overhead_s"], drains_alongside=0)
    out = CL.plan_run(reads, answers, [[h] for h in names], with_options(p, guess), return_vms="original")
    plans = dict((h, out["plans"][h]) for h in names if out["plans"][h]["moves"])
    want = predicted(out, names, guess)
    own, errors = {}, [[], []]
    for h, plan in sorted(plans.items()):
        report, role_wall = drained(h, plan, busy, rng, p)
        errors[0].append(abs(want[h] - role_wall) / role_wall)
        own[h] = CAL.update({}, report, role_wall_s=role_wall, drains_alongside=0, phase="drain")
    t0 = time.perf_counter()
    merged = CAL.merge(list(own.values()), default_rate=p["rate_mibps"])
    opts = CAL.plan_options(merged, p["rate_mibps"], p["overhead_s"], drains_alongside=0)
    took = time.perf_counter() - t0
    # (next month's plan, from what this one measured: the same cluster, so the same VMs go the same ways)
    want = predicted(CL.plan_run(reads, answers, [[h] for h in names], with_options(p, opts), return_vms="original"),
                     names, opts)
    for h, plan in sorted(plans.items()):
        _report, role_wall = drained(h, plan, busy, rng, p)
        errors[1].append(abs(want[h] - role_wall) / role_wall)
    return {"guessed_pct": 100 * statistics.median(errors[0]), "calibrated_pct": 100 * statistics.median(errors[1]),
            "p90_calibrated_pct": 100 * sorted(errors[1])[int(0.9 * (len(errors[1]) - 1))],
            "samples_kept": len(merged["moves"]), "vms_known": len(opts["move_times"]), "merge_s": took}


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
    return vms, rows, bal, calibration_error(reads, answers, names, p)


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
        vms, rows, bal, cal = run_size(n, a.maintenance_s)
        for label, took, moves, per_vm, most, gib, window, left in rows:
            print("%-6d %-7d %-12s %9.2f %7d %9.3f %9d %10.0f %12.2f %5d" % (
                n, vms, label, took, moves, per_vm, most, gib, window / 3600.0, left))
        home, wave = rows[0], rows[2]
        print("       packing of the first drain: the fullest receiving host keeps %.0f MiB free, perfectly even filling "
              "%.0f MiB (ratio %.3f); the wave moves %.2f x the bytes of return home" % (
                  bal["kept_mib"], bal["bound_mib"], bal["ratio"] or 0, wave[5] / home[5]))
        print("       calibration (a world the model does not know: %.0f MiB/s, %.0f s a move, %d %% of the VMs %.1f x "
              "slower, %.0f %% noise): a host's drain predicted %.1f %% off (median) from the configured guesses, "
              "%.1f %% (p90 %.1f %%) once calibrated by the first window; each VM's own pace known for %d of %d "
              "VMs (the merged calibration keeps the last %d moves)" % (
                  TRUE_RATE_MIBPS, TRUE_OVERHEAD_S, 100 * BUSY_SHARE, BUSY_FACTOR, 100 * NOISE, cal["guessed_pct"],
                  cal["calibrated_pct"], cal["p90_calibrated_pct"], cal["vms_known"], vms, cal["samples_kept"]))
        if n >= 1000:
            goals = [("plan of 1,000 hosts <= 30 s", max(r[1] for r in rows[:3]), 30.0),
                     ("packing within 5 % of the bound", bal["ratio"] or 0, 1.05),
                     ("wave moves <= 1.05 x the VMs", wave[3], 1.05),
                     ("calibrated drain error <= 25 % (median)", cal["calibrated_pct"], 25.0)]
    for what, got, limit in goals:
        print("goal %-42s %8.3f against %6.2f: %s" % (what, got, limit, "met" if got <= limit else "NOT met"))
    print("median per-host plan time at the largest size: %.1f ms" % (
        1000 * statistics.median([r[1] for r in rows]) / max(1, n)))


if __name__ == "__main__":
    main()
