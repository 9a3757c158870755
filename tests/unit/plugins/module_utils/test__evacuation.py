"""The drain's pure parts: admission under the limits, the policy split, the journal, the report."""
import json
import os
import re

import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import drain as E
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import drain_files as FILES
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import drain_plan as PLAN
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import report as R

LIMITS = {"max_outbound": 2, "max_inbound": 1, "max_total": 4}


def mv(name, dest, method="live"):
    return {"name": name, "destination": dest, "method": method}


def test_admit_honours_outbound_inbound_and_total():
    pending = [mv("a", "h2"), mv("b", "h2"), mv("c", "h3")]
    assert E.admit(pending, [], LIMITS)["name"] == "a"
    # h2 has its one inbound slot taken: the next that fits is c, to h3
    assert E.admit(pending[1:], [mv("a", "h2")], LIMITS)["name"] == "c"
    # two out of the source already
    assert E.admit(pending[1:], [mv("a", "h2"), mv("c", "h3")], LIMITS) is None
    # the global limit below the outbound one
    assert E.admit(pending, [mv("x", "h4")], dict(LIMITS, max_total=1)) is None
    assert E.admit([], [], LIMITS) is None


def test_split_plan_by_policy():
    plan = {"moves": [mv("a", "h2"), mv("c", "h3", "cold")], "left": {"z": "no host fits: not enough memory"}}
    run, left = PLAN.split_plan(plan, "skip")
    assert [m["name"] for m in run] == ["a"]
    assert [(x["name"], x["action"]) for x in left] == [("c", "skip"), ("z", "skip")]
    assert "only a cold migration" in left[0]["reason"]
    run, left = PLAN.split_plan(plan, "shutdown")
    assert [(x["name"], x["action"]) for x in left] == [("c", "shutdown"), ("z", "skip")]
    run, left = PLAN.split_plan(plan, "cold")
    assert [m["name"] for m in run] == ["a", "c"] and [x["name"] for x in left] == ["z"]


def test_journal_survives_a_torn_line(tmp_path):
    path = str(tmp_path / "j")
    FILES.journal_append(path, {"event": "plan"})
    FILES.journal_append(path, {"event": "start", "vm": "a"})
    with open(path, "a") as f:
        f.write('{"event": "end", "vm"')      # the controller died mid-write
    assert [e["event"] for e in FILES.read_journal(path)] == ["plan", "start"]
    assert FILES.read_journal(str(tmp_path / "missing")) == []


def end(vm, state, return_home=False, dest="h2", method="live"):
    return {"event": "end", "vm": vm, "return_home": return_home,
            "result": {"state": state, "destination": dest, "method": method}}


def test_return_moves_from_the_journal():
    journal = [
        {"event": "start", "vm": "a", "uri": "qemu+tcp://h2/system", "destination": "h2"},
        {"event": "start", "vm": "b", "uri": "qemu+tcp://h3/system", "destination": "h3"},
        {"event": "start", "vm": "c", "uri": "qemu+tcp://h2/system", "destination": "h2"},
        end("a", "migrated"), end("b", "migrated", dest="h3", method="cold"), end("c", "rolled_back"),
    ]
    back = FILES.return_moves(journal, "h1")
    assert [(m["name"], m["from_uri"], m["method"], m["destination"]) for m in back] == [
        ("a", "qemu+tcp://h2/system", "live", "h1"), ("b", "qemu+tcp://h3/system", "cold", "h1")]
    # a return that brought a back: only b is still away; a second drain of a counts again
    journal.append(dict(end("a", "migrated", return_home=True)))
    assert [m["name"] for m in FILES.return_moves(journal, "h1")] == ["b"]
    journal += [{"event": "start", "vm": "a", "uri": "qemu+tcp://h3/system"}, end("a", "migrated", dest="h3")]
    assert [(m["name"], m["from_uri"]) for m in FILES.return_moves(journal, "h1")] == [
        ("a", "qemu+tcp://h3/system"), ("b", "qemu+tcp://h3/system")]


def test_validate_plan_options():
    p = {"rate_mibps": 0, "max_outbound": 1, "max_inbound": 1, "max_total": 1, "headroom_mib": -1,
         "destinations": [{"name": "h2"}, {"name": "h2"}], "pinned": {"a": "h9"}}
    problems = PLAN.validate_plan_options(p)
    assert problems == ["rate_mibps must be at least 1 (got 0)", "headroom_mib must not be negative (got -1)",
                        "destination names must be unique", "pinned to hosts that are not destinations: h9"]
    p = dict(p, rate_mibps=1, headroom_mib=0, destinations=[{"name": "h2"}], pinned={"a": ["h2"]},
             anti_affinity={"db": "db1,db2", "web": ["w1", "w2"]})
    assert PLAN.validate_plan_options(p) == ["anti_affinity: group db must be a list of VM names (got 'db1,db2')",
                                             "pinned: a must name one destination (got ['h2'])"]
    p = dict(p, anti_affinity={}, pinned={}, move_times={"a": 12.5, "b": 0, "c": "slow"})
    assert PLAN.validate_plan_options(p) == ["move_times: b must be a number of seconds above 0 (got 0)",
                                             "move_times: c must be a number of seconds above 0 (got 'slow')"]


