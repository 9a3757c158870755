"""Never lose a VM: faults injected in the middle of a pre-copy migration.

In each case the guest must run on exactly one host (the source), its disk counter must not go
backwards nor skip, its memory verifier must find no bad word, the task must fail with a clear
message, and a rerun after the fault is cleared must succeed.
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position
from test_integration import TARGETS  # noqa: E402  pylint: disable=wrong-import-position
from test_migrate import integrity, migrate_with_probe, where  # noqa: E402  pylint: disable=wrong-import-position


def wait_for_precopy(name, timeout=60):
    """Until the module's status file shows a pre-copy pass under way."""
    path = L.state_path("status-%s.json" % name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                st = json.load(f)
            if st.get("phase") == "migrating" and (st.get("iteration") or 0) >= 1 and (st.get("percent") or 0) > 5:
                return st
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError("the migration never got going")


def broken_migration(name, dest, inject, clear):
    status_file = L.state_path("status-%s.json" % name)
    if os.path.exists(status_file):
        os.unlink(status_file)
    g = L.load_state()["guests"][name]
    before = L.guest_status(g["ip"])
    out = {}
    t = threading.Thread(target=lambda: out.update(p=L.playbook(
        os.path.join(TARGETS, "lab_target.yml"),
        extra_vars={"target": "migrate_fault", "target_hosts": g["host"], "mig_domain": name,
                    "mig_dest": dest, "mig_bandwidth": 32})))
    t.start()
    try:
        wait_for_precopy(name)
        inject()
    finally:
        t.join(300)
    assert out["p"].returncode == 0, out["p"].stdout[-4000:]
    try:
        with open(L.state_path("result-%s.json" % name)) as f:
            result = json.load(f)
    finally:
        clear()
    return before, result


def test_destination_libvirtd_killed_mid_precopy(lab, figures):
    g = L.define_guest("fault_kill", "h1", disk="nbd", mem_workload_mib=64, mem_rate=0)
    L.wait_guest(g["ip"])
    t0 = time.monotonic()
    before, result = broken_migration("fault_kill", "h2", lambda: L.kill_libvirtd("h2"),
                                      lambda: L.restart_libvirtd("h2"))
    assert result["failed"] and "live migration of fault_kill failed" in result["msg"]
    assert "the guest is running on the source" in result["msg"]
    assert result["state"] == "rolled_back"
    time.sleep(2)
    assert where(lab, "fault_kill") == {"h1": "running"}
    integrity(before, L.guest_status(g["ip"]), "fault_kill")
    figures["fault_kill_dest_libvirtd"] = {"failed_after_s": round(time.monotonic() - t0, 1)}
    # the fault cleared, a rerun succeeds
    # (the strategy depends on the dirty rate measured at the time: not asserted here)
    migrate_with_probe(lab, figures, "fault_kill_rerun", "fault_kill", "h2", mig_bandwidth=64)
    L.virsh("h2", "destroy", "fault_kill")


def test_link_cut_mid_precopy(lab, figures):
    g = L.define_guest("fault_link", "h1", disk="nbd", mem_workload_mib=64, mem_rate=0)
    L.wait_guest(g["ip"])
    t0 = time.monotonic()
    before, result = broken_migration("fault_link", "h2", lambda: L.set_link("h2", False),
                                      lambda: L.set_link("h2", True))
    assert result["failed"] and "live migration of fault_link failed" in result["msg"]
    assert result["state"] == "rolled_back"
    assert "abort" in [d["action"] for d in result["decisions"]]
    assert "postcopy" not in [d["action"] for d in result["decisions"]]
    time.sleep(2)
    assert where(lab, "fault_link")["h1"] == "running"
    # the destination's half-migrated copy goes away by itself once it notices the source is gone
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and where(lab, "fault_link") != {"h1": "running"}:
        time.sleep(1)
    assert where(lab, "fault_link") == {"h1": "running"}
    integrity(before, L.guest_status(g["ip"]), "fault_link")
    figures["fault_link_cut"] = {"failed_after_s": round(time.monotonic() - t0, 1)}
    migrate_with_probe(lab, figures, "fault_link_rerun", "fault_link", "h2", mig_bandwidth=64)
    L.virsh("h2", "destroy", "fault_link")
