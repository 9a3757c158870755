"""Evacuation planning against the lab's real hypervisors (the drain itself comes with the roles)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position
from test_integration import AVX512_CPU, run_target  # noqa: E402  pylint: disable=wrong-import-position


def test_evacuation_plan(lab):
    guests = [("ep_a", dict(disk="nbd", memory_mib=128)), ("ep_b", dict(disk="nbd", memory_mib=128)),
              ("ep_c", dict(disk="local", memory_mib=128)), ("ep_d", dict(disk="none", memory_mib=128, network="br1")),
              ("ep_cpu", dict(disk="none", start=False, cpu_xml=AVX512_CPU))]
    try:
        for name, kw in guests:
            L.define_guest(name, "h1", **kw)
        run_target("evacuation_plan", target_hosts="h1")
    finally:
        for name, _kw in guests:
            L.remove_guest(name)


EVAC_GUESTS = [
    # name, define_guest arguments, what the drain must do with it
    ("ev_idle", dict(disk="nbd", memory_mib=128), "live"),
    ("ev_busy", dict(disk="nbd", memory_mib=192, mem_workload_mib=48, mem_rate=16), "live"),
    ("ev_shared", dict(disk="shared", memory_mib=128), "live"),
    ("ev_local", dict(disk="local", memory_mib=128), "live_copy_storage"),
    # host page cache on shared storage: live migration is unsafe, only a cold move will do
    ("ev_cold", dict(disk="shared", memory_mib=128, disk_cache="writeback"), "cold"),
]


def fresh(*dirs):
    """A test's journal and reports start empty (also when pytest reruns it)."""
    import shutil  # pylint: disable=import-outside-toplevel
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def overlaps(results, key=None, until="moved_s", since="slot_s"):
    """Most migrations running at one time (per KEY value, if given), from SINCE - slot_s, when the move got its
    migration slot (a move checked and planned ahead gets it after its start), or start_s - to UNTIL: moved_s, when
    the VM ran on its destination and gave its slot back (its announce and verification use none), or end_s."""
    events = []
    for r in results:
        end = r[until] if r.get(until) is not None else r["end_s"]
        start = r[since] if r.get(since) is not None else r["start_s"]
        events += [(start, 1, r[key] if key else None), (end, -1, r[key] if key else None)]
    most, now = 0, {}
    for _t, d, k in sorted(events, key=lambda e: (e[0], e[1])):
        now[k] = now.get(k, 0) + d
        most = max(most, now[k])
    return most


