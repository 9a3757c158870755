"""Benchmark: evacuation planning at scale (issue 6). Prints figures and ratios; asserts nothing.

10,000 VMs from 1,000 hosts being drained... placed on the other hosts of a 1,000-host cloud, with
anti-affinity groups and some compatibility restrictions: planner time (goal <= 2 s) and how close
the packing is to the fluid lower bound (the fullest host against perfectly even use); and the
schedule of one host's drain against its lower bound (bytes / link rate).
"""
import importlib.util
import os
import random
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def planner():
    """plugins/module_utils/decide/planner.py is pure (no imports from the collection): load it by path."""
    spec = importlib.util.spec_from_file_location(
        "planner", os.path.join(HERE, "..", "..", "plugins", "module_utils", "decide", "planner.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    P = planner()
    rnd = random.Random(42)
    hosts = [{"name": "hv%04d" % i, "capacity_mib": rnd.choice([262144, 524288])} for i in range(1000)]
    for h in hosts:
        h["free_mib"] = h["capacity_mib"] * rnd.uniform(0.35, 0.6)
        h["groups"] = ["grp%d" % rnd.randrange(500) for _n in range(rnd.randrange(3))]
    vms = [{"name": "vm%05d" % i, "memory_mib": rnd.choice([1024, 2048, 4096, 8192, 16384, 32768]),
            "group": "grp%d" % rnd.randrange(500) if rnd.random() < 0.3 else None,
            "allowed": rnd.sample([h["name"] for h in hosts], 4) if rnd.random() < 0.05 else None}
           for i in range(10000)]
    t0 = time.perf_counter()
    out = P.place(vms, hosts, headroom_mib=4096)
    took = time.perf_counter() - t0
    bal = P.balance(hosts, out["free_after"])
    placed = len(out["placements"])
    print()
    print("planner: %d VMs over %d hosts placed in %.3f s (goal <= 2 s: %s); %d placed, %d unplaced" % (
        len(vms), len(hosts), took, "met" if took <= 2 else "NOT met", placed, len(out["unplaced"])))
    print("packing: fullest host at %.1f%% against a fluid lower bound of %.1f%% (ratio %.3f)" % (
        100 * bal["max_utilisation"], 100 * bal["lower_bound"], bal["ratio"]))
    # one host's drain, 40 VMs, 1 GiB/s link, 2 outbound at once
    drain = [{"name": v["name"], "source": "hv0000", "dest": out["placements"].get(v["name"], "hv0001"),
              "memory_mib": v["memory_mib"]} for v in vms[:40]]
    t0 = time.perf_counter()
    _timeline, makespan = P.schedule(drain, rate_mibps=1024, max_out=2, max_in=2, max_total=8, overhead_s=2)
    took = time.perf_counter() - t0
    durations = [2 + m["memory_mib"] / 1024.0 for m in drain]
    bound = max([sum(durations) / 2] + durations)   # 2 at once, each as long as it must take
    print("schedule of a 40-VM drain (1 GiB/s per migration, 2 at once): %.1f s predicted, lower bound %.1f s "
          "(ratio %.2f), computed in %.4f s" % (makespan, bound, makespan / bound, took))


if __name__ == "__main__":
    main()
