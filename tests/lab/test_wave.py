"""The wave (issue 23): a rolling run with return stay over the lab's three hypervisors, h1 empty, a guest on h2 and
one on h3. Check mode prints the run simulated in its order - 2 VMs, 2 moves, against the 4 returning home would
make - and the run moves each VM once: h2's guest to h1 (maintained by then), h3's to a host already maintained;
nothing moves twice, every guest intact, its client probe never cut off long."""
import json
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

GUESTS = [("wv2", "h2"), ("wv3", "h3")]


def test_the_wave_moves_each_vm_once(lab, figures):
    from test_migrate import integrity, where  # pylint: disable=import-outside-toplevel
    playbook = os.path.join(L.TOP, "playbooks", "rolling_maintenance.yml")
    reports, state = L.state_path("wave-reports"), L.state_path("wave-state")
    for d in (reports, state):
        shutil.rmtree(d, ignore_errors=True)
    common = {"rolling_maintenance_report_dir": reports,
              "rolling_maintenance_state_dir": state + "/{{ inventory_hostname }}",
              "rolling_maintenance_tasks": os.path.join(L.TOP, "tests", "lab", "rolling_hook.yml"),
              "rolling_maintenance_expected_s": 5, "rolling_maintenance_gate_timeout_s": 60,
              "rolling_maintenance_return": "stay", "rolling_maintenance_cpu_check": False,
              "evacuate_host_headroom_mib": 64}
    names = [n for n, _h in GUESTS]
    try:
        for name, host in GUESTS:
            L.define_guest(name, host, disk="none", memory_mib=96)
        ips = dict((n, L.load_state()["guests"][n]["ip"]) for n in names)
        before = dict((n, L.wait_guest(ips[n])) for n in names)

        p = L.playbook(playbook, extra_vars=common, check=True)
        assert p.returncode == 0, p.stdout[-6000:]
        said = " ".join(p.stdout.split())
        assert "the run (return stay, wave): 2 VMs, 2 moves (1.00 a VM)" in said, said[-6000:]
        assert "returning each VM home instead would make 4 moves" in said, said[-6000:]
        # (planned on the controller: h2's guest goes to h1, maintained first)
        assert "wv2 -> h1 (" in said, said[-6000:]

        probes = dict((n, L.Blackout(ips[n], hz=20)) for n in names)
        for pr in probes.values():
            pr.__enter__()
        t0 = time.monotonic()
        try:
            p = L.playbook(playbook, extra_vars=common)
        finally:
            wall = time.monotonic() - t0
            for pr in probes.values():
                pr.__exit__(None, None, None)
        assert p.returncode == 0, p.stdout[-8000:]
        run_id = re.search(r"rolling maintenance of \S+: a new run: (\S+?)\W*\n", p.stdout).group(1)
        with open(os.path.join(reports, run_id, "report.json")) as f:
            rep = json.load(f)
        assert rep["state"] == "done", rep["table"]
        by = dict((h["name"], h) for h in rep["hosts"])
        moved = [(m["name"], h, m["destination"]) for h in ("h1", "h2", "h3") for m in by[h].get("drained") or []]
        # each VM moved once, to a host maintained before its own
        assert sorted(n for n, _h, _d in moved) == ["wv2", "wv3"], moved
        assert dict((n, d) for n, _h, d in moved)["wv2"] == "h1", moved
        assert dict((n, d) for n, _h, d in moved)["wv3"] in ("h1", "h2"), moved
        for n in names:
            end = dict((x, d) for x, _h, d in moved)[n]
            assert where(lab, n) == {end: "running"}, (n, where(lab, n))
            integrity(before[n], L.wait_guest(ips[n], timeout=30), n)
            assert probes[n].result["max_gap_ms"] < 3000, (n, probes[n].result)
        figures["wave_3_hosts"] = {"run_wall_s": round(wall, 1), "moves": moved,
                                   "client_max_gap_ms": dict((n, probes[n].result["max_gap_ms"]) for n in names)}

        # two hosts out at once with return stay: each drain plans for itself (no approved plan), so each takes its
        # share of every destination's inbound limit (2): one migration each into the host outside the step
        t0 = time.monotonic()
        p = L.playbook(playbook, extra_vars=dict(common, rolling_maintenance_batch=2))
        wall2 = time.monotonic() - t0
        assert p.returncode == 0, p.stdout[-8000:]
        said = " ".join(p.stdout.split())
        shared = re.findall(r"(h\d) drains beside 1 other drain\(s\) into the same hosts: at most 1 migration\(s\) "
                            r"into each destination at once \(its share of evacuate_host_max_inbound 2\)", said)
        assert len(shared) == 2 and len(set(shared)) == 2, (shared, said[-6000:])
        run2 = re.search(r"rolling maintenance of \S+: a new run: (\S+?)\W*\n", p.stdout).group(1)
        with open(os.path.join(reports, run2, "report.json")) as f:
            rep2 = json.load(f)
        assert rep2["state"] == "done", rep2["table"]
        for n in names:
            there = [h for h, st in where(lab, n).items() if st == "running"]
            assert len(there) == 1 and len(where(lab, n)) == 1, (n, where(lab, n))
            integrity(before[n], L.wait_guest(ips[n], timeout=30), n)
        figures["wave_3_hosts"].update(batch2_run_wall_s=round(wall2, 1), batch2_shared_by=sorted(shared))
    finally:
        for n in names:
            L.remove_guest(n)