def test_evacuate_host(lab, figures):
    """The drain end to end: check mode plans, saves the plan on the controller and moves nothing; a guest
    started after that; the drain runs the saved plan - exactly its moves, five mixed guests (live, with
    storage copy, cold) under the limits while the client probes them - and leaves the late guest, saying
    why; the report and journal are on the controller; a second run changes nothing."""
    import json
    import time
    from test_migrate import integrity, where  # pylint: disable=import-outside-toplevel
    playbook = os.path.join(L.TOP, "playbooks", "evacuate_host.yml")
    reports = L.state_path("reports")
    common = {"source": "h1", "evacuate_host_non_live_policy": "cold", "evacuate_host_max_outbound": 2,
              "evacuate_host_max_inbound": 1, "evacuate_host_headroom_mib": 64,
              "evacuate_host_state_dir": L.state_path("evac-state"), "evacuate_host_report_dir": reports,
              "evacuate_host_progress_interval_s": 2,
              "evacuate_host_cold_options": {"shutdown_timeout_s": 30}}
    names = [n for n, _kw, _m in EVAC_GUESTS]
    fresh(common["evacuate_host_state_dir"], reports)
    try:
        for name, kw, _method in EVAC_GUESTS:
            L.define_guest(name, "h1", **kw)
        ips = dict((n, L.load_state()["guests"][n]["ip"]) for n in names)
        for n in names:
            L.wait_guest(ips[n])
        time.sleep(1)

        # check mode: the plan, with methods and predicted times, saved on the controller; nothing moves
        p = L.playbook(playbook, extra_vars=common, check=True)
        assert p.returncode == 0, p.stdout[-6000:]
        for name, _kw, method in EVAC_GUESTS:
            assert "%s -> h" % name in p.stdout and "(%s," % method in p.stdout, (name, method, p.stdout[-6000:])
        assert all(where(lab, n) == {"h1": "running"} for n in names)
        plan_file = os.path.join(reports, "h1", "plan.json")
        assert oct(os.stat(plan_file).st_mode & 0o777) == "0o600"
        with open(plan_file) as f:
            approved = json.load(f)
        assert sorted(m["name"] for m in approved["moves"]) == sorted(names) and approved["version"] == 1

        # a host excluded (as a survey sends a list: JSON text) is no destination; every host excluded: refused,
        # by name, before anything moves (the plan approved above is kept: these plans go elsewhere)
        other = dict(common, evacuate_host_report_dir=L.state_path("reports-excluded"))
        p = L.playbook(playbook, extra_vars=dict(other, evacuate_host_exclude=json.dumps(["h2"])), check=True)
        assert p.returncode == 0, p.stdout[-6000:]
        for name, _kw, _method in EVAC_GUESTS:
            assert "%s -> h3 (" % name in p.stdout and "%s -> h2" % name not in p.stdout, (name, p.stdout[-6000:])
        p = L.playbook(playbook, extra_vars=dict(other, evacuate_host_exclude=["h2", "h3"]), check=True)
        assert p.returncode != 0 and "h1: no destination left" in p.stdout, p.stdout[-6000:]
        assert all(where(lab, n) == {"h1": "running"} for n in names)

        # a guest started after the plan was approved: not in it, so the drain leaves it and says so
        L.define_guest("ev_late", "h1", disk="none", memory_mib=96)

        # the drain, every guest probed by the client
        before = dict((n, L.guest_status(ips[n])) for n in names)
        probes = [L.Blackout(ips[n], hz=20) for n in names]
        for pr in probes:
            pr.__enter__()
        t0 = time.monotonic()
        try:
            # every VM's address verified from h1 once it moved (a cold one boots first)
            p = L.playbook(playbook, extra_vars=dict(common, evacuate_host_plan_file=plan_file,
                                                     evacuate_host_allow_incomplete=True,
                                                     evacuate_host_verify_addresses_by_vm=dict((n, [ips[n]]) for n in names),
                                                     evacuate_host_verify_timeout_s=60))
        finally:
            wall = time.monotonic() - t0
            for pr in probes:
                pr.__exit__(None, None, None)
        assert p.returncode == 0, p.stdout[-8000:]
        assert "moving ev_" in p.stdout, "no progress shown"
        with open(os.path.join(reports, "h1", "report.json")) as f:
            report = json.load(f)
        results = dict((r["name"], r) for r in report["results"])
        assert sorted(results) == sorted(names)
        for name, _kw, method in EVAC_GUESTS:
            r = results[name]
            assert r["error"] is None and r["state"] == "migrated" and r["method"] == method, r
            # QEMU re-announced every live-moved guest from its destination (cold ones boot there)
            assert r["announced"] is (True if method != "cold" else None), r
            assert where(lab, name) == {r["destination"]: "running"}
            # ... and its address answered h1 after the move (for a cold move, after its boot)
            assert r["answering"]["all_answered"] and r["answering"]["addresses"][ips[name]] is not None, r
            assert r["answering"]["since_move_s"] is not None, r
        assert report["silent_vms"] == []
        with open(os.path.join(reports, "h1", "report.txt")) as f:
            assert "ANSWERED" in f.readline()
        # the plan that ran is the plan approved (each move as saved, the transport decided at the start)
        assert report["approved_plan"] is True
        assert [dict((k, v) for k, v in m.items() if k != "transport") for m in report["plan"]["moves"]] == \
            approved["moves"]
        assert report["changes"] == ["ev_late: started after the plan was approved (not in it: it stays)"]
        assert "changed since the plan was approved - ev_late" in p.stdout
        assert report["state"] == "incomplete" and report["verified"] and report["still_running_on_source"] == ["ev_late"]
        assert where(lab, "ev_late") == {"h1": "running"}
        L.remove_guest("ev_late")
        # the limits: two out of h1 at once, one into each destination at once
        assert overlaps(report["results"]) <= 2
        assert overlaps(report["results"], "destination") <= 1
        assert overlaps(report["results"]) == 2, "the drain never ran two migrations at once"
        # a VM being verified holds no slot: counted to its end, more than two overlap (a cold one boots first)
        assert all(r["moved_s"] is not None and max(r["start_s"], r["slot_s"]) <= r["moved_s"] <= r["end_s"]
                   for r in report["results"])
        figures["evacuation_5_guests_overlap_to_end"] = overlaps(report["results"], until="end_s")
        # a live move is checked and planned while two migrate, and gets its slot later: counted from its start,
        # more than two overlap
        ahead = [r["name"] for r in report["results"] if r["slot_s"] > r["start_s"] + 0.5]
        assert ahead and overlaps(report["results"], since="start_s") > 2, report["results"]
        figures["evacuation_5_guests_prepared_ahead"] = len(ahead)
        time.sleep(1)
        for (name, _kw, method), pr in zip(EVAC_GUESTS, probes):
            after = L.wait_guest(ips[name], timeout=30)
            if method == "cold":
                assert after["boot_id"] != before[name]["boot_id"]   # shut down, moved, started
            else:
                integrity(before[name], after, name)
                assert pr.result["max_gap_ms"] < 3000, (name, pr.result)
        for f in ("report.txt", "timeline.html", "journal.jsonl"):
            assert os.path.getsize(os.path.join(reports, "h1", f)) > 0
        import browser  # pylint: disable=import-outside-toplevel
        shot = browser.render(os.path.join(reports, "h1", "timeline.html"), "drain-timeline")
        print("screenshot of the drain's timeline: %s (%d bytes)" % (shot["png"], shot["bytes"]))
        assert shot["bytes"] > 5000 and shot["console"] == [], shot
        with open(os.path.join(reports, "h1", "journal.jsonl")) as f:
            events = [json.loads(line)["event"] for line in f]
        assert events[0] == "plan" and events.count("start") == 5 and events.count("end") == 5 and events[-1] == "done"
        figures["evacuation_5_guests"] = {
            "playbook_wall_s": round(wall, 1), "drain_wall_s": report["wall_s"],
            "per_vm": dict((n, [results[n]["method"], results[n]["total_time_s"], results[n]["downtime_ms"],
                                results[n]["answering"]["since_move_s"]]) for n in names),
            "client_max_gap_ms": dict((n, pr.result["max_gap_ms"]) for n, pr in zip(names, probes))}

        # a second run on the empty host changes nothing
        p = L.playbook(playbook, extra_vars=common)
        assert p.returncode == 0, p.stdout[-6000:]
        assert "changed=0" in p.stdout.split("PLAY RECAP")[-1], p.stdout[-3000:]

    finally:
        for name in names + ["ev_late"]:
            L.remove_guest(name)


