"""Monthly patching as operators run it, over the lab's three hypervisors (the rolling_maintenance role end to end).

h1 runs pt1, whose disk is local and may not be copied (evacuate_host_migrate_options copy_storage=none: it cannot
move), and pl1, which could move but is listed to stop in place; h2 runs pm2 and its need check says nothing is
needed there; h3 runs pm3, which moves. In the order an operator meets it: a bad need check, or VMs named that no
host runs, are refused by name before anything moves; check mode shows each host's decision (drained, maintained in
place, or skipped) and each VM stopped in place with its predicted downtime, and refuses, listing them, until the
downtime is allowed; the built-in reboot probe drains the hosts that need a reboot and refuses a host that cannot
tell. Then the run: pm2 never moves and never stops while h2 is maintained in place; pt1 and pl1 are shut down on
h1 after its drain, h1's maintenance runs, and after its gate they start again in the order given (pt1 first), each
waited for until it answers - pl1, told an address nobody holds, does not, and h1's step fails naming it; a resumed
run takes h1 up again at its start phase and brings it back - a new boot, pt1's disk holding every record it wrote
before; pm3 moves away and comes back; the report gives each stopped VM's downtime, and the hosts' records keep it."""
import json
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

GUESTS = [("pt1", "h1", "local"), ("pl1", "h1", "none"), ("pm2", "h2", "none"), ("pm3", "h3", "none")]


def flat(text):
    """The output with the callback's line folding undone."""
    return " ".join(text.split())


