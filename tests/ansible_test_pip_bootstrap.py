"""Give ansible-test its pip bootstrap without it reaching outside the machine.

ansible-test bootstraps pip into each sanity virtual environment with a ``get-pip`` script that it
downloads from a host this workplace cannot (and must not) reach, unless the script is already in
its cache (~/.ansible/test/cache/get_pip_<version>.py). This writes that cache entry: a small
script that does what get-pip does, from the pip wheel fetched from PyPI by plain ``pip download``:
put pip on sys.path and run ``pip install --upgrade --force-reinstall --no-compile <args>``.

Two things keep that cheap, since every sanity environment pays it (tests/matrix.sh makes five per
ansible-core version):
- pip runs from the wheel unpacked once into the cache (pip-<version>/), not from the zip: Python
  caches the bytecode of an unpacked pip after its first run, and never for a zip;
- ``--no-compile``: the pip, setuptools and wheel installed into the environment are run by
  ansible-test once, to install the test's requirements (which are compiled as usual); byte-compiling
  their ~1,000 files was most of the bootstrap's time.

Files are written under a temporary name and renamed, so that two ansible-test runs sharing a HOME
never see half of one.
"""
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

SHIM = '''# get-pip equivalent written by vmmigration.libvirt tests/ansible_test_pip_bootstrap.py
import sys
sys.path.insert(0, %(pip)r)
from pip._internal.cli.main import main
# get-pip's own switches: without them it would add setuptools and wheel; ansible-test always passes them
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall", "--no-compile"] + args))
'''


def pip_python():
    """This Python if it has pip, else the one its virtual environment was made from (tests/matrix.sh
    makes its venvs without pip)."""
    if importlib.util.find_spec("pip") is not None:
        return sys.executable
    return getattr(sys, "_base_executable", None) or "python3"


def main():
    from ansible_test._internal.python_requirements import get_venv_packages  # pylint: disable=import-error

    class _Py:  # get_venv_packages only reads .version
        version = "%d.%d" % sys.version_info[:2]
    version = get_venv_packages(_Py())["pip"]
    cache = os.path.expanduser("~/.ansible/test/cache")
    os.makedirs(cache, exist_ok=True)
    target = os.path.join(cache, "get_pip_%s.py" % version.replace(".", "_"))

    wheels = glob.glob(os.path.join(cache, "pip-%s-*.whl" % version))
    if not wheels:
        download = tempfile.mkdtemp(prefix=".pip-download-", dir=cache)
        try:
            subprocess.run([pip_python(), "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            "-d", download, "pip==%s" % version], check=True)
            for name in os.listdir(download):
                os.replace(os.path.join(download, name), os.path.join(cache, name))
        finally:
            shutil.rmtree(download, ignore_errors=True)
        wheels = glob.glob(os.path.join(cache, "pip-%s-*.whl" % version))

    unpacked = os.path.join(cache, "pip-%s" % version)
    if not os.path.isdir(os.path.join(unpacked, "pip")):
        tmp = tempfile.mkdtemp(prefix=".pip-unpack-", dir=cache)
        with zipfile.ZipFile(wheels[0]) as whl:  # the package alone: with its dist-info, pip would see
            whl.extractall(tmp, [m for m in whl.namelist() if m.startswith("pip/")])  # itself installed
        shutil.rmtree(unpacked, ignore_errors=True)
        os.replace(tmp, unpacked)

    text = SHIM % {"pip": unpacked}
    if not os.path.exists(target) or open(target).read() != text:
        fd, tmp = tempfile.mkstemp(prefix=".get_pip-", dir=cache)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, target)
    print("ansible-test pip %s bootstrap: %s" % (version, target))


if __name__ == "__main__":
    main()