RESULTS = [
    {"name": "a", "destination": "h2", "method": "live", "strategy": "precopy", "state": "migrated",
     "start_s": 0.0, "end_s": 3.0, "total_time_s": 2.9, "downtime_ms": 80, "bytes_transferred": 3 * 1048576,
     "transport": "tls", "error": None},
    {"name": "b<x>", "destination": "h3", "method": "cold", "strategy": None, "state": "rolled_back",
     "start_s": 1.0, "end_s": 6.0, "total_time_s": None, "downtime_ms": None, "bytes_transferred": None,
     "error": "disk full"},
]


def test_report_table_and_timeline():
    lines = R.table(RESULTS, [{"name": "z", "action": "skip", "reason": "no host fits"}])
    assert lines[0].split() == ["VM", "TO", "METHOD", "STRATEGY", "STREAM", "STATE", "START", "TIME", "DOWNTIME",
                                "MOVED"]
    assert lines[1].split() == ["a", "h2", "live", "precopy", "tls", "migrated", "0.0", "s", "2.9", "s", "80", "ms",
                                "3.0", "MiB"]
    assert lines[-2] == "b<x> failed: disk full" and lines[-1] == "z not moved (skip): no host fits"
    assert R.table([], [{"name": "z", "action": "skip", "reason": "why"}]) == ["z not moved (skip): why"]
    html = R.timeline_html(RESULTS, "Evacuation of h1")
    # a: its move (2.9 s, the table's TIME) and the rest of its slot (0.1 s), the downtime tick; b: one bar
    assert html.count("<rect") == 4
    assert "b&lt;x&gt; -&gt; h3" in html and "#c0392b" in html and "<script" not in html


def test_the_timeline_shows_each_moves_phases_over_the_time_the_table_gives_it_on_a_linear_axis():
    # (as the live engine reports them: total_time_s is the migration's own time, the table's TIME)
    r = dict(RESULTS[0], start_s=0.2, end_s=3.9, total_time_s=2.8,
             phases={"checks_s": 0.4, "dirty_rate_wait_s": 0.0, "planning_s": 0.1, "migration_s": 2.8, "commit_s": 0.1})
    segs = R.segments(r)
    assert [round(b - a, 3) for a, b, _c, _w in segs] == [0.5, 2.8, 0.1, 0.3]
    assert [w.split()[0] for _a, _b, _c, w in segs] == ["checks", "copy", "commit", "connections,"]
    assert abs(segs[1][0] - 0.7) < 1e-9 and segs[-1][1] == 3.9   # the copy from 0.7 s for the table's 2.8 s
    html = R.timeline_html([r], "h1")
    ticks = re.findall(r'<text x="([\d.]+)" y="\d+" text-anchor="middle">([\d.]+) s</text>', html)
    xs, labels = [float(x) for x, _l in ticks], [float(v) for _x, v in ticks]
    assert labels == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]          # round values, one step
    gaps = set(round(b - a, 3) for a, b in zip(xs, xs[1:]))
    assert len(gaps) == 1                                                  # evenly spaced
    scale = gaps.pop() / 0.5
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)" height="\d+" fill', html)]
    assert abs(widths[1] - 2.8 * scale) < 0.5                             # the copy is as long as the table's TIME


def test_progress_and_plan_lines():
    status = {"state": "running", "total": 3, "elapsed_s": 4.2, "predicted_total_s": 9.0, "pending": ["c"],
              "running": [{"name": "a", "destination": "h2", "method": "live", "phase": "migrating",
                           "percent": 42.0, "elapsed_s": 2.0}],
              "done": [dict(RESULTS[1])]}
    lines = R.progress_lines(status)
    assert lines[0] == "running: 1 of 3 done, 1 running, 1 waiting, 4 s elapsed (predicted 9.0 s)"
    assert lines[1] == "  moving a -> h2 (live): migrating 42%, 2.0 s"
    assert lines[2].endswith("- disk full")
    status["running"][0].update(phase="starting", percent=None)
    assert R.progress_lines(status)[1] == "  moving a -> h2 (live): starting, 2.0 s"
    plan = {"moves": [dict(mv("a", "h2"), memory_mib=256, start_s=0.0, end_s=2.3)], "left": {"z": "why"},
            "predicted_total_s": 2.3}
    assert R.plan_lines(plan, "h1") == ["plan for h1: 1 to move, 1 left, predicted 2.3 s",
                                        "  a -> h2 (live, 256 MiB): 0.0-2.3 s", "  z stays: why"]
    assert json.dumps(R.progress_lines(None)) == '["no evacuation status yet"]'
    # a change worth a line: a phase, a 10 % step, a VM ending; not a percent inside the same tenth
    sig = R.progress_signature(status)
    assert R.progress_signature(dict(status, elapsed_s=9.9)) == sig
    moved = dict(status, running=[dict(status["running"][0], percent=None, phase="starting")])
    assert R.progress_signature(moved) == sig
    assert R.progress_signature(dict(moved, running=[dict(moved["running"][0], phase="migrating", percent=19)])) != sig
    assert R.progress_signature(dict(status, done=[])) != sig and R.progress_signature(None) is None


