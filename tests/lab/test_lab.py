"""Lab smoke tests: the lab itself, and a real live migration between two lab hypervisors.

Needs root and the packages from tests/lab/setup.sh. The lab comes from the session fixture in
conftest.py; test_zz_down.py takes it down at the end and asserts nothing is left behind.
"""
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position
from test_migrate import integrity  # noqa: E402  pylint: disable=wrong-import-position

LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab")


def lab_cmd(*args, user=None, env=None):
    cmd = [LAB] + list(args)
    if user:
        cmd = ["setpriv", "--reuid=%s" % user, "--regid=%s" % user, "--clear-groups"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


def test_up_refuses_a_running_lab(lab):
    p = lab_cmd("up")
    assert p.returncode == 1
    assert "already up" in p.stderr


def test_up_refuses_non_root(lab):
    p = lab_cmd("up", user="65534")
    assert p.returncode == 1
    assert "needs root" in p.stderr


def test_up_refuses_missing_packages(lab):
    env = dict(os.environ, PATH="/nonexistent")
    p = subprocess.run([L.VENV_PY, os.path.join(L.HERE, "vmmlab.py"), "up"], capture_output=True, text=True,
                       env=env, timeout=60, check=False)
    assert p.returncode == 1
    assert "missing tools" in p.stderr and "setup.sh" in p.stderr


def test_the_lab_runs_a_qemu_without_the_tcg_migration_defect(lab):
    """The lab prints its stack, and refuses a QEMU older than 9.0 unless a compatibility pass asks."""
    versions = L.load_state()["versions"]
    assert versions == L.stack_versions()
    if not L.load_state()["compat"]:
        assert L._version(versions["qemu"]) >= (9, 0), versions  # pylint: disable=protected-access
    with pytest.raises(L.LabError, match="QEMU 7.2.22 is older than 9.0.*03bfc2188f06.*--compat"):
        L.check_stack({"qemu": "7.2.22", "libvirt": "9.0.0"})
    L.check_stack({"qemu": "7.2.22", "libvirt": "9.0.0"}, compat=True)
    L.check_stack({"qemu": "10.0.2", "libvirt": "11.3.0"})
    p = lab_cmd("status")
    assert "QEMU %s, libvirt %s" % (versions["qemu"], versions["libvirt"]) in p.stdout


def test_no_route_out_of_the_machine(lab):
    L.check_routes(["sw", "ctl", "cli", "sto"] + lab["hosts"])
    for ns in ["ctl", "cli", "sto"] + lab["hosts"]:
        for fam in ("-4", "-6"):
            p = L.run(["ip", "-n", L.NS + ns, fam, "route", "show", "default"])
            assert p.stdout.strip() == "", (ns, p.stdout)


def test_check_routes_catches_a_leak(lab):
    """The guard itself must fail when a namespace learns a route outside the lab prefixes."""
    L.run(["ip", "-n", L.NS + "cli", "route", "add", "203.0.113.0/24", "dev", "eth0"])
    try:
        with pytest.raises(L.LabError, match="outside the lab prefixes"):
            L.check_routes(["cli"])
    finally:
        L.run(["ip", "-n", L.NS + "cli", "route", "del", "203.0.113.0/24", "dev", "eth0"])


def test_hosts_are_distinct_hypervisors_reached_over_ssh(lab):
    uuids = set()
    for h in lab["hosts"]:
        caps = L.virsh(h, "capabilities").stdout
        uuid = caps.split("<uuid>")[1].split("</uuid>")[0]
        uuids.add(uuid)
        assert uuid == L.host_uuid(h)
        p = L.run(L.ns_exec("ctl", ["ssh", "-i", L.state_path("ssh", "id_lab"), "-o", "BatchMode=yes",
                                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                    "-o", "LogLevel=ERROR", "root@%s" % L.host_ip(h),
                                    "hostname; virsh -c qemu:///system capabilities | grep -c '<uuid>%s</uuid>'; "
                                    "cat ~/.bashrc 2>/dev/null || echo none" % L.host_uuid(h)]))
        # (root's shell start-up file is the host's own: the lab machine's would run in every Ansible task here)
        assert p.stdout.split()[:2] == [h, "1"]
        assert " ".join(p.stdout.split()[2:]) in ("# vmmlab host %s: root's ~/.bashrc (empty)" % h, "none")
    assert len(uuids) == len(lab["hosts"])


def test_heterogeneity(lab):
    """The last host lacks the second guest bridge and has another storage pool layout."""
    first, last = lab["hosts"][0], lab["hosts"][-1]
    assert L.run(["ip", "-n", L.NS + first, "link", "show", "br1"], check=False).returncode == 0
    assert L.run(["ip", "-n", L.NS + last, "link", "show", "br1"], check=False).returncode != 0
    assert set(L.virsh(first, "pool-list", "--name").stdout.split()) == {"local", "shared"}
    assert set(L.virsh(last, "pool-list", "--name").stdout.split()) == {"images"}


def test_storage_kinds(lab):
    """Same path on two hosts: the shared directory is one directory, the local one is not."""
    h1, h2 = lab["hosts"][:2]
    marker = "marker-%d" % os.getpid()
    for mnt, shared in ((L.MNT_SHARED, True), (L.MNT_LOCAL, False)):
        path = os.path.join(mnt, marker)
        L.run(L.host_enter(h1) + ["touch", path])
        seen = L.run(L.host_enter(h2) + ["test", "-e", path], check=False).returncode == 0
        L.run(L.host_enter(h1) + ["rm", "-f", path])
        assert seen == shared, mnt


def test_live_migration_with_client_probe(lab, figures):
    src, dst = lab["hosts"][0], lab["hosts"][1]
    t0 = time.monotonic()
    g = L.define_guest("smoke1", src, memory_mib=256, mem_workload_mib=32, mem_rate=16, disk="nbd", disk_ms=50)
    before = L.wait_guest(g["ip"], timeout=60)
    figures["guest_boot_s"] = round(time.monotonic() - t0, 2)
    time.sleep(1.0)
    with L.Blackout(g["ip"], hz=100) as probe:
        t1 = time.monotonic()
        L.run(["virsh", "-c", L.uri(src), "migrate", "--live", "--p2p", "--persistent", "--undefinesource",
               "smoke1", L.tcp_uri(dst)], timeout=120)
        wall = time.monotonic() - t1
    job = L.virsh(dst, "domjobinfo", "--completed", "smoke1").stdout
    downtime = int([l for l in job.splitlines() if l.startswith("Total downtime:")][0].split()[2])
    time.sleep(1.5)
    after = L.guest_status(g["ip"])
    figures.update(migration_wall_s=round(wall, 2), libvirt_downtime_ms=downtime,
                   client_max_gap_ms=probe.result["max_gap_ms"], client_lost=probe.result["lost"],
                   client_sent=probe.result["sent"])
    integrity(before, after, "smoke1")   # (a guest kernel panic is reported as such)
    # The guest runs on the destination only, is the same boot, and kept working.
    assert L.virsh(dst, "domstate", "smoke1").stdout.strip() == "running"
    assert "smoke1" not in L.virsh(src, "list", "--all", "--name").stdout.split()
    assert after is not None, "guest does not answer after the migration"
    assert after["boot_id"] == before["boot_id"]
    assert after["disk_seq"] > before["disk_seq"]
    assert after["disk_gaps"] == 0 and after["disk_errors"] == 0
    assert after["mem_passes"] > before["mem_passes"]
    assert after["mem_bad_words"] == 0
    assert probe.result["received"] > 0 and probe.result["max_gap_ms"] < 5000
    # Every host bridge keeps its own fixed MAC (a bridge that adopted a tap's MAC would now share it
    # with the other host's bridge: the hosts' own traffic would break).
    macs = [L.run(["ip", "-n", L.NS + h, "-j", "link", "show", "br0"]).stdout for h in lab["hosts"]]
    macs = [__import__("json").loads(m)[0]["address"] for m in macs]
    assert len(set(macs)) == len(macs) and all(m.startswith("02:18:") for m in macs), macs
    # The disk on the storage server holds every record, in order, up to what the guest reported.
    L.virsh(dst, "destroy", "smoke1")
    last, gaps = L.disk_records(g["image"])
    assert gaps == 0 and last >= after["disk_seq"]
