"""What Galaxy and Automation Hub expect of the collection as built: its licence, no placeholder address, every
plugin added in this version, one action group for the modules that open a libvirt connection, and a tarball
that holds what users run - not the lab, its integration targets, benchmarks, soak or the project's scripts."""
import ast
import glob
import os
import subprocess
import sys
import tarfile

import pytest
import yaml

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def galaxy():
    with open(os.path.join(TOP, "galaxy.yml")) as f:
        return yaml.safe_load(f)


def version(text):
    return tuple(int(x) for x in str(text).split("."))


def module_doc(path):
    """The DOCUMENTATION of a module file, read without importing it."""
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            return yaml.safe_load(node.value.value)
    raise AssertionError("%s has no DOCUMENTATION" % path)


def shipped_text_files():
    ignore = [os.path.join(TOP, p) for p in galaxy()["build_ignore"]]
    for base in ("galaxy.yml", "README.md", "meta", "plugins", "roles", "playbooks", "docs", "changelogs"):
        for path in [os.path.join(TOP, base)] + glob.glob(os.path.join(TOP, base, "**"), recursive=True):
            if os.path.isfile(path) and not any(path.startswith(i) for i in ignore) and \
                    path.endswith((".yml", ".yaml", ".py", ".md", ".rst", ".json", ".j2", ".txt")):
                yield path


def test_the_licence_is_shipped_and_is_the_one_galaxy_yml_names():
    g = galaxy()
    assert g["license"] == ["GPL-3.0-or-later"] and "license_file" not in g
    with open(os.path.join(TOP, "LICENSE")) as f:
        text = f.read()
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 3, 29 June 2007" in text


def test_no_placeholder_address_anywhere_users_read():
    found = []
    for path in shipped_text_files():
        with open(path, encoding="utf-8", errors="replace") as f:
            if "example.invalid" in f.read():
                found.append(os.path.relpath(path, TOP))
    assert found == [], "placeholder URLs (give a real address or none): %s" % found
    for key in ("repository", "documentation", "homepage", "issues"):
        assert "example" not in str(galaxy().get(key) or ""), key


def test_every_plugin_and_option_was_added_in_a_version_that_exists():
    current = version(galaxy()["version"])
    late = []

    def walk(where, options):
        for name, spec in (options or {}).items():
            if "version_added" in spec and version(spec["version_added"]) > current:
                late.append("%s: %s %s" % (where, name, spec["version_added"]))
            walk("%s.%s" % (where, name), spec.get("suboptions"))
    for path in sorted(glob.glob(os.path.join(TOP, "plugins", "modules", "*.py"))):
        doc = module_doc(path)
        if version(doc["version_added"]) > current:
            late.append("%s %s" % (os.path.basename(path), doc["version_added"]))
        walk(os.path.basename(path), doc.get("options"))
    for path in sorted(glob.glob(os.path.join(TOP, "plugins", "filter", "*.yml"))):
        with open(path) as f:
            doc = yaml.safe_load(f)["DOCUMENTATION"]
        if version(doc["version_added"]) > current:
            late.append("%s %s" % (os.path.basename(path), doc["version_added"]))
    assert late == [], "added in a version later than %s: %s" % (galaxy()["version"], late)


def test_module_defaults_can_set_the_connection_once_for_every_module_that_opens_one():
    with open(os.path.join(TOP, "meta", "runtime.yml")) as f:
        group = yaml.safe_load(f)["action_groups"]["libvirt"]
    opening = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(TOP, "plugins", "modules", "*.py"))
                     if "argument_spec.update(CONNECTION_ARGSPEC)" in open(p).read())
    assert len(opening) >= 10 and sorted(group) == opening


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    galaxy_bin = os.path.join(os.path.dirname(sys.executable), "ansible-galaxy")
    subprocess.run([galaxy_bin, "collection", "build", "--output-path", str(out), "--force", TOP], check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    (path,) = glob.glob(str(out / "*.tar.gz"))
    with tarfile.open(path) as t:
        return [m.name for m in t.getmembers()]


def test_the_tarball_holds_what_users_run_and_its_unit_and_sanity_tests(tarball):
    # (.ansible-lint too: Galaxy's importer lints the collection without its dependencies, with its mock_modules)
    names = set(tarball)
    for want in ("LICENSE", "README.md", "MANIFEST.json", "FILES.json", "meta/runtime.yml", "plugins/modules/migrate.py",
                 "plugins/action/controller_files.py", "roles/rolling_maintenance/tasks/main.yml", "playbooks/evacuate_host.yml",
                 "docs/docsite/rst/guide_awx.rst", "changelogs/config.yaml", "tests/unit/conftest.py", "tests/sanity.sh",
                 "tests/config.yml", ".ansible-lint", "CONTRIBUTING.md"):
        assert want in names, want


def test_the_tarball_leaves_the_lab_and_the_projects_own_tools_out(tarball):
    kept = [n for n in tarball if n.startswith(("tests/lab", "tests/integration", "tests/benchmarks", "tests/mutants",
                                                "tests/soak", "tests/matrix", "extensions", ".ci", ".git", ".venv"))
            or n in ("tests/run.sh", "tests/demo.sh", "tests/bench.sh", "tests/lint.sh", "tests/galaxy_import.sh",
                     "requirements-test.txt", "requirements.txt", "docs/build.sh", "docs/make_role_options.py",
                     "docs/awx/make_surveys.py", "docs/awx/build-ee.sh")
            or "__pycache__" in n or n.endswith(".pyc")]
    assert kept == [], kept


def test_module_defaults_of_the_group_reach_each_module(tmp_path):
    """A play sets the connection once for the group; the module opens libvirt where it says (libvirt's test driver:
    a real libvirt, no hypervisor, no network). Without it, the module's own default would be used."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from conftest import _collection_root  # pylint: disable=import-outside-toplevel
    play = tmp_path / "play.yml"
    play.write_text("""
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/vmmigration.libvirt.libvirt:
      uri: test:///default
  tasks:
    - vmmigration.libvirt.host_info: {include_domains: false}
      register: facts
    - ansible.builtin.debug: {msg: "read through {{ facts.host.uri }} on {{ facts.host.hostname }}"}
""")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_collection_root(), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_RETRY_FILES_ENABLED="False")
    env.pop("ANSIBLE_CONFIG", None)
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    p = subprocess.run([exe, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable,
                        str(play)], env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
                       check=False)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "read through test:///default on " in p.stdout, p.stdout[-3000:]


def test_every_role_names_the_same_platforms_the_readme_supports():
    want = [{"name": "Debian", "versions": ["bookworm", "trixie"]}, {"name": "EL", "versions": ["8", "9"]},
            {"name": "Ubuntu", "versions": ["jammy", "noble"]}]
    for path in glob.glob(os.path.join(TOP, "roles", "*", "meta", "main.yml")):
        with open(path) as f:
            assert yaml.safe_load(f)["galaxy_info"]["platforms"] == want, path
    with open(os.path.join(TOP, "README.md")) as f:
        readme = f.read()
    assert "Debian" in readme and "Ubuntu" in readme and "RHEL" in readme