# --- the drain loop, with the migrations faked -------------------------------------------------------

class FakeDom:
    def __init__(self, name, active=True):
        self._name, self.active = name, active

    def name(self):
        return self._name

    def isActive(self):  # pylint: disable=invalid-name
        return self.active


class FakeSource:
    def __init__(self, doms):
        self.doms = doms
        self.conn = self

    def listAllDomains(self, flags):  # pylint: disable=invalid-name,unused-argument
        return list(self.doms.values())

    @staticmethod
    def call(_what, fn, *args):
        return fn(*args)

    def lookup(self, name):
        return self.doms.get(name)


class FakeCache:
    def __init__(self, src):
        self.src = src

    def get(self, _uri):
        return self.src


def drain(names, p, fail=(), duration=0.05, clock=None, hang=(), plan_extra=None):
    """Run Evacuation._drain over NAMES (all to h2 or h3 alternately) with fake moves that take
    DURATION and fail for FAIL; returns the result and the most moves seen at once (total, per dest)."""
    import threading
    import time
    doms = dict((n, FakeDom(n)) for n in names)
    kw = {"clock": clock, "sleep": clock.sleep} if clock else {}
    ev = E.Evacuation(FakeCache(FakeSource(doms)), p, cache_factory=None, **kw)
    seen = {"most": 0, "most_in": 0, "in_by": {}, "ahead": 0, "refused": []}
    release = threading.Event()
    migrating = {}

    def move(self, m):
        # the engine's checks and plan, then its gate (a move prepared ahead of its slot waits there)
        with self.lock:
            seen["ahead"] = max(seen["ahead"], len([r for r in self.running.values() if r.get("slot") != "held"]))
        if not self.slots.ready(m):
            with self.lock:
                seen["refused"].append(m["name"])
                self.pending.append(m)
                self.running.pop(m["name"], None)
            return
        with self.lock:
            migrating[m["name"]] = m
            running = list(migrating.values())
            seen["most"] = max(seen["most"], len(running))
            per = [r["destination"] for r in running]
            seen["most_in"] = max([per.count(d) for d in per] + [0])
            for d in per:
                seen["in_by"][d] = max(seen["in_by"].get(d, 0), per.count(d))
        time.sleep(duration)
        with self.lock:
            migrating.pop(m["name"], None)
        if m["name"] in hang:
            release.wait(30)      # a move whose engine never returns (until the test ends)
            return
        err = "boom" if m["name"] in fail else None
        if not err:
            doms[m["name"]].active = False
        line = E.summarize_result(m["name"], m, {"state": "rolled_back" if err else "migrated"}, err)
        line.update(start_s=0.0, end_s=0.0, decisions=None)
        with self.lock:
            self.results.append(line)
            self.running.pop(m["name"], None)
    ev._move = move.__get__(ev)  # pylint: disable=protected-access
    ev.t0 = ev.clock()
    moves = [mv(n, "h2" if i % 2 == 0 else "h3") for i, n in enumerate(names)]
    plan = dict({"moves": moves, "left": {}, "predicted_total_s": 1.0}, **(plan_extra or {}))
    try:
        out = ev._drain(plan, moves, [], {"h2": "uri2", "h3": "uri3"}, {})  # pylint: disable=protected-access
    finally:
        release.set()
    assert threading.active_count() < 50
    return out, seen


BASE = {"uri": "qemu:///system", "max_outbound": 2, "max_inbound": 1, "max_total": 4, "timeout_s": 60,
        "per_vm_timeout_s": 600, "stop_on_failure": False, "journal": None, "status_file": None}


def test_drain_honours_the_limits_and_verifies_the_source():
    out, seen = drain(["a", "b", "c", "d", "e"], BASE)
    # moves are checked and planned ahead of their slot (one per outbound slot), and migrate only in one
    assert seen["most"] <= 2 and seen["most_in"] <= 1 and 1 <= seen["ahead"] <= 2
    assert out["state"] == "evacuated" and out["verified"] and out["still_running_on_source"] == []
    assert sorted(r["name"] for r in out["results"]) == ["a", "b", "c", "d", "e"]


