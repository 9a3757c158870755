"""Molecule scenarios (extensions/molecule/*) against the lab: molecule runs inside the lab's controller
namespace, like every Ansible run of the lab; create boots the scenario's guests, destroy removes them.
The scenario's own sequence includes idempotence (a second converge must change nothing) and verify."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position

SCENARIOS = sorted(os.listdir(os.path.join(L.TOP, "extensions", "molecule")))


def test_scenarios_exist():
    assert SCENARIOS == ["evacuate_host", "migrate_vm"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule(lab, scenario):
    env = L.ansible_env()
    env["MOLECULE_NO_LOG"] = "false"
    p = subprocess.run(L.ns_exec("ctl", [os.path.join(L.TOP, ".venv", "bin", "molecule"), "test", "-s", scenario]),
                       cwd=L.TOP, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
                       check=False)
    out = p.stdout
    assert p.returncode == 0, out[-10000:]
    # the sequence ran through, including idempotence (a second converge changing nothing) and verify
    for step in ("create", "converge", "idempotence", "verify", "destroy"):
        assert "[%s > %s] Executed: Successful" % (scenario, step) in out, step
