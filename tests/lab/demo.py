"""The main job, lab edition: bring the lab up, boot two guests on h1 (one idle, one rewriting
64 MiB of memory flat out), live-migrate each to h2 with the collection's playbook
(vmmigration.libvirt.migrate_vm) while the client namespace pings it at 100 Hz and reads its
integrity counters, print what the client saw, and tear the lab down (always).

Until the evacuation role exists (issue 6) this migrates VM by VM."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOK = os.path.join(L.TOP, "playbooks", "migrate_vm.yml")
GUESTS = [
    ("demo-idle", dict(disk="nbd"), {}),
    ("demo-busy", dict(disk="nbd", mem_workload_mib=64, mem_rate=0),
     {"allow_postcopy": True, "bandwidth_mibps": 32}),
]


def main():
    if L.load_state():
        print("a lab is already up; run 'tests/lab/lab down' first", file=sys.stderr)
        return 1
    rows, ok = [], True
    try:
        st = L.up(3)
        t0 = time.monotonic()
        for name, kw, _opts in GUESTS:
            L.define_guest(name, "h1", **kw)
        for name, _kw, _opts in GUESTS:
            L.wait_guest(L.load_state()["guests"][name]["ip"])
        boot = time.monotonic() - t0
        time.sleep(1)
        for name, _kw, opts in GUESTS:
            g = L.load_state()["guests"][name]
            before = L.guest_status(g["ip"])
            result_file = L.state_path("demo-%s.json" % name)
            with L.Blackout(g["ip"], hz=100) as probe:
                p = L.playbook(PLAYBOOK, extra_vars=dict(vm=name, source="h1", destination="h2",
                                                         result_file=result_file, **opts))
            time.sleep(1)
            try:
                after = L.wait_guest(g["ip"], timeout=30)
            except L.LabError:
                after = None
            if p.returncode != 0:
                print(p.stdout[-3000:])
                ok = False
                continue
            with open(result_file) as f:
                r = json.load(f)
            good = (after is not None and after["boot_id"] == before["boot_id"] and after.get("mem_bad_words", 0) == 0
                    and after["disk_gaps"] == 0 and after["disk_seq"] > before["disk_seq"])
            ok = ok and good
            if not good:
                print("%s after the migration: %s\nconsole:\n%s" % (name, after, L.console_log(name)))
            rows.append((name, r, probe.result, before, after, good))
        print()
        print("lab up %.1f s; two guests booted and answering in %.1f s (TCG)" % (st["up_seconds"], boot))
        print("live migration h1 -> h2 with vmmigration.libvirt.migrate_vm; the client pinged each guest at 100 Hz")
        print()
        print("%-10s %-9s %8s %12s %14s %9s %22s %10s" % ("vm", "strategy", "total s", "downtime ms",
                                                          "client gap ms", "lost", "disk counter", "bad words"))
        for name, r, pr, before, after, good in rows:
            print("%-10s %-9s %8.2f %12s %14.0f %5d/%-4d %10d -> %-8d %10s%s" % (
                name, r["plan"]["strategy"], r["total_time_s"], r["downtime_ms"], pr["max_gap_ms"], pr["lost"],
                pr["sent"], before["disk_seq"], after["disk_seq"] if after else -1,
                after.get("mem_bad_words", 0) if after else "?", "" if good else "  <-- PROBLEM"))
        print()
        for name, r, _pr, _b, _a, _g in rows:
            print("%s: %s" % (name, r["plan"]["reason"]))
            for d in r["decisions"]:
                print("   +%6.2f s  %-14s %s" % (d["t"], d["action"], d["reason"]))
        return 0 if ok else 1
    finally:
        L.down()


if __name__ == "__main__":
    sys.exit(main())
