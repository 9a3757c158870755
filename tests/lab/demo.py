"""The main job, lab edition: bring the lab up with six guests on h1 - idle, memory-dirtying, on a
shared network disk (NBD), on a shared file disk, on a local disk that needs a storage copy, and one
that cannot live-migrate (host page cache on shared storage) - and drain h1 with the collection's
playbook (vmmigration.libvirt.evacuate_host, non-live policy 'cold') while the client namespace pings
every guest and reads its integrity counters; print the drain's report and what each guest saw, and
tear the lab down (always).

With --rolling: the rolling maintenance instead - two guests on each of the three hosts (one idle, one rewriting
its memory), vmmigration.libvirt.rolling_maintenance over all three with a maintenance that restarts each host's
libvirtd (tests/lab/rolling_hook.yml), every guest probed by the client throughout; prints the run's report (per
host each phase against its prediction) and per VM what it saw and where it ended."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOK = os.path.join(L.TOP, "playbooks", "evacuate_host.yml")
GUESTS = [
    ("demo-idle", dict(disk="nbd", memory_mib=128)),
    ("demo-busy", dict(disk="nbd", memory_mib=192, mem_workload_mib=64, mem_rate=24)),
    ("demo-nbd", dict(disk="nbd", memory_mib=128)),
    ("demo-shared", dict(disk="shared", memory_mib=128)),
    ("demo-local", dict(disk="local", memory_mib=128)),
    ("demo-cache", dict(disk="shared", memory_mib=128, disk_cache="writeback")),
]


ROLLING_GUESTS = [("roll-%s-%s" % (h, kind), h, kw) for h in ("h1", "h2", "h3")
                  for kind, kw in (("idle", dict(disk="none", memory_mib=96)),
                                   ("busy", dict(disk="none", memory_mib=128, mem_workload_mib=32, mem_rate=16)))]


def rolling():
    """The rolling maintenance demo (see the module's docstring)."""
    ok = True
    try:
        st = L.up(3)
        for name, host, kw in ROLLING_GUESTS:
            L.define_guest(name, host, **kw)
        guests = L.load_state()["guests"]
        for name, _h, _kw in ROLLING_GUESTS:
            L.wait_guest(guests[name]["ip"])
        time.sleep(1)
        before = dict((n, L.guest_status(guests[n]["ip"])) for n, _h, _kw in ROLLING_GUESTS)
        reports = L.state_path("rolling-reports")
        run_id = "demo-%d" % int(time.time())
        extra = {"rolling_maintenance_run_id": run_id, "rolling_maintenance_report_dir": reports,
                 "rolling_maintenance_state_dir": L.state_path("rolling-state") + "/{{ inventory_hostname }}",
                 "rolling_maintenance_tasks": os.path.join(L.TOP, "tests", "lab", "rolling_hook.yml"),
                 "rolling_maintenance_expected_s": 10, "evacuate_host_headroom_mib": 64,
                 "evacuate_host_progress_interval_s": 2}
        probes = dict((n, L.Blackout(guests[n]["ip"], hz=20)) for n, _h, _kw in ROLLING_GUESTS)
        for pr in probes.values():
            pr.__enter__()
        t1 = time.monotonic()
        try:
            p = L.playbook(os.path.join(L.TOP, "playbooks", "rolling_maintenance.yml"), extra_vars=extra)
        finally:
            wall = time.monotonic() - t1
            for pr in probes.values():
                pr.__exit__(None, None, None)
        start = p.stdout.find("cluster plan:")
        print(p.stdout[start:start + 3000].split("TASK [")[0] if start >= 0 else "")
        if p.returncode != 0:
            print(p.stdout[-6000:])
            ok = False
        try:
            with open(os.path.join(reports, run_id, "report.json")) as f:
                report = json.load(f)
            with open(os.path.join(reports, run_id, "report.txt")) as f:
                table = f.read()
        except (IOError, ValueError):
            report, table = {"ends": {}}, ""
        print("lab up %.1f s; rolling maintenance of h1, h2, h3 (libvirtd restarted on each): %.1f s" % (
            st["up_seconds"], wall))
        print()
        print(table)
        print("what each guest saw (the client pinged each at 20 Hz and read its counters):")
        head = ("vm", "home", "ends on", "client gap ms", "lost", "bad words", "verdict")
        print("%-16s %-5s %-20s %14s %9s %10s  %s" % head)
        for name, home, _kw in ROLLING_GUESTS:
            try:
                after = L.wait_guest(guests[name]["ip"], timeout=30)
            except L.LabError:
                after = None
            b, pr = before[name], probes[name]
            ends = report.get("ends", {}).get(name, home)
            good = (after is not None and after["boot_id"] == b["boot_id"] and after.get("mem_bad_words", 0) == 0
                    and ends == home)
            ok = ok and good
            if not good:
                print("%s after the run: %s\nconsole:\n%s" % (name, after, L.console_log(name)[-3000:]))
            print("%-16s %-5s %-20s %14.0f %5d/%-4d %10s  %s" % (
                name, home, ends, pr.result.get("max_gap_ms", -1), pr.result.get("lost", -1), pr.result.get("sent", -1),
                after.get("mem_bad_words", 0) if after else "?",
                "kept running, back home" if good else "PROBLEM"))
        print()
        print("report and HTML timeline: %s (removed with the lab)" % os.path.join(reports, run_id))
        return 0 if ok else 1
    finally:
        L.down()


def main():
    if "--rolling" in sys.argv[1:]:
        if L.load_state():
            print("a lab is already up; run 'tests/lab/lab down' first", file=sys.stderr)
            return 1
        return rolling()
    if L.load_state():
        print("a lab is already up; run 'tests/lab/lab down' first", file=sys.stderr)
        return 1
    ok = True
    try:
        st = L.up(3)
        t0 = time.monotonic()
        for name, kw in GUESTS:
            L.define_guest(name, "h1", **kw)
        guests = L.load_state()["guests"]
        for name, _kw in GUESTS:
            L.wait_guest(guests[name]["ip"])
        boot = time.monotonic() - t0
        time.sleep(1)
        before = dict((n, L.guest_status(guests[n]["ip"])) for n, _kw in GUESTS)
        reports = L.state_path("reports")
        extra = {"source": "h1", "evacuate_host_non_live_policy": "cold", "evacuate_host_max_outbound": 2,
                 "evacuate_host_max_inbound": 1, "evacuate_host_headroom_mib": 64,
                 "evacuate_host_state_dir": L.state_path("evac-state"), "evacuate_host_report_dir": reports,
                 "evacuate_host_progress_interval_s": 2,
                 "evacuate_host_migrate_options": {"allow_postcopy": True},
                 "evacuate_host_cold_options": {"shutdown_timeout_s": 30}}
        probes = [L.Blackout(guests[n]["ip"], hz=20) for n, _kw in GUESTS]
        for pr in probes:
            pr.__enter__()
        t1 = time.monotonic()
        try:
            p = L.playbook(PLAYBOOK, extra_vars=extra)
        finally:
            wall = time.monotonic() - t1
            for pr in probes:
                pr.__exit__(None, None, None)
        print(p.stdout[p.stdout.find("TASK [vmmigration.libvirt.evacuate_host : Progress]"):].split("TASK [")[1]
              if "Progress]" in p.stdout else p.stdout[-4000:])
        if p.returncode != 0:
            print(p.stdout[-6000:])
            ok = False
        try:
            with open(os.path.join(reports, "h1", "report.json")) as f:
                report = json.load(f)
        except (IOError, ValueError):
            report = {"results": [], "report": {"table": []}}
        time.sleep(1)
        print("lab up %.1f s; six guests booted and answering in %.1f s (TCG)" % (st["up_seconds"], boot))
        print("drain of h1 with vmmigration.libvirt.evacuate_host: playbook %.1f s, drain %s s" % (
            wall, report.get("wall_s")))
        print()
        for line in report.get("report", {}).get("table", []):
            print(line)
        print()
        print("what each guest saw (the client pinged each at 20 Hz and read its counters):")
        head = ("vm", "method", "client gap ms", "lost", "disk counter", "bad words", "verdict")
        print("%-12s %-18s %14s %9s %22s %10s  %s" % head)
        results = dict((r["name"], r) for r in report.get("results", []))
        for (name, _kw), pr in zip(GUESTS, probes):
            g = guests[name]
            try:
                after = L.wait_guest(g["ip"], timeout=30)
            except L.LabError:
                after = None
            r = results.get(name, {})
            b = before[name]
            if r.get("method") == "cold":
                good = after is not None and r.get("state") == "migrated"
                verdict = "restarted on %s (cold, as the policy says)" % r.get("destination") if good else "PROBLEM"
            else:
                good = (after is not None and after["boot_id"] == b["boot_id"] and after.get("mem_bad_words", 0) == 0
                        and after.get("disk_gaps", 0) == 0 and r.get("state") == "migrated")
                verdict = "kept running on %s" % r.get("destination") if good else "PROBLEM"
            ok = ok and good
            if not good:
                print("%s after the drain: %s\nconsole:\n%s" % (name, after, L.console_log(name)[-3000:]))
            print("%-12s %-18s %14.0f %5d/%-4d %10s -> %-8s %10s  %s" % (
                name, r.get("method", "-"), pr.result.get("max_gap_ms", -1), pr.result.get("lost", -1),
                pr.result.get("sent", -1), b.get("disk_seq", "-"), after.get("disk_seq", "-") if after else "-",
                after.get("mem_bad_words", 0) if after else "?", verdict))
        print()
        print("h1 runs now: %s" % (", ".join(report.get("still_running_on_source") or []) or "nothing"))
        print("report, HTML timeline and journal: %s (removed with the lab)" % os.path.join(reports, "h1"))
        return 0 if ok else 1
    finally:
        L.down()


if __name__ == "__main__":
    sys.exit(main())
