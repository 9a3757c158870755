"""Each option is defined once: the roles' typed sub-options are generated from the modules' argument specs
(docs/make_role_options.py) and must be current; the migrate_vm role passes exactly those keys to the
module; and the roles refuse bad input before they start (tests/unit/roles/tests_invalid_inputs.yml)."""
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "docs"))
import make_role_options  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import cold as CM  # noqa: E402
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import live as M  # noqa: E402


def role_options(role):
    with open(os.path.join(TOP, "roles", role, "meta", "argument_specs.yml")) as f:
        return yaml.safe_load(f)["argument_specs"]["main"]["options"]


def test_generated_sub_options_are_current():
    assert make_role_options.main(check=True) == 0, "run: python docs/make_role_options.py"


def test_sub_options_agree_with_the_modules():
    live, cold = M.migration_argspec(), CM.COLD_ARGSPEC
    subs = [(role_options("migrate_vm")["migrate_vm_options"]["options"], live, set(M.ROLE_MIGRATE_VM_OPTIONS)),
            (role_options("evacuate_host")["evacuate_host_migrate_options"]["options"], live,
             set(live) - set(M.SET_BY_THE_DRAIN)),
            (role_options("evacuate_host")["evacuate_host_cold_options"]["options"], cold,
             set(cold) - set(CM.COLD_SET_BY_THE_DRAIN))]
    for options, spec, keys in subs:
        assert set(options) == keys
        for key, entry in options.items():
            assert entry["type"] == spec[key].get("type", "str"), key
            assert entry.get("choices") == spec[key].get("choices"), key
            assert "default" not in entry, key      # a default here would be filled into the role's variable


def test_migrate_vm_passes_exactly_its_options_to_the_module():
    with open(os.path.join(TOP, "roles", "migrate_vm", "tasks", "main.yml")) as f:
        tasks = yaml.safe_load(f)
    migrate = [t for t in tasks if "vmmigration.libvirt.migrate" in t]
    assert len(migrate) == 1
    passed = set()
    for arg, value in migrate[0]["vmmigration.libvirt.migrate"].items():
        m = re.search(r"migrate_vm_opts\.(\w+)", str(value))   # (migrate_vm_options, read by as_data)
        if m:
            assert m.group(1) == arg, (arg, value)
            passed.add(arg)
    assert passed == set(M.ROLE_MIGRATE_VM_OPTIONS)


def test_roles_refuse_invalid_input_before_they_start(tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare: ansible runs in a network namespace with no route anywhere")
    root = [p for p in sys.path if os.path.isdir(os.path.join(p, "ansible_collections", "vmmigration", "libvirt"))][0]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=root, ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_HOME=str(tmp_path / "home"), ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    done = subprocess.run(["unshare", "--net", "--", playbook, "-i", "localhost,",
                           os.path.join(TOP, "tests", "unit", "roles", "tests_invalid_inputs.yml")],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    recap = re.search(r"localhost\s*:.*failed=(\d+).*rescued=(\d+)", done.stdout)
    assert recap and recap.group(1) == "0", done.stdout[-4000:]
    cases = len(re.findall(r"^    - name: Case - ", open(os.path.join(TOP, "tests", "unit", "roles",
                                                                      "tests_invalid_inputs.yml")).read(), re.M))
    assert cases == 8 and int(recap.group(2)) == cases, done.stdout[-4000:]