def test_a_drain_of_a_step_keeps_the_share_of_each_destination_its_plan_gives_it():
    """The drains of one step share a destination's inbound limit: each approved plan carries its share
    (inbound_limits), and the drain never runs more into that destination at once."""
    wide = dict(BASE, max_outbound=6, max_inbound=3, max_total=6)
    _out, seen = drain(["a", "b", "c", "d", "e", "f"], wide, duration=0.2)
    assert seen["in_by"]["h2"] >= 2       # (the measure: without a share, more than one goes in at once)
    out, seen = drain(["a", "b", "c", "d", "e", "f"], wide, duration=0.2, plan_extra={"inbound_limits": {"h2": 1}})
    assert seen["in_by"]["h2"] == 1 and seen["in_by"]["h3"] >= 2, seen
    assert out["state"] == "evacuated"


def test_one_failure_does_not_stop_the_others_unless_asked(tmp_path):
    out, _seen = drain(["a", "b", "c", "d"], dict(BASE, max_outbound=1), fail={"a"})
    assert out["failed_vms"] == ["a"] and len(out["results"]) == 4
    assert out["still_running_on_source"] == ["a"] and out["verified"] and out["state"] == "incomplete"
    journal = str(tmp_path / "j")
    out, seen = drain(["a", "b", "c", "d"], dict(BASE, max_outbound=1, stop_on_failure=True, journal=journal,
                                                 status_file=str(tmp_path / "s")), fail={"a"})
    assert [r["name"] for r in out["results"]] == ["a"]
    assert [x["name"] for x in out["left"]] == ["b", "c", "d"]
    # b was checked and planned ahead while a migrated: the stop kept it from its slot, and it is not started
    assert seen["refused"] == ["b"]
    assert all(x["action"] == "not_started" and "stop_on_failure" in x["reason"] for x in out["left"])
    assert out["verified"]    # what runs on the source is exactly what failed or never started
    events = [e["event"] for e in FILES.read_journal(journal)]
    assert events[0] == "plan" and events[-1] == "done"
    assert FILES.read_json(str(tmp_path / "s"))["state"] == "finished"


def test_a_move_that_never_returns_does_not_hold_the_drain_for_ever():
    import time
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import FakeClock

    class YieldingClock(FakeClock):
        def sleep(self, seconds):      # fake time, but let the move threads run meanwhile
            time.sleep(0.0002)
            FakeClock.sleep(self, seconds)
    clock = YieldingClock()
    out, _seen = drain(["a", "b"], dict(BASE, timeout_s=5), clock=clock, hang={"a"}, duration=0)
    # timeout_s + the longest engine bound (a cold move's) + 10 min: then the drain starts nothing more but
    # still waits for its moves (each engine ends by its own deadlines); only a move that broke them for a
    # day is handed over, reported as still running
    limit = 5 + 120 + 1800 + 600 + E.MOVE_OVERRUN_LIMIT_S
    assert limit <= clock.now <= limit + 2
    by = dict((r["name"], r) for r in out["results"])
    assert by["b"]["state"] == "migrated" and by["a"]["state"] == "still_running"
    assert "stopped waiting" in by["a"]["error"] and out["failed_vms"] == ["a"]
    assert out["state"] == "incomplete" and out["still_running_on_source"] == ["a"]


def test_the_drain_lock_is_atomic_and_names_its_holder(tmp_path):
    import pytest
    path = str(tmp_path / "j.lock")
    fd = FILES.take_lock(path, now=lambda: 1234.0)
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        with pytest.raises(FILES.EvacuationRunning, match=r"already running \(pid %d, since 1234.0\)" % os.getpid()):
            FILES.take_lock(path)
    finally:
        FILES.release_lock(fd)
    FILES.release_lock(FILES.take_lock(path))     # free again once released (the file stays)
    # a holder that died leaves no stale lock: the kernel drops a flock with its process
    pid = os.fork()
    if pid == 0:
        FILES.take_lock(path)
        os._exit(0)  # pylint: disable=protected-access
    os.waitpid(pid, 0)
    FILES.release_lock(FILES.take_lock(path))


def test_no_new_move_after_the_timeout():
    out, _seen = drain(["a", "b", "c"], dict(BASE, max_outbound=1, timeout_s=0.01), duration=0.05)
    assert len(out["results"]) == 1
    assert [x["action"] for x in out["left"]] == ["not_started", "not_started"]
    assert "timeout_s reached" in out["left"][0]["reason"]


READY_TLS = {"migration_tls": {"ready": True, "missing": [], "cert_dir": "/etc/pki/qemu"}}
BARE_TLS = {"migration_tls": {"ready": False, "missing": ["ca-cert.pem"], "cert_dir": "/etc/pki/qemu"}}


