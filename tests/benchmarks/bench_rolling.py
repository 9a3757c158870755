"""Benchmark: what the orchestration costs around the work (issue 22). Prints figures and ratios; asserts nothing.

  - rolling maintenance of the lab's three hypervisors, one guest each, run as AWX runs a job (ansible-runner):
    per host, the rolling overhead = the host's wall (its drain, maintenance, gate and return, plus its share of
    the job's planning) - its moves - its maintenance (tests/lab/rolling_hook.yml restarts libvirtd) - the user's
    gate tasks (none here). Goal: <= 10 s a host.
  - the evacuate_host playbook draining h1 of two guests: the playbook's wall - the drain's own wall (the evacuate
    module's wall_s). Goal: <= 3 s.
  - where the time goes: the job's tasks summed by name (ansible-runner's per-task start and end), the largest first.
Run as root: .venv/bin/python tests/benchmarks/bench_rolling.py [--runs N]  (brings its own lab up and down)
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

GUESTS = [("br1", "h1"), ("br2", "h2"), ("br3", "h3")]
GOAL_HOST_S = 10.0
GOAL_PLAYBOOK_S = 3.0


def _stamp(value):
    """ansible-runner's event time (ISO 8601) as seconds."""
    from datetime import datetime  # pylint: disable=import-outside-toplevel
    return datetime.fromisoformat(value).timestamp() if value else None


def task_times(events):
    """{task name: seconds} summed over the job's per-host task results."""
    out = {}
    for e in events:
        if e["event"] in ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_item_on_ok") and \
                e.get("start") and e.get("end") and e["event"] != "runner_item_on_ok":
            took = _stamp(e["end"]) - _stamp(e["start"])
            key = "%s%s" % ("%s : " % e["role"] if e.get("role") else "", e.get("task") or "?")
            out[key] = out.get(key, 0.0) + took
    return out


def moves_span(moves):
    """Seconds the moves of one drain took, end to end (they may run side by side)."""
    timed = [m for m in moves if m.get("start_s") is not None and m.get("total_time_s") is not None]
    if not timed:
        return 0.0
    return max(m["start_s"] + m["total_time_s"] for m in timed) - min(m["start_s"] for m in timed)


def phase_s(record, phase):
    p = (record.get("phases") or {}).get(phase) or {}
    return (p["end"] - p["start"]) if p.get("start") is not None and p.get("end") is not None else 0.0


def rolling_once(i):
    reports = L.state_path("bench-rolling-reports-%d" % i)
    extra = {"rolling_maintenance_report_dir": reports,
             "rolling_maintenance_state_dir": L.state_path("bench-rolling-state") + "/{{ inventory_hostname }}",
             "rolling_maintenance_tasks": os.path.join(L.TOP, "tests", "lab", "rolling_hook.yml"),
             "rolling_maintenance_expected_s": 5, "rolling_maintenance_gate_timeout_s": 60,
             "evacuate_host_headroom_mib": 64}
    t0 = time.monotonic()
    job = L.runner(os.path.join(L.TOP, "playbooks", "rolling_maintenance.yml"), extra, "bench-rolling-%d" % i)
    wall = time.monotonic() - t0
    if job["status"] != "successful":
        raise RuntimeError("the rolling maintenance failed:\n" + job["stdout"][-5000:])
    run_id = [d for d in os.listdir(reports) if os.path.isdir(os.path.join(reports, d))][0]
    with open(os.path.join(reports, run_id, "report.json")) as f:
        rep = json.load(f)
    hosts = rep["hosts"]
    cycles = sum(sum(phase_s(r, ph) for ph in ("drain", "maintenance", "gate", "return")) for r in hosts)
    per_host = {}
    for r in hosts:
        cycle = sum(phase_s(r, ph) for ph in ("drain", "maintenance", "gate", "return"))
        work = moves_span(r.get("drained") or []) + moves_span(r.get("returned") or [])
        per_host[r["name"]] = {
            "wall_s": cycle + (wall - cycles) / len(hosts), "moves_s": work, "maintenance_s": phase_s(r, "maintenance"),
            "phases_s": dict((ph, round(phase_s(r, ph), 1)) for ph in ("drain", "maintenance", "gate", "return"))}
        per_host[r["name"]]["overhead_s"] = per_host[r["name"]]["wall_s"] - work - phase_s(r, "maintenance")
    return {"wall_s": wall, "outside_hosts_s": wall - cycles, "per_host": per_host, "tasks": task_times(job["events"])}


