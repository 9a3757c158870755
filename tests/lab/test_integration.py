"""Integration targets (tests/integration/targets/*) run with ansible-playbook from the lab's
controller namespace, over SSH, against the lab hypervisors."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

TARGETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration")
PCI_HOSTDEV = ("<hostdev mode='subsystem' type='pci' managed='no'><source>"
               "<address domain='0x0000' bus='0x00' slot='0x1f' function='0x7'/></source></hostdev>")


def run_target(target, **extra):
    p = L.playbook(os.path.join(TARGETS, "lab_target.yml"), extra_vars=dict(target=target, **extra))
    assert p.returncode == 0, "target %s failed:\n%s\n%s" % (target, p.stdout[-8000:], p.stderr[-3000:])
    return p


def remove_guest(host, name):
    L.virsh(host, "destroy", name, check=False)
    L.virsh(host, "undefine", name, check=False)


def test_host_info(lab):
    h1 = lab["hosts"][0]
    running = L.define_guest("hi_running", h1, disk="nbd")
    L.define_guest("hi_blocked", h1, disk="none", start=False, extra_devices=PCI_HOSTDEV)
    try:
        L.wait_guest(running["ip"])
        run_target("host_info", hi_running_mac=running["mac"])
    finally:
        remove_guest(h1, "hi_running")
        remove_guest(h1, "hi_blocked")


def test_shared_storage(lab):
    h1 = lab["hosts"][0]
    names = ["ss_nbd", "ss_shared", "ss_local"]
    for name, disk in zip(names, ["nbd", "shared", "local"]):
        L.define_guest(name, h1, disk=disk, start=False)
    try:
        run_target("shared_storage", target_hosts=h1)
    finally:
        for name in names:
            remove_guest(h1, name)
    # no transient probe pool left on any host
    for h in lab["hosts"]:
        assert not [p for p in L.virsh(h, "pool-list", "--all", "--name").stdout.split() if p.startswith("vmm-probe")]


AVX512_CPU = ("<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model>"
              "<feature policy='require' name='avx512f'/></cpu>")


def test_cpu_baseline(lab):
    """cpu_baseline over the three hosts: the baseline, each VM judged, a VM set to it (check, diff, real, again),
    then started with it; a VM on no host refused (tests/integration/targets/cpu_baseline)."""
    h1 = lab["hosts"][0]
    guests = [("cb_run", dict(disk="none", memory_mib=96)),
              ("cb_off", dict(disk="none", memory_mib=96, start=False, cpu_xml="<cpu mode='host-passthrough'/>")),
              ("cb_avx", dict(disk="none", start=False, cpu_xml=AVX512_CPU))]
    try:
        for name, kw in guests:
            L.define_guest(name, h1, **kw)
        run_target("cpu_baseline", target_hosts=h1)
    finally:
        for name, _kw in guests:
            remove_guest(h1, name)


def test_migration_check(lab):
    h1 = lab["hosts"][0]
    guests = [("mc_live", dict(disk="nbd")),
              ("mc_local", dict(disk="local")),
              ("mc_cpu", dict(disk="none", start=False, cpu_xml=AVX512_CPU)),
              ("mc_net2", dict(disk="none", start=False, network="br1")),
              ("mc_hostdev", dict(disk="none", start=False, extra_devices=PCI_HOSTDEV))]
    try:
        for name, kw in guests:
            g = L.define_guest(name, h1, **kw)
            if kw.get("start", True):
                L.wait_guest(g["ip"])
        run_target("migration_check", target_hosts=h1)
    finally:
        for name, _kw in guests:
            remove_guest(h1, name)