def _drain_transports(migrate_options, dest_security, source_security=None):
    source_security = source_security or READY_TLS
    p = {"uri": "qemu:///system", "migrate_options": migrate_options,
         "destinations": [{"name": "h2", "uri": "qemu+tcp://h2/system", "security": dest_security},
                          {"name": "h3", "uri": "qemu+tcp://h3/system", "security": READY_TLS}]}
    ev = E.Evacuation(None, p, None)
    ev._source_security = source_security  # pylint: disable=protected-access
    moves = [{"name": "a", "destination": "h2", "method": "live"}, {"name": "b", "destination": "h3", "method": "live"},
             {"name": "c", "destination": "h2", "method": "cold", "copies_disks": False}]
    return PLAN.refused_transports(p, moves, ev.move_security), moves


def test_a_drain_refuses_every_plaintext_move_before_it_starts():
    refused, moves = _drain_transports({}, BARE_TLS)
    assert len(refused) == 1 and refused[0].startswith("a -> h2: ") and "h2 is not set up" in refused[0]
    assert [m.get("transport") for m in moves] == ["plaintext", "tls", "none"]


def test_a_drain_refuses_cold_disk_copies_in_the_clear_before_it_starts():
    p = {"uri": "qemu:///system", "migrate_options": {}, "cold_options": {},
         "destinations": [{"name": "h2", "uri": "qemu+tcp://h2/system"}, {"name": "h3", "uri": "qemu+tls://h3/system"}]}
    ev = E.Evacuation(None, p, None)
    moves = [{"name": "a", "destination": "h2", "method": "cold", "copies_disks": True},
             {"name": "b", "destination": "h3", "method": "cold", "copies_disks": True},
             {"name": "c", "destination": "h2", "method": "cold", "copies_disks": False}]
    refused = PLAN.refused_transports(p, moves, ev.move_security)
    assert len(refused) == 1 and refused[0].startswith("a -> h2 (cold): ") and "qemu+tls://" in refused[0]
    assert [m["transport"] for m in moves] == ["plaintext", "tls", "none"]
    p["cold_options"] = {"allow_plaintext": True}
    assert PLAN.refused_transports(p, moves, E.Evacuation(None, p, None).move_security) == []


def test_a_drain_moves_in_the_clear_only_when_allowed_and_uses_tls_where_it_can():
    refused, moves = _drain_transports({"allow_plaintext": True}, BARE_TLS)
    assert refused == [] and [m.get("transport") for m in moves] == ["plaintext", "tls", "none"]
    refused, moves = _drain_transports({"tls": "required", "allow_plaintext": True}, BARE_TLS)
    assert len(refused) == 1 and "tls=required" in refused[0]
    refused, moves = _drain_transports({}, None)          # the destination's state not gathered: libvirt checks it
    assert refused == [] and moves[0]["transport"] == "tls (checked at start)"


def test_a_return_checks_its_cold_moves_from_where_the_vms_are():
    p = {"uri": "qemu:///system", "return_home": True, "return_uri": "qemu+tls://h1/system", "cold_options": {},
         "migrate_options": {}, "destinations": [{"name": "h2", "uri": "qemu+tcp://h2/system"}]}
    ev = E.Evacuation(None, p, None)
    ev._source_security = READY_TLS  # pylint: disable=protected-access
    moves = [{"name": "a", "destination": "h1", "method": "cold", "from": "h2", "from_uri": "qemu+tcp://h2/system"}]
    refused = PLAN.refused_transports(p, moves, ev.move_security)      # copies unknown: counted as copying, and h2 is reached in the clear
    assert len(refused) == 1 and "qemu+tcp://h2/system" in refused[0]


# --- one plan: what the preflight approves is what the drain runs ---------------------------------------

class PlanSource(FakeSource):
    uri = "qemu:///system"

    def __init__(self, doms, uuid="src-uuid"):
        FakeSource.__init__(self, doms)
        self.uuid = uuid

    def host_uuid(self):
        return self.uuid


def _fake_checks(dest_uuid="dst-uuid", free_mib=4000):
    """check_domains of one destination: 4,000 MiB free; 'db' (3,000 MiB) can only move cold, 'web'
    (2,000 MiB) can move live."""
    def check_domains(src, dst, names, **_kw):  # pylint: disable=unused-argument
        vms = {"db": (3000, [{"check": "cpu", "status": "fail", "reason": "CPU model missing", "blocks": "live"}]),
               "web": (2000, [])}
        return {"destination": {"memory_free": free_mib * 1024 * 1024, "memory_total": 8000 * 1024 * 1024,
                                "uuid": dest_uuid, "hostname": "h2"},
                "domains": [{"name": n, "uuid": "u-" + n, "memory_mib": vms[n][0], "checks": vms[n][1], "active": True,
                             "recommended": "cold" if vms[n][1] else "live", "storage": {}} for n in names]}
    return check_domains