def evacuate_once(i):
    reports = L.state_path("bench-evac-reports-%d" % i)
    extra = {"source": "h1", "evacuate_host_headroom_mib": 64, "evacuate_host_report_dir": reports,
             "evacuate_host_state_dir": L.state_path("bench-evac-state"),
             "evacuate_host_migrate_options": json.dumps({})}
    t0 = time.monotonic()
    job = L.runner(os.path.join(L.TOP, "playbooks", "evacuate_host.yml"), extra, "bench-evac-%d" % i)
    wall = time.monotonic() - t0
    if job["status"] != "successful":
        raise RuntimeError("the drain failed:\n" + job["stdout"][-5000:])
    with open(os.path.join(reports, "h1", "report.json")) as f:
        rep = json.load(f)
    back = L.runner(os.path.join(L.TOP, "playbooks", "evacuate_host.yml"), dict(extra, evacuate_host_return_home=True),
                    "bench-evac-back-%d" % i)
    if back["status"] != "successful":
        raise RuntimeError("the way back failed:\n" + back["stdout"][-5000:])
    return {"wall_s": wall, "drain_s": rep["wall_s"], "tasks": task_times(job["events"])}


def med(values):
    return statistics.median(values) if values else 0.0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args(argv)
    own_lab = not L.load_state()
    if own_lab:
        L.up(3)
    names = [n for n, _h in GUESTS] + ["br4"]
    try:
        for name, host in GUESTS + [("br4", "h1")]:
            L.define_guest(name, host, disk="none", memory_mib=96)
        for name in names:
            L.wait_guest(L.load_state()["guests"][name]["ip"])
        rolls = [rolling_once(i) for i in range(a.runs)]
        evacs = [evacuate_once(i) for i in range(a.runs)]
        print()
        print("rolling maintenance, 3 hosts, 1-2 guests each (96 MiB), maintenance restarts libvirtd; %d runs" % a.runs)
        print("%-8s %10s %10s %14s %12s %24s" % ("host", "wall s", "moves s", "maintenance s", "overhead s", "goal"))
        for h in ("h1", "h2", "h3"):
            rows = [r["per_host"][h] for r in rolls]
            over = med([x["overhead_s"] for x in rows])
            print("%-8s %10.1f %10.1f %14.1f %12.1f %24s" % (
                h, med([x["wall_s"] for x in rows]), med([x["moves_s"] for x in rows]),
                med([x["maintenance_s"] for x in rows]), over,
                "<= %.0f s: %s" % (GOAL_HOST_S, "met" if over <= GOAL_HOST_S else "missed by %.1f s (x%.1f)" % (
                    over - GOAL_HOST_S, over / GOAL_HOST_S))))
        print("job wall %.1f s, of which outside the hosts' phases (planning, reports) %.1f s" % (
            med([r["wall_s"] for r in rolls]), med([r["outside_hosts_s"] for r in rolls])))
        phases = dict((h, rolls[-1]["per_host"][h]["phases_s"]) for h in ("h1", "h2", "h3"))
        print("per host phases (last run): %s" % json.dumps(phases))
        gap = med([e["wall_s"] - e["drain_s"] for e in evacs])
        print("\nevacuate_host playbook, h1 with 2 guests: playbook %.1f s, drain %.1f s, playbook - drain %.1f s "
              "(goal <= %.0f s: %s)" % (med([e["wall_s"] for e in evacs]), med([e["drain_s"] for e in evacs]), gap,
                                        GOAL_PLAYBOOK_S, "met" if gap <= GOAL_PLAYBOOK_S else "missed by %.1f s" % (
                                            gap - GOAL_PLAYBOOK_S)))
        for label, tasks in (("rolling maintenance job", rolls[-1]["tasks"]), ("evacuate_host job", evacs[-1]["tasks"])):
            print("\nwhere the time goes, %s (task time summed over hosts, the largest):" % label)
            for name, secs in sorted(tasks.items(), key=lambda x: -x[1])[:40]:
                print("  %7.1f s  %s" % (secs, name[:110]))
        print("\nBENCH ROLLING %s" % json.dumps({
            "host_overhead_s": dict((h, round(med([r["per_host"][h]["overhead_s"] for r in rolls]), 1))
                                    for h in ("h1", "h2", "h3")),
            "playbook_minus_drain_s": round(gap, 1), "runs": a.runs}))
    finally:
        for name in names:
            L.remove_guest(name)
        if own_lab:
            L.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