def test_evacuation_survives_a_lost_controller(lab):
    """The controller dies mid-drain (ansible-playbook and its SSH connections killed): the drain goes on
    on the hypervisor; running the playbook again follows it to its end, moves nothing twice, and ends
    with the host empty and the journal on the controller."""
    import json
    import signal
    import subprocess
    import time
    from test_migrate import integrity, where  # pylint: disable=import-outside-toplevel
    playbook = os.path.join(L.TOP, "playbooks", "evacuate_host.yml")
    state = L.state_path("evac-lost")
    reports = L.state_path("reports-lost")
    extra = {"source": "h1", "evacuate_host_max_outbound": 1, "evacuate_host_headroom_mib": 64,
             "evacuate_host_state_dir": state, "evacuate_host_report_dir": reports,
             "evacuate_host_progress_interval_s": 1}
    names = ["lost_a", "lost_b", "lost_c"]
    fresh(state, reports)
    try:
        for n in names:
            L.define_guest(n, "h1", disk="nbd", memory_mib=128)
        ips = dict((n, L.load_state()["guests"][n]["ip"]) for n in names)
        before = dict((n, L.wait_guest(ips[n])) for n in names)
        env = L.ansible_env()        # also makes the lab's Ansible directories
        vars_file = L.state_path("ansible", "tmp", "lost-vars.json")
        with open(vars_file, "w") as f:
            json.dump(extra, f)
        cmd = L.ns_exec("ctl", [os.path.join(L.TOP, ".venv", "bin", "ansible-playbook"), "-i",
                                L.state_path("inventory.json"), playbook, "-e", "@" + vars_file])
        first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        status = os.path.join(state, "evacuate.status.json")
        deadline = time.monotonic() + 180
        seen = {}
        while time.monotonic() < deadline:
            try:
                with open(status) as f:
                    seen = json.load(f)
            except (IOError, ValueError):
                seen = {}
            if seen.get("state") == "running" and seen.get("done"):
                break
            time.sleep(0.2)
        assert seen.get("state") == "running" and seen.get("done"), "the drain never got going: %s" % seen
        os.killpg(first.pid, signal.SIGKILL)      # the controller is gone
        first.wait(30)
        p = L.playbook(playbook, extra_vars=extra)
        assert p.returncode == 0, p.stdout[-6000:]
        follow = p.stdout.split("Follow an earlier drain still running")[1].split("TASK [")[0]
        assert "finished:" in follow, "the second run did not follow the first drain:\n" + p.stdout[-6000:]
        for n in names:
            assert where(lab, n) not in ({"h1": "running"}, {}), (n, where(lab, n))
            integrity(before[n], L.wait_guest(ips[n], timeout=30), n)
        with open(os.path.join(reports, "h1", "journal.jsonl")) as f:
            starts = [e["vm"] for e in map(json.loads, f) if e["event"] == "start"]
        assert sorted(starts) == sorted(names), "each guest moved exactly once: %s" % starts

        # return home: everything the journal says left h1 comes back, once
        p = L.playbook(playbook, extra_vars=dict(extra, evacuate_host_return_home=True))
        assert p.returncode == 0, p.stdout[-8000:]
        assert all(where(lab, n) == {"h1": "running"} for n in names), [where(lab, n) for n in names]
        for n in names:
            integrity(before[n], L.wait_guest(ips[n], timeout=30), n)
        p = L.playbook(playbook, extra_vars=dict(extra, evacuate_host_return_home=True))
        assert p.returncode == 0 and "changed=0" in p.stdout.split("PLAY RECAP")[-1], p.stdout[-3000:]
    finally:
        for n in names:
            L.remove_guest(n)