def _plan_params(policy):
    return dict(BASE, destinations=[{"name": "h2", "uri": "qemu+tls://h2/system"}], non_live_policy=policy,
                headroom_mib=0, anti_affinity={}, pinned={}, rate_mibps=1000, domains=None, migrate_options={},
                cold_options={})


def test_the_drain_runs_the_plan_the_preflight_approved(monkeypatch):
    """The reproducer: one destination with 4,000 MiB free, a cold-only VM of 3,000 MiB and a live VM of
    2,000 MiB, policy skip. The drain used to plan with cold moves allowed, place the cold VM, skip it, and
    leave the live VM behind as 'no host fits'."""
    monkeypatch.setattr(PLAN, "check_domains", _fake_checks())
    doms = {"db": FakeDom("db"), "web": FakeDom("web")}
    cache = FakeCache(PlanSource(doms))
    for policy in ("skip", "shutdown", "cold"):
        p = _plan_params(policy)
        approved = PLAN.plan_evacuation(cache, dict(p, allow_cold=policy == "cold"))   # what the preflight role runs
        ev = E.Evacuation(cache, p, cache_factory=None)
        ev._source_security = None  # pylint: disable=protected-access
        out = ev.run(check_mode=True)
        # equal, but for the transport the drain adds to each move it will run
        assert dict(out["plan"], moves=[dict((k, v) for k, v in m.items() if k != "transport")
                                        for m in out["plan"]["moves"]]) == approved, policy
        moved = [(m["name"], m["method"]) for m in out["plan"]["moves"]]
        if policy == "cold":
            # both cannot fit (5,000 MiB in 4,000): the longer cold move is placed first, web stays
            assert moved == [("db", "cold")] and [x["name"] for x in out["left"]] == ["web"]
        else:
            assert moved == [("web", "live")], policy
            assert [(x["name"], x["action"]) for x in out["left"]] == [
                ("db", "shutdown" if policy == "shutdown" else "skip")]
            assert "only a cold migration could move it" in out["left"][0]["reason"]


def test_a_destination_that_is_the_source_is_refused_before_anything(monkeypatch):
    monkeypatch.setattr(PLAN, "check_domains", _fake_checks(dest_uuid="src-uuid"))
    cache = FakeCache(PlanSource({"web": FakeDom("web")}))
    import pytest
    with pytest.raises(PLAN.SourceAsDestination, match="destination h2 is the source host itself"):
        PLAN.plan_evacuation(cache, _plan_params("skip"))


# --- an approved plan runs as approved; only what changed since is left, with the change as its reason ------

def approved_plan():
    return {"version": PLAN.PLAN_VERSION, "source": {"uuid": "src-uuid"}, "allow_cold": False, "headroom_mib": 100,
            "moves": [dict(mv("big", "h2"), uuid="u-big", memory_mib=2000, storage={"vda": "shared"}),
                      dict(mv("mid", "h3"), uuid="u-mid", memory_mib=1000, storage={}),
                      dict(mv("small", "h2"), uuid="u-small", memory_mib=500, storage={})],
            "left": {"pinned": "no host fits"}, "predicted_total_s": 9.0}


NOW = {"big": ("u-big", True), "mid": ("u-mid", True), "small": ("u-small", True), "pinned": ("u-p", True)}
DESTS = {"h2": {"free_mib": 4000, "domains": [("other", "u-o")]}, "h3": {"free_mib": 4000, "domains": []}}


def test_an_unchanged_plan_runs_as_approved():
    plan, changes = PLAN.revalidate(approved_plan(), NOW, DESTS, "skip", 100)
    assert changes == [] and plan == approved_plan()


def test_what_changed_since_the_plan_is_left_with_the_change_as_reason():
    now = dict(NOW, mid=("u-mid", False), late=("u-late", True))
    dests = {"h2": {"free_mib": 2300, "domains": []}, "h3": {"free_mib": 4000, "domains": []}}
    plan, changes = PLAN.revalidate(approved_plan(), now, dests, "skip", 100)
    assert [m["name"] for m in plan["moves"]] == ["big"]
    assert changes == ["mid: no longer running",
                       "small: h2 has 2300 MiB free now; with the 100 MiB kept free it cannot take 500 MiB more",
                       "late: started after the plan was approved (not in it: it stays)"]
    assert plan["left"]["small"].startswith("changed since the plan was approved: h2 has 2300 MiB")
    assert plan["left"]["late"] == "started after the plan was approved: not in it" and plan["left"]["pinned"]
    # gone, replaced by another of that name, a destination lost, a name taken there
    now = dict(NOW, big=("u-new", True))
    del now["small"]
    dests = {"h2": {"error": "cannot connect"}, "h3": {"free_mib": 4000, "domains": [("mid", "u-x")]}}
    plan, changes = PLAN.revalidate(approved_plan(), now, dests, "skip", 100)
    assert plan["moves"] == [] and changes == [
        "big: another domain of that name (UUID u-new, the plan had u-big)",
        "mid: h3 already has a domain mid (UUID u-x)", "small: no longer on this host"]
    plan, changes = PLAN.revalidate(approved_plan(), NOW, {"h2": {"error": "refused"}, "h3": DESTS["h3"]}, "skip", 100)
    assert changes[0] == "big: destination h2 cannot be reached now: refused"


