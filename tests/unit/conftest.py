"""Make the collection importable as ansible_collections.vmmigration.libvirt for plain pytest runs."""
import hashlib
import os
import sys
import tempfile

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _collection_root():
    here = TOP
    parts = here.split(os.sep)
    if len(parts) >= 3 and parts[-3] == "ansible_collections":
        return os.sep.join(parts[:-3])
    root = os.path.join(tempfile.gettempdir(), "vmm-collection-path-%s" % hashlib.sha1(here.encode()).hexdigest()[:10])
    link = os.path.join(root, "ansible_collections", "vmmigration", "libvirt")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.realpath(link) != here:
        if os.path.islink(link):
            os.unlink(link)
        os.symlink(here, link)
    return root


sys.path.insert(0, _collection_root())


import pytest  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(autouse=True)
def _drain_locks_in_tmp(tmp_path, monkeypatch):
    """The drains of the unit tests lock their (fake) hosts in the test's own directory, not in /run/lock."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import drain_files as DRAIN_FILES
    monkeypatch.setattr(DRAIN_FILES, "LOCK_DIRS", (str(tmp_path),))


# The repository's own checks (its packaging, README, AWX build and docs generators) need files the built collection
# does not ship (galaxy.yml, the lab's scripts, docs/awx/build-ee.sh): from an installed collection's tarball, the
# unit tests of its plugins and roles run, these are not collected.
IN_THE_SOURCE_REPOSITORY = os.path.exists(os.path.join(TOP, "galaxy.yml"))
collect_ignore = [] if IN_THE_SOURCE_REPOSITORY else [
    "test_packaging.py", "test_readme_quickstart.py", "test_awx_and_docs.py", "test_role_specs.py"]
