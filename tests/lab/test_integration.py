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