def test_a_plan_for_another_version_or_policy_is_refused():
    import pytest
    with pytest.raises(PLAN.PlanRefused, match="version 0"):
        PLAN.revalidate(dict(approved_plan(), version=0), NOW, DESTS, "skip", 100)
    with pytest.raises(PLAN.PlanRefused, match="non_live_policy=cold"):
        PLAN.revalidate(approved_plan(), NOW, DESTS, "cold", 100)


class UuidDom(FakeDom):
    def UUIDString(self):  # pylint: disable=invalid-name
        return "u-" + self._name


class DestClient(PlanSource):
    def __init__(self, doms, uuid, free_mib):
        PlanSource.__init__(self, doms, uuid)
        self.free = free_mib

    def getFreeMemory(self):  # pylint: disable=invalid-name
        return self.free * 1024 * 1024


class ByUri:
    def __init__(self, clients):
        self.clients = clients

    def get(self, uri):
        return self.clients[uri]


def test_the_drain_runs_the_approved_plan_and_says_what_changed(monkeypatch):
    monkeypatch.setattr(PLAN, "check_domains", _fake_checks())
    # (the fake destination is no TCP peer)
    monkeypatch.setattr(PLAN.CLIENT, "reachable", lambda address, timeout=3.0: True)
    src = PlanSource({"db": UuidDom("db"), "web": UuidDom("web")})
    dst = DestClient({}, "dst-uuid", 4000)
    cache = ByUri({"qemu:///system": src, "qemu+tls://h2/system": dst})
    p = _plan_params("skip")
    approved = PLAN.plan_evacuation(cache, dict(p, allow_cold=False))
    assert approved["moves"][0]["uuid"] == "u-web" and approved["source"]["uuid"] == "src-uuid"
    ev = E.Evacuation(cache, dict(p, plan=approved), cache_factory=None)
    ev._source_security = None  # pylint: disable=protected-access
    out = ev.run(check_mode=True)
    assert out["approved_plan"] and out["changes"] == []
    assert [(m["name"], m["destination"]) for m in out["plan"]["moves"]] == [("web", "h2")]
    # web stopped since: it stays, and the plan lines say why
    src.doms["web"].active = False
    out = E.Evacuation(cache, dict(p, plan=approved), cache_factory=None).run(check_mode=True)
    assert out["plan"]["moves"] == [] and out["changes"] == ["web: no longer running"]
    assert "  changed since the plan was approved - web: no longer running" in out["plan_lines"]
    import pytest
    with pytest.raises(PLAN.PlanRefused, match="made for the host with UUID src-uuid"):
        E.Evacuation(ByUri({"qemu:///system": PlanSource({}, "other"), "qemu+tls://h2/system": dst}),
                     dict(p, plan=approved), cache_factory=None).run(check_mode=True)


def test_one_drain_lock_per_host_whatever_journal_it_names(tmp_path):
    """Two drains of one host with different journals: the second is refused before it changes anything; a
    drain of another host is not held up."""
    import pytest
    from fakevirt import FakeCache, World
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import FakeClock
    w = World(FakeClock())
    path = FILES.host_lock_path(w.hosts["h1"].uuid)
    assert path == str(tmp_path / ("vmmigration-drain-%s.lock" % w.hosts["h1"].uuid))
    assert FILES.host_lock_path("../x y", dirs=(str(tmp_path),)).endswith("vmmigration-drain-.._x_y.lock")
    held = FILES.take_lock(path)
    try:
        p = {"uri": "qemu+tls://h1/system", "destinations": [{"name": "h2", "uri": "qemu+tls://h2/system"}],
             "domains": None, "headroom_mib": 0, "anti_affinity": {}, "pinned": {}, "rate_mibps": 1000,
             "max_outbound": 1, "max_inbound": 1, "max_total": 1, "non_live_policy": "skip",
             "per_vm_timeout_s": 60, "timeout_s": 60, "stop_on_failure": False, "announce": False,
             "journal": str(tmp_path / "another-journal"), "status_file": None, "source_name": "h1",
             "return_home": False, "return_uri": None, "migrate_options": {}, "cold_options": {}, "plan": None}
        ev = E.Evacuation(FakeCache(w), p, lambda: FakeCache(w), clock=FakeClock(), sleep=lambda s: None)
        ev._source_security = None  # pylint: disable=protected-access
        with pytest.raises(FILES.EvacuationRunning, match="already running"):
            ev.run()
        assert not os.path.exists(str(tmp_path / "another-journal"))
    finally:
        FILES.release_lock(held)
    FILES.release_lock(FILES.take_lock(FILES.host_lock_path(w.hosts["h2"].uuid)))


