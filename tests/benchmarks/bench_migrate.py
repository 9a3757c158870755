"""Benchmark: the migrate engine against plain `virsh migrate --live` on the same lab guests (issue 4).
Prints figures and ratios; asserts nothing.

  (1) idle guest: client-observed blackout (longest gap in 100 Hz pings) and wall time, ours vs virsh
  (2) a guest rewriting 64 MiB flat out, link capped at 32 MiB/s: virsh (given 4 x RAM/bandwidth)
      against ours with post-copy allowed and ours without; total time against RAM/bandwidth.
Run as root: .venv/bin/python tests/benchmarks/bench_migrate.py  (brings its own lab up and down)
"""
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

CAP = 32          # MiB/s
RAM = 256         # MiB
ROUNDS = 3


def engine():
    sys.path.insert(0, L.collections_path())
    from ansible_collections.vmmigration.libvirt.plugins.module_utils._client import LibvirtClient  # pylint: disable=import-outside-toplevel
    from ansible_collections.vmmigration.libvirt.plugins.module_utils import _migration as M  # pylint: disable=import-outside-toplevel
    M.start_event_loop()
    defaults = M.option_defaults(M.migration_argspec())

    def ours(name, src, dst, **kw):
        opts = dict(defaults, dest_uri=L.tcp_uri(dst), **kw)
        t0 = time.monotonic()
        try:
            r = M.LiveMigration(LibvirtClient(L.uri(src)), LibvirtClient(L.uri(dst)), name, opts).run()
        except M.MigrationError as e:
            r = dict(e.result, error=e.msg)
        r["wall_s"] = time.monotonic() - t0
        return r
    return ours


def virsh(name, src, dst, bandwidth=None, timeout=None):
    cmd = ["virsh", "-c", L.uri(src), "migrate", "--live", "--p2p", "--persistent", "--undefinesource", name,
           L.tcp_uri(dst)]
    if bandwidth:
        cmd += ["--bandwidth", str(bandwidth)]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        p.wait(timeout=timeout)
        finished = p.returncode == 0
    except subprocess.TimeoutExpired:
        L.virsh(src, "domjobabort", name, check=False)
        p.wait(60)
        finished = False
    return {"wall_s": time.monotonic() - t0, "finished": finished}


def probed(ip, fn):
    with L.Blackout(ip) as b:
        r = fn()
    return r, b.result


def main():
    own_lab = not L.load_state()
    if own_lab:
        L.up(3)
    ours = engine()
    try:
        idle = L.define_guest("bench_idle", "h1", disk="nbd")
        busy = L.define_guest("bench_busy", "h1", disk="nbd", mem_workload_mib=64, mem_rate=0)
        L.wait_guest(idle["ip"])
        L.wait_guest(busy["ip"])
        host = "h1"
        rows = {"virsh": [], "ours": []}
        for i in range(ROUNDS * 2):
            tool = "virsh" if i % 2 == 0 else "ours"
            dst = "h2" if host == "h1" else "h1"
            fn = (lambda s=host, d=dst: virsh("bench_idle", s, d)) if tool == "virsh" else \
                (lambda s=host, d=dst: ours("bench_idle", s, d))
            r, probe = probed(idle["ip"], fn)
            rows[tool].append((r["wall_s"], probe["max_gap_ms"]))
            host = dst
            time.sleep(1)
        print()
        print("(1) idle guest, %d MiB, NBD disk, %d runs each (alternating)" % (RAM, ROUNDS))
        print("%-8s %14s %18s" % ("tool", "wall s (med)", "blackout ms (med)"))
        med = {}
        for tool in ("virsh", "ours"):
            w = statistics.median(x[0] for x in rows[tool])
            g = statistics.median(x[1] for x in rows[tool])
            med[tool] = (w, g)
            print("%-8s %14.2f %18.1f" % (tool, w, g))
        print("ratio ours/virsh: wall %.2f, blackout %.2f (ours includes checks, storage proof and a 1 s "
              "dirty-rate sample)" % (med["ours"][0] / med["virsh"][0], med["ours"][1] / med["virsh"][1]))

        bound = RAM / float(CAP)
        r_v, p_v = probed(busy["ip"], lambda: virsh("bench_busy", "h1", "h2", bandwidth=CAP, timeout=4 * bound))
        where = "h2" if r_v["finished"] else "h1"
        other = "h1" if where == "h2" else "h2"
        r_pc, p_pc = probed(busy["ip"], lambda: ours("bench_busy", where, other, bandwidth_mibps=CAP,
                                                     allow_postcopy=True))
        r_ac, p_ac = probed(busy["ip"], lambda: ours("bench_busy", other, where, bandwidth_mibps=CAP))
        print()
        print("(2) guest rewriting 64 MiB flat out, %d MiB RAM, link capped at %d MiB/s (RAM/bandwidth = %.1f s)"
              % (RAM, CAP, bound))
        print("%-28s %9s %9s %12s %14s" % ("run", "finished", "total s", "x RAM/bw", "blackout ms"))
        print("%-28s %9s %9.1f %12.2f %14.1f" % ("virsh migrate --live", r_v["finished"], r_v["wall_s"],
                                                 r_v["wall_s"] / bound, p_v["max_gap_ms"]))
        for label, r, p in (("ours, post-copy allowed", r_pc, p_pc), ("ours, no post-copy", r_ac, p_ac)):
            print("%-28s %9s %9.1f %12.2f %14.1f   strategy %s, libvirt downtime %s ms" % (
                label, r.get("state") == "migrated", r.get("total_time_s") or 0,
                (r.get("total_time_s") or 0) / bound, p["max_gap_ms"], (r.get("plan") or {}).get("strategy"),
                r.get("downtime_ms")))
        print("goals: idle blackout no worse than virsh: %s; busy with post-copy within 2 x RAM/bw: %s, "
              "blackout <= 300 ms: %s" % (
                  "met" if med["ours"][1] <= med["virsh"][1] * 1.1 else "NOT met (%.0f vs %.0f ms)" % (
                      med["ours"][1], med["virsh"][1]),
                  "met" if (r_pc.get("total_time_s") or 1e9) <= 2 * bound else "NOT met",
                  "met" if p_pc["max_gap_ms"] <= 300 else "NOT met"))
        busy_rows = {"virsh": [r_v, p_v["max_gap_ms"]],
                     "postcopy": [r_pc.get("total_time_s"), p_pc["max_gap_ms"]],
                     "converge": [r_ac.get("total_time_s"), p_ac["max_gap_ms"]]}
        print(json.dumps({"idle": med, "busy": busy_rows}, default=str))
    finally:
        if own_lab:
            L.down()


if __name__ == "__main__":
    main()