def test_monthly_patching(lab, figures):
    from test_migrate import integrity, where  # pylint: disable=import-outside-toplevel
    playbook = os.path.join(L.TOP, "playbooks", "rolling_maintenance.yml")
    reports = L.state_path("patching-reports")
    state = L.state_path("patching-state")
    for d in (reports, state):
        shutil.rmtree(d, ignore_errors=True)
    names = [n for n, _h, _d in GUESTS]
    try:
        for name, host, disk in GUESTS:
            L.define_guest(name, host, disk=disk, memory_mib=96, disk_ms=50)
        ips = dict((n, L.load_state()["guests"][n]["ip"]) for n in names)
        for n in names:
            L.wait_guest(ips[n], disk=n == "pt1")
        common = {"rolling_maintenance_report_dir": reports,
                  # (the lab's hosts share one file system: each host's records in its own directory)
                  "rolling_maintenance_state_dir": state + "/{{ inventory_hostname }}",
                  "rolling_maintenance_tasks": os.path.join(L.TOP, "tests", "lab", "rolling_hook.yml"),
                  "rolling_maintenance_expected_s": 5, "rolling_maintenance_gate_timeout_s": 60,
                  "rolling_maintenance_cpu_check": False,
                  "rolling_maintenance_need_check": "tasks",
                  "rolling_maintenance_need_tasks": os.path.join(L.TOP, "tests", "lab", "patching_need.yml"),
                  "rolling_lab_no_drain": ["h2"],
                  "rolling_maintenance_not_needed": "in_place",
                  "rolling_maintenance_unplaceable": "stop_in_place",
                  "rolling_maintenance_stop_in_place_vms": ["pl1"],
                  "rolling_maintenance_start_order": ["pt1", "pl1"],
                  "rolling_maintenance_shutdown_timeout_s": 60, "rolling_maintenance_start_timeout_s": 120,
                  "evacuate_host_headroom_mib": 64, "evacuate_host_progress_interval_s": 2,
                  "evacuate_host_migrate_options": {"copy_storage": "none"},
                  "evacuate_host_verify_addresses_by_vm": {"pt1": [ips["pt1"]], "pl1": [ips["pl1"]]}}
        home = dict((n, h) for n, h, _d in GUESTS)

        def nothing_moved():
            assert all(where(lab, n) == {home[n]: "running"} for n in names), dict((n, where(lab, n)) for n in names)
            assert not any(os.path.exists(os.path.join(state, h, "runs")) for h in ("h1", "h2", "h3"))

        # a need check that fails on one host and answers neither drain nor none on another: refused, both named
        p = L.playbook(playbook, extra_vars=dict(common, rolling_lab_need_fails_on="h2",
                                                 rolling_lab_need_answer={"h3": "maybe"}), check=True)
        out = flat(p.stdout)
        assert p.returncode != 0 and "did not answer for every host, nothing moved" in out, p.stdout[-6000:]
        assert "h2: the lab's need check cannot read h2 (task: Need check (lab) - fail where asked)" in out, out[-6000:]
        assert 'h3: the check answered "maybe", not drain or none' in out, out[-6000:]
        assert "cluster plan:" not in out

        # a VM to stop that no host runs, and a start order naming a VM that is not stopped: refused by name
        p = L.playbook(playbook, extra_vars=dict(common, rolling_maintenance_stop_in_place_vms=["pl1", "ghost"],
                                                 rolling_maintenance_start_order=["nosuch", "pt1"],
                                                 rolling_maintenance_allow_downtime=True), check=True)
        out = flat(p.stdout)
        assert p.returncode != 0 and "ghost, nosuch: named to stop in place" in out, p.stdout[-6000:]
        nothing_moved()

        # check mode: each host's decision and each VM stopped in place, said loudly - and refused until allowed
        p = L.playbook(playbook, extra_vars=common, check=True)
        out = flat(p.stdout)
        assert p.returncode != 0 and "rolling_maintenance_allow_downtime is not true - nothing moved" in out, \
            p.stdout[-6000:]
        for text in ("THIS RUN TAKES THESE VMs DOWN OR LEAVES THEM ON A HOST UNDER MAINTENANCE",
                     "pt1 on h1: stopped in place (cannot move:", "pl1 on h1: stopped in place (listed to stop in place",
                     "h2: maintained in place with pm2 running on it (lab: nothing to patch)"):
            assert text in out, (text, p.stdout[-6000:])
        t0 = time.monotonic()
        p = L.playbook(playbook, extra_vars=dict(common, rolling_maintenance_allow_downtime=True), check=True)
        check_s = time.monotonic() - t0
        out = flat(p.stdout)
        assert p.returncode == 0, p.stdout[-6000:]
        for text in ("by their need checks: drained h1, h3; maintained in place h2; skipped none",
                     "h1: 0 VM(s) to move, 2 stopped in place",
                     "pt1 STOPPED IN PLACE on h1 - cannot move:", "not proven shared and storage copy not allowed",
                     "pl1 STOPPED IN PLACE on h1 - listed to stop in place (rolling_maintenance_stop_in_place_vms); "
                     "started again after its gate, predicted down 65.0 s",
                     "h2: MAINTAINED IN PLACE, not drained (lab: nothing to patch)",
                     "its VMs keep running through it: pm2", "order: h1 -> h2 -> h3"):
            assert text in out, (text, p.stdout[-6000:])
        assert re.search(r"pm3 -> h[12] \(live", out), out[-6000:]
        # the same hosts, those that need nothing left out
        p = L.playbook(playbook, extra_vars=dict(common, rolling_maintenance_allow_downtime=True,
                                                 rolling_maintenance_not_needed="skip"), check=True)
        out = flat(p.stdout)
        assert p.returncode == 0 and "h2: SKIPPED, not drained nor maintained - lab: nothing to patch" in out, \
            p.stdout[-6000:]
        assert "order: h1 -> h3" in out, out[-6000:]
        # every host needs nothing, and those are left out: the job says so and fails - never a green no-op
        p = L.playbook(playbook, extra_vars=dict(common, rolling_maintenance_allow_downtime=True,
                                                 rolling_maintenance_not_needed="skip", rolling_lab_no_drain=["h1", "h2", "h3"]),
                       check=True)
        out = flat(p.stdout)
        assert p.returncode != 0 and "nothing to maintain, nothing done - h1, h2, h3 skipped by the need check (h1: lab: " \
            "nothing to patch; h2: lab: nothing to patch; h3: lab: nothing to patch)" in out, out[-6000:]
        nothing_moved()

        # the built-in reboot probe: a host with the flag is drained (its packages named); a host without it, where
        # nothing would write it, cannot tell - refused; once every host has it, all are drained
        flags = dict((h, os.path.join(state, h, "reboot-required")) for h in ("h1", "h2", "h3"))
        writers = [w for w in ("/usr/share/update-notifier/notify-reboot-required",
                               "/etc/kernel/postinst.d/unattended-upgrades") if os.path.exists(w)]
        for h in ("h1", "h3"):
            os.makedirs(os.path.dirname(flags[h]), exist_ok=True)
            with open(flags[h], "w") as f:
                f.write("*** System restart required ***\n")
            with open(flags[h] + ".pkgs", "w") as f:
                f.write("linux-image-6.1.0-99-amd64\n")
        probe = dict(common, rolling_maintenance_need_check="reboot", rolling_maintenance_need_tasks="",
                     rolling_maintenance_reboot_required_file=state + "/{{ inventory_hostname }}/reboot-required",
                     rolling_maintenance_allow_downtime=True)
        p = L.playbook(playbook, extra_vars=probe, check=True)
        out = flat(p.stdout)
        if writers:
            assert p.returncode == 0 and "h2: MAINTAINED IN PLACE, not drained (no reboot required" in out, out[-6000:]
        else:
            assert p.returncode != 0 and "h2: cannot tell whether h2 needs a reboot" in out, out[-6000:]
            assert "h1: cannot tell" not in out and "h3: cannot tell" not in out
        os.makedirs(os.path.dirname(flags["h2"]), exist_ok=True)
        with open(flags["h2"], "w") as f:
            f.write("*** System restart required ***\n")
        p = L.playbook(playbook, extra_vars=probe, check=True)
        out = flat(p.stdout)
        assert p.returncode == 0, p.stdout[-6000:]
        assert "h1: 0 VM(s) to move, 2 stopped in place - predicted" in out, out[-6000:]
        assert "(reboot required (%s: linux-image-6.1.0-99-amd64))" % flags["h1"] in out, out[-6000:]
        assert "MAINTAINED IN PLACE" not in out and "by their need checks" not in out
        nothing_moved()

        # a run whose plan takes down more than the approved plan did (a workflow's Plan job publishes what it
        # approved): refused, naming what is beyond it
        p = L.playbook(playbook, extra_vars=dict(common, rolling_maintenance_allow_downtime=True,
                                                 rolling_maintenance_approved_downtime=["pl1 on h1", "pm2 on h2"]))
        out = flat(p.stdout)
        assert p.returncode != 0, p.stdout[-6000:]
        assert "the plan now takes down pt1 on h1, which the approved plan did not (approved: pl1 on h1, pm2 on h2)" \
            in out, out[-6000:]
        nothing_moved()

        # the run: a client watches pm2 (maintained in place) and pm3 (moved away and back). Job 1 is told an address
        # of pl1 that nobody holds: pl1 starts but does not answer - h1's step fails there, naming it; job 2 resumes
        # the run from the hosts and brings it back
        before = dict((n, L.guest_status(ips[n])) for n in names)
        silent = ".".join(ips["pl1"].split(".")[:3] + ["250"])
        assert silent not in ips.values()
        approved = ["pl1 on h1", "pm2 on h2", "pt1 on h1"]
        probes = dict((n, L.Blackout(ips[n], hz=20)) for n in ("pm2", "pm3"))
        for pr in probes.values():
            pr.__enter__()
        t0 = time.monotonic()
        try:
            p = L.playbook(playbook, extra_vars=dict(
                common, rolling_maintenance_allow_downtime=True, rolling_maintenance_approved_downtime=approved,
                rolling_maintenance_start_timeout_s=20,
                evacuate_host_verify_addresses_by_vm={"pt1": [ips["pt1"]], "pl1": [silent]}))
            out = flat(p.stdout)
            assert p.returncode != 0, p.stdout[-8000:]
            assert "did not come back: pl1 (runs, but %s did not answer within 20 s of its start)" % silent in out, \
                out[-6000:]
            assert "a resumed run (rolling_maintenance_resume=true) starts pl1 again" in out, out[-6000:]
            assert "STILL STOPPED on h1: pl1 (a resumed run starts them)" in out, out[-6000:]
            run_id = re.search(r"rolling maintenance of \S+: a new run: (\S+?)\W*\n", p.stdout).group(1)
            with open(os.path.join(state, "h1", "runs", run_id + ".json")) as f:
                h1 = json.load(f)
            assert (h1["state"], h1["failed_phase"]) == ("failed", "start"), h1
            assert [s["name"] for s in h1["started"]] == ["pt1"] and where(lab, "pl1") == {"h1": "running"}
            p = L.playbook(playbook, extra_vars=dict(
                common, rolling_maintenance_allow_downtime=True, rolling_maintenance_approved_downtime=approved,
                rolling_maintenance_resume=True))
            run_s = time.monotonic() - t0
        finally:
            for pr in probes.values():
                pr.__exit__(None, None, None)
        assert p.returncode == 0, p.stdout[-8000:]
        assert "resuming run %s" % run_id in flat(p.stdout), p.stdout[-6000:]
        assert all(where(lab, n) == {home[n]: "running"} for n in names), dict((n, where(lab, n)) for n in names)

        # pm2 never moved and never stopped; pm3 moved and came back, intact
        for n in ("pm2", "pm3"):
            integrity(before[n], L.guest_status(ips[n]), n)
            assert probes[n].result["max_gap_ms"] < 3000, (n, probes[n].result)

        # pt1 and pl1: a new boot each, pt1's disk holding every record of its earlier boot
        pt1 = L.wait_guest(ips["pt1"], timeout=60, disk=True)
        assert pt1["boot_id"] != before["pt1"]["boot_id"]
        assert pt1["disk_recovered"] >= before["pt1"]["disk_seq"] and pt1["disk_gaps"] == 0, (before["pt1"], pt1)
        pl1 = L.guest_status(ips["pl1"])
        assert pl1 and pl1["boot_id"] != before["pl1"]["boot_id"]

        def record(host):
            with open(os.path.join(state, host, "runs", run_id + ".json")) as f:
                return json.load(f)
        h1, h2, h3 = record("h1"), record("h2"), record("h3")
        assert [h["state"] for h in (h1, h2, h3)] == ["done"] * 3
        # h2: maintained and gated in place, nothing drained
        assert sorted(h2["phases"]) == ["gate", "maintenance"] and h2["drained"] == [], h2
        # h1: its VMs stopped (cleanly) between its drain and its maintenance - recorded as about to stop first -,
        # started after its gate, pt1 first, by job 1, where pl1 did not answer; job 2's attempt only starts it again
        # (found running: checked until it answers) - no second drain, stop or maintenance
        assert [(s["name"], s["state"]) for s in h1["stopped"]] == [
            ("pl1", "stopping"), ("pt1", "stopping"), ("pl1", "stopped"), ("pt1", "stopped")], h1["stopped"]
        assert all(s["how"] == "clean" for s in h1["stopped"] if s["state"] == "stopped"), h1["stopped"]
        assert [(s["name"], s["state"]) for s in h1["started"]] == [("pt1", "started"), ("pl1", "already_running")]
        assert [a["failed_phase"] for a in h1["attempts"]] == ["start"], h1["attempts"]
        ph = h1["attempts"][0]["phases"]
        assert ph["drain"]["end"] <= ph["stop"]["start"] <= ph["stop"]["end"] <= ph["maintenance"]["start"]
        assert ph["gate"]["end"] <= ph["start"]["start"]
        assert sorted(h1["phases"]) == ["gate", "return", "start"], h1["phases"]
        assert all(s["answered_at"] >= s["running_at"] for s in h1["started"])
        assert [m["name"] for m in h3["drained"]] == ["pm3"] and [m["name"] for m in h3["returned"]] == ["pm3"]

        # the report: each stopped VM's downtime against its prediction
        run_dir = os.path.join(reports, run_id)
        with open(os.path.join(run_dir, "report.json")) as f:
            rep = json.load(f)
        down = rep["stopped_in_place"]
        assert sorted(down) == ["pl1", "pt1"] and all(d["downtime_s"] > 0 and d["host"] == "h1" for d in down.values())
        with open(os.path.join(run_dir, "report.txt")) as f:
            text = f.read()
        assert re.search(r"pt1: stopped in place on h1 \(clean shutdown\), back \d+\.\d s later \(predicted 65\.0 s\)",
                         text), text
        assert "STOP" in text.splitlines()[0] and "START" in text.splitlines()[0]
        figures["monthly_patching"] = {
            "check_mode_s": round(check_s, 1), "run_s": round(run_s, 1),
            "downtime_s": dict((n, d["downtime_s"]) for n, d in down.items()),
            "client_max_gap_ms": dict((n, probes[n].result["max_gap_ms"]) for n in probes)}
    finally:
        for n in names:
            L.remove_guest(n)
