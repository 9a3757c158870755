"""Give ansible-test its pip bootstrap without it reaching outside the machine.

ansible-test bootstraps pip into each sanity virtual environment with a ``get-pip`` script that it
downloads from a host this workplace cannot (and must not) reach, unless the script is already in
its cache (~/.ansible/test/cache/get_pip_<version>.py). This writes that cache entry: a small
script that does what get-pip does, from the pip wheel fetched from PyPI by plain ``pip download``:
put the wheel on sys.path and run ``pip install --upgrade --force-reinstall <args>``.
"""
import glob
import os
import subprocess
import sys

SHIM = '''# get-pip equivalent written by vmmigration.libvirt tests/ansible_test_pip_bootstrap.py
import sys
sys.path.insert(0, %(wheel)r)
from pip._internal.cli.main import main
# get-pip's own switches: without them it would add setuptools and wheel; ansible-test always passes them
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall"] + args))
'''


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
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "-d", cache, "pip==%s" % version], check=True)
        wheels = glob.glob(os.path.join(cache, "pip-%s-*.whl" % version))
    text = SHIM % {"wheel": wheels[0]}
    if not os.path.exists(target) or open(target).read() != text:
        with open(target, "w") as f:
            f.write(text)
    print("ansible-test pip %s bootstrap: %s" % (version, target))


if __name__ == "__main__":
    main()
