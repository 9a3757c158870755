"""A playbook launched without its target fails and names the variable to set: it is never a green no-op
(a play whose hosts match nothing ends rc 0 in Ansible). Runs ansible-playbook itself, on an inventory
whose hosts are never reached (the refusal comes first)."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import TOP, _collection_root  # noqa: E402  pylint: disable=wrong-import-position

INVENTORY = """[hypervisors]
hv1 ansible_host=198.18.255.1
hv2 ansible_host=198.18.255.2

[empty]
"""

CASES = [
    # playbook, extra vars, words the refusal must say, the play that must not start
    ("evacuate_host", [], "set -e source=HOST", "Drain a hypervisor"),
    ("evacuate_host", ["-e", "source=hv9"], "hv9 is not one", "Drain a hypervisor"),
    ("evacuate_host", ["-e", "source=hypervisors"], "hypervisors is not one", "Drain a hypervisor"),
    ("migrate_vm", ["-e", "vm=web1", "-e", "destination=hv2"], "set -e source=HOST", "Live-migrate one VM"),
    ("preflight", [], "set -e source=HOST", "Plan the moves off a hypervisor"),
    ("rolling_maintenance", ["-e", "rolling_maintenance_group=empty"], "no host in group empty",
     "Rolling maintenance - the cluster plan"),
    ("rolling_maintenance", ["-e", "rolling_maintenance_group=racks"], "no host in group racks",
     "Rolling maintenance - the cluster plan"),
    ("tls", ["-e", "targets=nowhere"], "nowhere matches no host of the inventory", "TLS for libvirt"),
    ("tls", ["-e", "targets=empty"], "empty matches no host of the inventory", "TLS for libvirt"),
]


def run_playbook(tmp_path, name, extra):
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(INVENTORY)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_collection_root(), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_RETRY_FILES_ENABLED="False")
    env.pop("ANSIBLE_CONFIG", None)
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    cmd = [exe if os.path.exists(exe) else "ansible-playbook", "-i", str(inventory),
           os.path.join(TOP, "playbooks", name + ".yml")] + extra
    return subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("name,extra,said,play", CASES)
def test_a_playbook_without_its_target_fails_and_says_what_to_set(tmp_path, name, extra, said, play):
    p = run_playbook(tmp_path, name, extra)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-3000:]
    assert said in " ".join(out.split()), out[-3000:]
    assert "PLAY [%s" % play not in out, out[-3000:]


def test_a_playbook_with_its_target_gets_past_the_check(tmp_path):
    """The check lets a good target through: it runs (tagged always) and the play on the host starts (no
    task of the role runs: none has the tag asked for, so the unreachable host is never contacted)."""
    p = run_playbook(tmp_path, "evacuate_host", ["-e", "source=hv1", "--tags", "no_such_tag"])
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "TASK [The host to drain is one host of the inventory]" in out and "PLAY [Drain a hypervisor]" in out, \
        out[-3000:]
