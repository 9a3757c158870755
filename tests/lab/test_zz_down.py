"""The last lab test: take the lab down and prove nothing is left, twice (down is idempotent)."""
import glob
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab")


def test_down_leaves_nothing_and_is_idempotent(lab, figures):
    # A libvirtd that stopped answering (frozen with SIGSTOP) with a guest running under it: down ends
    # both by PID instead of waiting for it or failing.
    L.define_guest("down_silent", "h3", disk="none")
    frozen = L._read_pid(L.state_path("hosts", "h3", "run-libvirt", "vmmlab-libvirtd.pid"))  # pylint: disable=protected-access
    os.kill(frozen, signal.SIGSTOP)
    # Every process the lab started: libvirtd and sshd per host, QEMU per running guest, qemu-nbd.
    started = list(L.load_state()["pids"].values())
    started += [int(open(p).read()) for p in glob.glob(L.state_path("hosts", "*", "run-libvirt", "qemu", "*.pid"))
                if not p.endswith("driver.pid")]
    assert started
    t0 = time.monotonic()
    p = subprocess.run([LAB, "down"], capture_output=True, text=True, timeout=300, check=False)
    figures["lab_down_s"] = round(time.monotonic() - t0, 2)
    assert p.returncode == 0, p.stderr
    assert "libvirtd on h3 does not answer" in p.stderr
    assert L.leftovers() == []
    assert not [ns for ns in L.list_netns() if ns.startswith(L.NS)]
    assert [pid for pid in started if L._comm(pid) and not L._zombie(pid)] == []  # pylint: disable=protected-access
    p = subprocess.run([LAB, "down"], capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    assert "nothing left" in p.stderr
