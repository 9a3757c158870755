"""The README's quick start for real hypervisors holds: its example inventory is one Ansible reads as the roles
expect (the group hypervisors, each host's address, TLS migration URIs), and every file and playbook it names
exists."""
import json
import os
import re
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme():
    with open(os.path.join(TOP, "README.md")) as f:
        return f.read()


def test_the_example_inventory_is_what_the_roles_expect():
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    env = dict(os.environ)
    env.pop("ANSIBLE_CONFIG", None)
    p = subprocess.run([exe, "-i", os.path.join(TOP, "docs", "examples", "inventory.example.yml"), "--list"],
                       capture_output=True, text=True, env=env, timeout=120, check=True)
    inv = json.loads(p.stdout)
    hosts = inv["hypervisors"]["hosts"]
    assert len(hosts) >= 3, hosts
    for h in hosts:
        hv = inv["_meta"]["hostvars"][h]
        assert hv["ansible_host"] and hv["libvirt_migration_uri"].startswith("qemu+tls://"), (h, hv)
        # the name peers use is one the tls role puts in the host's certificate
        assert any(hv["libvirt_migration_uri"].split("/")[2] in n.replace("{{ inventory_hostname }}", h)
                   for n in hv["tls_host_names"]), (h, hv)
        assert not hv.get("vmmigration_allow_plaintext"), "the example keeps TLS"


def test_every_file_and_playbook_the_readme_names_exists():
    text = readme()
    paths = set(re.findall(r"\b((?:docs|roles|playbooks|tests|plugins)/[\w./-]+\.(?:yml|rst|md|sh|py))\b", text))
    assert "docs/examples/inventory.example.yml" in paths and len(paths) > 5, paths
    missing = sorted(p for p in paths if not os.path.exists(os.path.join(TOP, p)))
    assert missing == [], missing
    playbooks = set(re.findall(r"ansible-playbook vmmigration\.libvirt\.(\w+)", text))
    assert {"tls", "evacuate_host", "rolling_maintenance"} <= playbooks, playbooks
    assert all(os.path.exists(os.path.join(TOP, "playbooks", p + ".yml")) for p in playbooks), playbooks


def test_the_readme_starts_with_the_two_commands_then_the_quick_start():
    text = readme()
    first = [line for line in text.splitlines() if line.startswith("bash ")]
    assert first[0].startswith("bash tests/demo.sh") and first[1].startswith("bash tests/run.sh"), first[:2]
    assert text.index("bash tests/demo.sh") < text.index("## Quick start on your hypervisors") < \
        text.index("ansible-galaxy collection install")