@pytest.mark.parametrize('live,cold,want', [
    ({'no_such': 1}, {}, 'migrate_options: unknown options: no_such'),
    ({'tuning': {'nope': 1}}, {}, 'migrate_options: unknown options: tuning.nope'),
    ({}, {'nope': 1}, 'cold_options: unknown options: nope'),
    ({'headroom_mib': 64}, {}, 'headroom_mib set by the drain itself'),
    ({}, {'headroom_mib': 64}, 'headroom_mib set by the drain itself'),
    ({'status_file': '/x'}, {}, 'status_file set by the drain itself'),
    ({'tuning': {'dead_link_s': 'soon'}}, {}, 'dead_link_s'),
    ({'tls': 'off'}, {}, 'auto, required, disabled'),
    ({}, {'tls': True}, 'auto, required, disabled'),
    ({'allow_plaintext': 'maybe'}, {}, 'allow_plaintext'),
    ({}, {'shutdown_timeout_s': 'soon'}, 'shutdown_timeout_s'),
    ({'completion': 'hybrid'}, {}, 'completion=hybrid needs allow_postcopy=true'),
])
def test_the_drains_move_options_are_refused_before_anything_moves_naming_what(live, cold, want):
    problems, _live, _cold = PLAN.drain_move_options(live, cold)
    assert any(want in p for p in problems), problems


def test_the_drains_move_options_come_back_typed_as_the_modules_type_theirs():
    problems, live, cold = PLAN.drain_move_options({'max_downtime_ms': '200', 'tuning': {'dead_link_s': '3'}, 'tls': 'required'},
                                                   {'shutdown_timeout_s': '30'})
    assert problems == []
    assert live['max_downtime_ms'] == 200 and live['tuning']['dead_link_s'] == 3.0 and live['tls'] == 'required'
    assert cold == {'shutdown_timeout_s': 30.0}
    assert PLAN.drain_move_options({}, {}) == ([], {}, {})


# --- exclude_domains: the VMs a drain leaves on purpose (the rolling maintenance stops them in place) ----------

def test_an_excluded_vm_is_not_planned_and_is_left_with_why(monkeypatch):
    seen = []

    def checks(src, dst, names, **kw):
        seen.append((list(names), kw.get("allow_storage_copy")))
        return _fake_checks()(src, dst, names, **kw)
    monkeypatch.setattr(PLAN, "check_domains", checks)
    cache = FakeCache(PlanSource({"db": FakeDom("db"), "web": FakeDom("web")}))
    plan = PLAN.plan_evacuation(cache, dict(_plan_params("skip"), exclude_domains=["web", "nosuch"]))
    assert plan["moves"] == [] and plan["left"]["web"] == PLAN.EXCLUDED and "nosuch" not in plan["left"]
    assert seen == [(["db"], True)]
    # copies forbidden (copy_storage none, the drain's or the plan's own): the checks are told
    PLAN.plan_evacuation(cache, dict(_plan_params("skip"), migrate_options={"copy_storage": "none"}))
    PLAN.plan_evacuation(cache, dict(_plan_params("skip"), copy_storage="none"))
    PLAN.plan_evacuation(cache, dict(_plan_params("skip"), copy_storage="auto"))
    assert [s[1] for s in seen[1:]] == [False, False, True]


def test_an_approved_plan_leaves_an_excluded_vm_and_the_drain_says_incomplete_not_changed(monkeypatch):
    monkeypatch.setattr(PLAN, "check_domains", _fake_checks())
    src = PlanSource({"db": UuidDom("db"), "web": UuidDom("web")})
    dst = DestClient({}, "dst-uuid", 4000)
    cache = ByUri({"qemu:///system": src, "qemu+tls://h2/system": dst})
    p = _plan_params("skip")
    approved = PLAN.plan_evacuation(cache, dict(p, allow_cold=False))
    assert [m["name"] for m in approved["moves"]] == ["web"]
    out = E.Evacuation(cache, dict(p, plan=approved, exclude_domains=["web"]), cache_factory=None).run(check_mode=True)
    assert out["plan"]["moves"] == [] and out["changes"] == []
    assert ("web", "skip", PLAN.EXCLUDED) in [(x["name"], x["action"], x["reason"]) for x in out["left"]]
