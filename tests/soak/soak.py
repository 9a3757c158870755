"""Soak: guests that rewrite their memory, moved again and again through the collection's migration
engine with every strategy, and a plain-virsh control arm in the same run on the same lab.

Each round moves guest A (and B, for the moves two at a time) between h1 and h2:
  precopy, multifd (2 connections), TLS, auto-converge (link capped below the dirty rate), hybrid
  (post-copy after one pass), post-copy, two at once there and back, a move whose destination
  libvirtd is killed mid pre-copy (must fail with the guest intact on the source) and its rerun once
  libvirtd is back, and precopy home;
and guest V with plain virsh: plain, --auto-converge, --postcopy --postcopy-after-precopy and
--parallel, with the same cap where ours has one.

After every move each moved guest is asked for its state: bad words found by its memory verifier,
whether it answers, whether it rebooted, gaps in its disk counter. The table counts them per arm and
strategy. Exit status 1 when any guest of either arm was damaged or any move of ours did not end as it
should (migrated; rolled back for the killed one) (a damaged control-arm guest means the lab's QEMU itself corrupts: no result of ours
could then be trusted).

  .venv/bin/python tests/soak/soak.py --rounds 1    # the slice CI runs (about 15 moves)
  bash tests/soak.sh                                 # the full soak: 9 rounds, 117 moves of ours
                                                     # (9 of them the killed ones, which must fail)
"""
import argparse
import collections
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))
import moves  # noqa: E402  pylint: disable=wrong-import-position
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

HOSTS = ("h1", "h2")
WORKLOAD = dict(memory_mib=256, mem_workload_mib=48, mem_rate=24, disk="nbd", disk_ms=100)
CAP = 16   # MiB/s: below the writers' 24 MiB/s, so only auto-converge or post-copy finish