def test_evacuation_policies(lab):
    """require_all refuses a plan that leaves a VM behind before anything moves; the shutdown policy shuts
    down a VM that cannot move live and leaves (and lists) one no destination can take."""
    from test_migrate import where  # pylint: disable=import-outside-toplevel
    playbook = os.path.join(L.TOP, "playbooks", "evacuate_host.yml")
    extra = {"source": "h1", "evacuate_host_destinations": ["h3"], "evacuate_host_headroom_mib": 64,
             "evacuate_host_state_dir": L.state_path("evac-pol"), "evacuate_host_report_dir": L.state_path("rep-pol"),
             "evacuate_host_cold_options": {"shutdown_timeout_s": 20}}
    fresh(extra["evacuate_host_state_dir"], extra["evacuate_host_report_dir"])
    try:
        L.define_guest("pol_cache", "h1", disk="shared", memory_mib=128, disk_cache="writeback")
        L.define_guest("pol_br1", "h1", disk="none", memory_mib=128, network="br1")   # h3 has no br1
        # (the br1 guest is on the lab's second segment, out of the client's reach: it runs, that is enough)
        L.wait_guest(L.load_state()["guests"]["pol_cache"]["ip"])
        p = L.playbook(playbook, extra_vars=dict(extra, evacuate_host_require_all=True))
        assert p.returncode != 0 and "preflight_require_all is set and these VMs cannot move" in p.stdout, \
            p.stdout[-4000:]
        assert where(lab, "pol_cache") == {"h1": "running"} and where(lab, "pol_br1") == {"h1": "running"}
        p = L.playbook(playbook, extra_vars=dict(extra, evacuate_host_non_live_policy="shutdown"))
        # the host is not empty (pol_br1 can go nowhere): never a quiet success - the play fails after its report
        assert p.returncode != 0 and "h1 is not empty: it still runs pol_br1" in p.stdout, p.stdout[-6000:]
        assert where(lab, "pol_cache") == {"h1": "shut off"}, where(lab, "pol_cache")
        assert where(lab, "pol_br1") == {"h1": "running"}
        with open(os.path.join(extra["evacuate_host_report_dir"], "h1", "report.txt")) as f:
            report = f.read()
        assert "pol_br1 not moved (skip)" in report and "missing on the destination: bridge br1" in report, report
        assert "pol_cache not moved (shutdown)" in report and "shut down" in report, report
        # allowed to leave it: the same host, nothing more to do, and the play passes
        p = L.playbook(playbook, extra_vars=dict(extra, evacuate_host_non_live_policy="shutdown",
                                                 evacuate_host_allow_incomplete=True))
        assert p.returncode == 0, p.stdout[-6000:]
        assert where(lab, "pol_br1") == {"h1": "running"}
    finally:
        for n in ("pol_cache", "pol_br1"):
            L.remove_guest(n)
