"""Benchmark: our migrate module against plain and tuned `virsh migrate`, like with like.

Every arm encrypts the guest's memory: ours by default (tls=auto finds the lab hosts set up for TLS; a
move of ours in the clear counts as a failure), virsh with --tls, as a careful operator runs it.
Every arm moves the same guest, in turn (runs interleaved, the order rotating every round), so the arms
move it both ways between h1 and h2 (the table counts each arm's directions).
The same two metrics for every arm:
  - wall: from the user's command (`virsh migrate ...`, or `ansible-playbook` running one migrate task
    from the controller namespace) to its end, when the destination runs the guest;
  - blackout: the longest gap the client saw in 100 Hz pings to the guest;
and, where the blackout goes: libvirt's downtime (the guest paused) and the rest (the destination
resuming it, the network learning its new port). Medians with min-max over the runs.

  (1) an idle guest (256 MiB)
  (2) a guest rewriting 64 MiB flat out (256 MiB), the link capped at 32 MiB/s for every arm, in
      pre-copy and in post-copy alike (RAM / cap = 8 s): plain virsh (aborted at 4 x RAM/cap), tuned
      virsh (--auto-converge --postcopy --postcopy-after-precopy), ours with default options (no
      post-copy), ours with allow_postcopy.

After every move the guest's integrity is read (memory verifier, disk counter, same boot, answering):
any damage fails the benchmark (exit 1). Figures, not pass/fail, otherwise; a loss of ours is printed
as a loss.

Run as root: .venv/bin/python tests/benchmarks/bench_migrate.py [--runs 6] [--busy-runs 6]
(brings its own lab up and down)
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))
import moves  # noqa: E402  pylint: disable=wrong-import-position
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

CAP = 32          # MiB/s
RAM = 256         # MiB
TUNED = ["--auto-converge", "--postcopy", "--postcopy-after-precopy"]


def other(host):
    return "h2" if host == "h1" else "h1"


def virsh_arm(flags, timeout=None):
    def run(name, src, dst):
        r = moves.virsh_move(name, src, dst, flags, timeout=timeout)
        if r["finished"]:
            job = L.virsh(dst, "domjobinfo", "--completed", name, check=False).stdout
            down = [l.split()[2] for l in job.splitlines() if l.startswith("Total downtime:")]
            r["downtime_ms"] = int(down[0]) if down else None
        return r
    return run


def ours_arm(**options):
    """One migrate task through ansible-playbook from the controller namespace: the user's command."""
    def run(name, src, dst):
        os.makedirs(L.state_path("ansible", "tmp"), exist_ok=True)
        tree = tempfile.mkdtemp(prefix="tree-", dir=L.state_path("ansible", "tmp"))
        os.environ.update(ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.tree", ANSIBLE_CALLBACK_TREE_DIR=tree)
        extra = dict(vm=name, src=src, dst=dst, **options)
        t0 = time.monotonic()
        p = L.playbook(os.path.join(HERE, "migrate_once.yml"), extra_vars=extra)
        wall = time.monotonic() - t0
        try:
            with open(os.path.join(tree, src)) as f:
                result = json.load(f)
        except (OSError, ValueError):
            result = {"failed": True, "msg": p.stdout[-2000:]}
        transport = (result.get("transport") or {}).get("transport")
        finished = p.returncode == 0 and result.get("state") == "migrated" and transport == "tls"
        if p.returncode == 0 and transport != "tls":
            result["msg"] = "moved with transport %s, not tls: the safe default did not hold" % transport
        return {"wall_s": wall, "finished": finished, "downtime_ms": result.get("downtime_ms"),
                "module_s": result.get("total_time_s"), "strategy": (result.get("plan") or {}).get("strategy"),
                "postcopy": result.get("postcopy"), "error": None if finished else result.get("msg")}
    return run


class Bench:
    def __init__(self, name):
        self.name = name
        self.ip = L.load_state()["guests"][name]["ip"]
        self.host = L.load_state()["guests"][name]["host"]
        self.damage = []

    def move(self, arm):
        src, dst = self.host, other(self.host)
        before = L.guest_status(self.ip)
        with L.Blackout(self.ip) as probe:
            r = arm(self.name, src, dst)
        if r["finished"]:
            self.host = dst
        after = moves.settled_status(self.ip)
        d = moves.damage(before, after)
        place = moves.where(self.name, ("h1", "h2", "h3"))
        if any(d.values()) or place != {self.host: "running"}:
            self.damage.append("%s after %s -> %s: %s, found %s\n%s" % (
                self.name, src, dst, d, place, L.console_log(self.name)))
        r.update(blackout_ms=probe.result.get("max_gap_ms"), direction="%s>%s" % (src, dst))
        return r


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return "%.2f (%.2f-%.2f)" % (statistics.median(values), min(values), max(values))


def interleaved(bench, arms, runs):
    """RUNS rounds, each arm once a round. With an odd number of arms every round starts from the other
    host, so each arm alternates by itself; with an even number the order rotates every round (else the
    guest would come back to the same host and each arm always move the same way)."""
    rows = dict((label, []) for label, _arm in arms)
    for i in range(runs):
        k = i % len(arms) if len(arms) % 2 == 0 else 0
        for label, arm in arms[k:] + arms[:k]:
            rows[label].append(bench.move(arm))
            time.sleep(1)
    return rows


def print_rows(title, rows, bound=None):
    print("\n" + title)
    print("%-34s %5s %22s %22s %16s %16s  %s" % ("arm", "done", "wall s med (min-max)", "blackout ms med",
                                                 "libvirt down ms", "rest of gap ms", "directions"))
    for label, rs in rows.items():
        done = [r for r in rs if r["finished"]]
        dirs = {}
        for r in rs:
            dirs[r["direction"]] = dirs.get(r["direction"], 0) + 1
        rest = [r["blackout_ms"] - r["downtime_ms"] for r in done if r.get("downtime_ms") is not None
                and r.get("blackout_ms") is not None]
        print("%-34s %2d/%-2d %22s %22s %16s %16s  %s" % (
            label, len(done), len(rs), spread([r["wall_s"] for r in done]),
            spread([r["blackout_ms"] for r in done]), spread([r.get("downtime_ms") for r in done]),
            spread(rest), " ".join("%s x%d" % kv for kv in sorted(dirs.items()))))
        extra = [r.get("module_s") for r in done if r.get("module_s") is not None]
        if extra:
            print("%-34s %5s %22s  (the migrate module's own time; the rest of the wall is Ansible)" % (
                "", "", spread(extra)))
        if bound:
            print("%-34s %5s %22s  x RAM/cap" % ("", "", spread([r["wall_s"] / bound for r in done])))
    return dict((label, median_or_none([r["wall_s"] for r in rs if r["finished"]])) for label, rs in rows.items())


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def verdict(what, ours, peer, peer_label):
    if not ours or not peer:
        return "%s: cannot compare (one side never finished)" % what
    return "%s: ours %.2f vs %s %.2f -> ours is %s (ratio %.2f)" % (
        what, ours, peer_label, peer, "better or equal" if ours <= peer else "WORSE", ours / peer)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=6, help="runs per arm, idle guest (even: same directions)")
    ap.add_argument("--busy-runs", type=int, default=6, help="runs per arm, busy guest")
    a = ap.parse_args(argv)
    own_lab = not L.load_state()
    if own_lab:
        L.up(3)
    benches = []
    try:
        st = L.load_state()
        print("QEMU %s, libvirt %s" % (st["versions"]["qemu"], st["versions"]["libvirt"]))
        idle_g = L.define_guest("bench_idle", "h1", memory_mib=RAM, disk="nbd")
        busy_g = L.define_guest("bench_busy", "h1", memory_mib=RAM, disk="nbd", mem_workload_mib=64, mem_rate=0)
        L.wait_guest(idle_g["ip"], disk=True)
        L.wait_guest(busy_g["ip"], disk=True)
        idle, busy = Bench("bench_idle"), Bench("bench_busy")
        benches = [idle, busy]
        rows = interleaved(idle, [("virsh migrate --live", virsh_arm([])),
                                  ("virsh tuned (%s)" % " ".join(TUNED), virsh_arm(TUNED)),
                                  ("ours (migrate task, defaults)", ours_arm())], a.runs)
        idle_med = print_rows("(1) idle guest, %d MiB, NBD disk, %d interleaved runs per arm" % (RAM, a.runs), rows)
        blackout = dict((k, median_or_none([r["blackout_ms"] for r in v if r["finished"]])) for k, v in rows.items())
        bound = RAM / float(CAP)
        cap = ["--bandwidth", str(CAP)]
        brows = interleaved(busy, [
            ("virsh migrate --live", virsh_arm(cap, timeout=4 * bound)),
            ("virsh tuned", virsh_arm(TUNED + cap + ["--postcopy-bandwidth", str(CAP)], timeout=20 * bound)),
            ("ours, defaults (no post-copy)", ours_arm(bandwidth=CAP)),
            ("ours, allow_postcopy", ours_arm(bandwidth=CAP, postcopy_bandwidth=CAP, allow_postcopy=True))],
            a.busy_runs)
        busy_med = print_rows("(2) guest rewriting 64 MiB flat out, %d MiB, link capped at %d MiB/s for every arm "
                              "(RAM/cap = %.0f s), %d interleaved runs per arm" % (RAM, CAP, bound, a.busy_runs),
                              brows, bound)
        print()
        print(verdict("idle wall s", idle_med["ours (migrate task, defaults)"], idle_med["virsh migrate --live"],
                      "plain virsh"))
        own = median_or_none([r.get("module_s") for r in rows["ours (migrate task, defaults)"] if r["finished"]])
        print(verdict("idle, the migrate module's own time vs virsh's wall", own, idle_med["virsh migrate --live"],
                      "plain virsh"))
        print(verdict("idle blackout ms", blackout["ours (migrate task, defaults)"],
                      blackout["virsh migrate --live"], "plain virsh"))
        print(verdict("busy wall s, post-copy allowed", busy_med["ours, allow_postcopy"], busy_med["virsh tuned"],
                      "tuned virsh"))
        print(verdict("busy wall s, no post-copy", busy_med["ours, defaults (no post-copy)"],
                      busy_med["virsh migrate --live"], "plain virsh"))
        print("BENCH_MIGRATE " + json.dumps({"idle_wall_s": idle_med, "idle_blackout_ms": blackout,
                                             "busy_wall_s": busy_med}))
    finally:
        for b in benches:
            L.remove_guest(b.name)
        if own_lab:
            L.down()
    damage = [d for b in benches for d in b.damage]
    if damage:
        print("\nINTEGRITY FAILURE after a benchmark move:\n" + "\n".join(damage))
        return 1
    print("integrity: every guest intact after every benchmark move")
    return 0


if __name__ == "__main__":
    sys.exit(main())