class Soak:
    def __init__(self):
        self.ours = moves.engine()
        self.rows = collections.OrderedDict()
        self.failures = []
        self.ips = {}
        self.host = {}

    def row(self, arm, strategy):
        return self.rows.setdefault((arm, strategy), collections.Counter())

    def guest(self, name, host):
        g = L.define_guest(name, host, **WORKLOAD)
        self.ips[name], self.host[name] = g["ip"], host
        L.wait_guest(g["ip"], disk=True)

    def record(self, arm, strategy, befores, ok, detail):
        """Count one move of the guests in BEFORES ({name: status}); OK: the move did what it should."""
        r = self.row(arm, strategy)
        r["moves"] += len(befores)
        if not ok:
            r["failed moves"] += 1
            if arm == "ours":     # (a control-arm move that did not finish is counted, not a failure)
                self.failures.append("%s %s: %s" % (arm, strategy, detail))
        for name, before in befores.items():
            after = moves.settled_status(self.ips[name])
            d = moves.damage(before, after)
            for k, v in d.items():
                r[k] += v
            if any(d.values()):
                self.failures.append("%s %s: %s damaged %s\n%s" % (arm, strategy, name, d, L.console_log(name)))
            # (a destination that lost its libvirtd mid-move still has the half-migrated copy; libvirtd,
            # started again, removes it by itself: given 30 s)
            state = moves.settled_place(name, HOSTS, {self.host[name]: "running"}, timeout=30)
            if state != {self.host[name]: "running"}:
                r["wrong place"] += 1
                self.failures.append("%s %s: %s expected running on %s only, found %s" % (
                    arm, strategy, name, self.host[name], state))

    def move(self, strategy, names, **opts):
        """Ours: NAMES (one or two at once) to the other host."""
        befores = dict((n, L.guest_status(self.ips[n])) for n in names)
        calls = []
        for n in names:
            src = self.host[n]
            dst = HOSTS[1 - HOSTS.index(src)]
            calls.append(lambda n=n, s=src, d=dst: self.ours(n, s, d, **opts))
        results = moves.concurrently(*calls)
        ok = all(r.get("state") in ("migrated",) for r in results)
        for n, r in zip(names, results):
            if r.get("state") == "migrated":
                self.host[n] = HOSTS[1 - HOSTS.index(self.host[n])]
                L.set_guest_host(n, self.host[n])
        self.record("ours", strategy, befores, ok, "; ".join(str(r.get("error")) for r in results if r.get("error")))
        return results

    def virsh(self, strategy, name, flags, timeout=120):
        before = {name: L.guest_status(self.ips[name])}
        src = self.host[name]
        dst = HOSTS[1 - HOSTS.index(src)]
        r = moves.virsh_move(name, src, dst, flags, timeout=timeout)
        if r["finished"]:
            self.host[name] = dst
            L.set_guest_host(name, dst)
        self.record("virsh", strategy, before, r["finished"], r["error"])

    def killed_mid_precopy(self, name):
        """Ours, with the destination libvirtd killed once pre-copy is under way: the move must fail and
        leave the guest intact on the source; libvirtd comes back; the rerun must succeed."""
        status_file = L.state_path("soak-status-%s.json" % name)
        if os.path.exists(status_file):
            os.unlink(status_file)
        src = self.host[name]
        dst = HOSTS[1 - HOSTS.index(src)]
        before = {name: L.guest_status(self.ips[name])}

        def killer():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    with open(status_file) as f:
                        st = json.load(f)
                    if st.get("phase") == "migrating" and (st.get("percent") or 0) > 5:
                        L.kill_libvirtd(dst)
                        return True
                except (OSError, ValueError):
                    pass
                time.sleep(0.1)
            return False
        result, killed = moves.concurrently(
            lambda: self.ours(name, src, dst, bandwidth_mibps=CAP, status_file=status_file), killer)
        L.restart_libvirtd(dst)
        ok = killed and result.get("state") == "rolled_back"
        self.record("ours", "dest libvirtd killed", before, ok,
                    "killed=%s state=%s %s" % (killed, result.get("state"), result.get("error")))
        return self.move("rerun after the kill", [name], bandwidth_mibps=64)

    def round(self):
        self.move("precopy", ["sa"])
        self.move("multifd", ["sa"], parallel_connections=2)
        self.virsh("plain", "sv", [])
        self.move("libvirtd over plain TCP (the stream TLS)", ["sa"], tls_uri=False)
        self.move("auto-converge", ["sa"], bandwidth_mibps=CAP, completion="converge")
        self.virsh("--auto-converge", "sv", ["--auto-converge", "--bandwidth", str(CAP)])
        self.move("hybrid", ["sa"], bandwidth_mibps=CAP, allow_postcopy=True, completion="hybrid")
        self.move("postcopy", ["sa"], allow_postcopy=True, completion="postcopy")
        self.virsh("--postcopy-after-precopy", "sv",
                   ["--postcopy", "--postcopy-after-precopy", "--bandwidth", str(CAP)])
        self.move("two at once", ["sa", "sb"])
        self.move("two at once", ["sa", "sb"])
        self.virsh("--parallel", "sv", ["--parallel", "--parallel-connections", "2"])
        self.killed_mid_precopy("sa")
        self.move("precopy", ["sa"])

    def table(self):
        cols = ["moves", "failed moves", "bad_words", "dead", "rebooted", "disk_gaps", "wrong place"]
        print("\n%-7s %-26s " % ("arm", "strategy") + " ".join("%12s" % c for c in cols))
        totals = collections.defaultdict(collections.Counter)
        for (arm, strategy), r in self.rows.items():
            print("%-7s %-26s " % (arm, strategy) + " ".join("%12d" % r[c] for c in cols))
            totals[arm].update(r)
        for arm, r in totals.items():
            print("%-7s %-26s " % (arm, "ALL") + " ".join("%12d" % r[c] for c in cols))
        return totals


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--rounds", type=int, default=9)
    a = ap.parse_args(argv)
    own_lab = not L.load_state()
    if own_lab:
        L.up(3)
    t0 = time.monotonic()
    soak = Soak()
    try:
        st = L.load_state()
        versions = st["versions"]
        print("soak: %d round(s) on QEMU %s / libvirt %s" % (a.rounds, versions["qemu"], versions["libvirt"]),
              flush=True)
        for name, host in (("sa", "h1"), ("sb", "h1"), ("sv", "h1")):
            soak.guest(name, host)
        for i in range(a.rounds):
            soak.round()
            print("round %d done at %.0f s: %s" % (i + 1, time.monotonic() - t0, dict(
                (k[0] + " " + k[1], v["moves"]) for k, v in soak.rows.items())), flush=True)
    finally:
        totals = soak.table()
        print("soak: %.0f s; ours %d moves, %d bad words, %d dead guests; virsh %d moves, %d bad words, %d dead "
              "guests" % (time.monotonic() - t0, totals["ours"]["moves"], totals["ours"]["bad_words"],
                          totals["ours"]["dead"], totals["virsh"]["moves"], totals["virsh"]["bad_words"],
                          totals["virsh"]["dead"]))
        if own_lab:
            L.down()
    if soak.failures:
        print("\nSOAK FAILED:\n" + "\n".join(soak.failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
