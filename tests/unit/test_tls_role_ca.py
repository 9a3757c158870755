"""The tls role keeps one CA across fresh controllers (issue 22, AWX): the CA given as PEM text (as the AWX
credential injects it) is used from memory, a controller without the host's key takes it from the host, and a
run that would put another CA on hosts that trust one is refused before anything changes.

Runs playbooks/tls.yml on two "hosts" reached with the local connection, each with its files in a directory
of its own. No libvirt here: the role's last task (host_info reading libvirtd back) fails; everything before it
is what is checked."""
import datetime
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import TOP, _collection_root  # noqa: E402  pylint: disable=wrong-import-position

crypto = pytest.importorskip("cryptography")
# (the role's tasks are community.crypto's: the main venv has it - tests/lab/setup.sh -; the version matrix's
# venvs, which test our own code against older ansible-core, do not)
pytest.importorskip("ansible_collections.community.crypto",
                    reason="community.crypto is not installed with this ansible-core (the main venv runs this test)")
from cryptography import x509  # noqa: E402  pylint: disable=wrong-import-position
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402  pylint: disable=wrong-import-position
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402  pylint: disable=wrong-import-position
from cryptography.x509.oid import NameOID  # noqa: E402  pylint: disable=wrong-import-position

HOSTS = ("h1", "h2")
LAST_TASK = "What the host now says of itself"    # host_info: needs libvirtd, which a unit test does not have


def make_ca(name):
    """(certificate PEM, key PEM) of a self-signed CA."""
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def host_vars(tmp_path, h):
    d = tmp_path / h
    (d / "etc").mkdir(parents=True, exist_ok=True)
    for conf in ("libvirtd.conf", "qemu.conf"):
        if not (d / "etc" / conf).exists():      # (created once: the files' times are compared)
            (d / "etc" / conf).write_text("")
    return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "tls_qemu_cert_dir": str(d / "qemu"), "tls_libvirt_ca_file": str(d / "CA" / "cacert.pem"),
            "tls_libvirt_cert_file": str(d / "libvirt" / "servercert.pem"),
            "tls_libvirt_key_file": str(d / "libvirt" / "private" / "serverkey.pem"),
            "tls_libvirt_client_cert_file": str(d / "libvirt" / "clientcert.pem"),
            "tls_libvirt_client_key_file": str(d / "libvirt" / "private" / "clientkey.pem"),
            "tls_libvirtd_conf": str(d / "etc" / "libvirtd.conf"), "tls_qemu_conf": str(d / "etc" / "qemu.conf"),
            "tls_qemu_key_group": "root" if os.geteuid() == 0 else str(os.getgid())}


def run_tls(tmp_path, job, ca=None, check=False, **extra):
    """playbooks/tls.yml as a fresh container runs it: a tls_ca_dir of its own, the CA given as PEM text or not."""
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"hypervisors": {"hosts": dict((h, host_vars(tmp_path, h)) for h in HOSTS)}}))
    extra_vars = dict({"tls_ca_dir": str(tmp_path / ("ca-" + job)), "tls_become": False, "tls_restart": False,
                       "tls_host_names": ["127.0.0.1"]}, **extra)
    if ca:
        extra_vars.update(tls_ca_cert_pem=ca[0], tls_ca_key_pem=ca[1])
    (tmp_path / "vars.json").write_text(json.dumps(extra_vars))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_collection_root(), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_RETRY_FILES_ENABLED="False",
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_DISPLAY_SKIPPED_HOSTS="False")
    env.pop("ANSIBLE_CONFIG", None)
    exe = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    cmd = [exe if os.path.exists(exe) else "ansible-playbook", "-i", str(inventory), "-e", "@%s" % (tmp_path / "vars.json"),
           os.path.join(TOP, "playbooks", "tls.yml")] + (["--check"] if check else [])
    p = subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=600, check=False)
    return p.stdout + p.stderr


def host_files(tmp_path):
    """{path: (bytes, mtime_ns)} of every file the role writes on the hosts."""
    out = {}
    for h in HOSTS:
        for root, _dirs, files in os.walk(tmp_path / h):
            for name in files:
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    out[path] = (f.read(), os.stat(path).st_mtime_ns)
    return out


def failed_tasks(out):
    """The names of the tasks that failed (a failure's TASK header is the last one before it)."""
    failed, task = set(), None
    for line in out.splitlines():
        if line.startswith("TASK ["):
            task = line[6:line.index("]")].split(" : ")[-1]
        elif line.startswith("fatal: ["):
            failed.add(task)
    return failed


def test_one_ca_across_fresh_controllers_and_refused_without_it(tmp_path):
    ca = make_ca("AWX credential CA")
    # a check on the fresh controller: plans, nothing written anywhere
    out = run_tls(tmp_path, "check", ca, check=True)
    assert "failed=0" in out and "check mode:" in out and "is not in" in out, out[-4000:]
    assert not host_files(tmp_path) or all(not b for b, _m in host_files(tmp_path).values()), out[-4000:]
    assert not (tmp_path / "ca-check").exists()

    # job 1: the CA from the credential, a fresh tls_ca_dir - the hosts get it (only libvirtd is missing here)
    out = run_tls(tmp_path, "job1", ca)
    assert failed_tasks(out) == {LAST_TASK}, out[-4000:]
    first = host_files(tmp_path)
    for h in HOSTS:
        assert first[str(tmp_path / h / "CA" / "cacert.pem")][0].decode() == ca[0]
        cert = x509.load_pem_x509_certificate(first[str(tmp_path / h / "libvirt" / "servercert.pem")][0])
        assert cert.issuer.rfc4514_string() == "CN=AWX credential CA"
    assert not (tmp_path / "ca-job1" / "ca-key.pem").exists()      # the CA key was never written there

    # job 2: another fresh tls_ca_dir, the same credential - nothing on the hosts is written again
    out = run_tls(tmp_path, "job2", ca)
    assert failed_tasks(out) == {LAST_TASK}, out[-4000:]
    assert host_files(tmp_path) == first, out[-4000:]

    # job 3: a fresh tls_ca_dir and no CA - refused before anything, naming the hosts and how to give it
    out = run_tls(tmp_path, "job3")
    said = " ".join(out.split())
    assert failed_tasks(out) == {"Refuse to replace the CA the hosts trust, unless told to (every host fails, "
                                 "before anything changes)"}, out[-4000:]
    for words in ("h1 trusts commonName=AWX credential CA SHA-256", "h2 trusts", "a new one",
                  "tls_ca_cert_pem and tls_ca_key_pem", "tls_replace_ca=true"):
        assert words in said, out[-4000:]
    assert host_files(tmp_path) == first
    assert not (tmp_path / "ca-job3").exists()

    # the same in check mode; and another CA given (its key not its own) is refused as well
    out = run_tls(tmp_path, "job3", check=True)
    assert "h1 trusts commonName=AWX credential CA" in " ".join(out.split()), out[-4000:]
    other, stray = make_ca("Another CA"), make_ca("Stray")
    out = run_tls(tmp_path, "job4", (other[0], stray[1]))
    assert "is not the key of the CA certificate given" in " ".join(out.split()), out[-4000:]
    out = run_tls(tmp_path, "job4", other)
    assert "with the CA given (commonName=Another CA" in " ".join(out.split()), out[-4000:]
    assert host_files(tmp_path) == first
    assert not (tmp_path / "ca-job3").exists() and not (tmp_path / "ca-job4").exists()


def said_which(out):
    """{host: the role's line saying which libvirt daemons it set up} from a run's output."""
    lines = {}
    for h in HOSTS:
        for line in " ".join(out.split()).split('"msg": "')[1:]:
            if line.startswith(h + ": "):
                lines[h] = line.split('"', 1)[0]
    return lines


def test_the_daemons_are_told_apart_monolithic_here_modular_when_virtqemud_runs(tmp_path):
    # (this machine runs no libvirt daemon of its own: no virtqemud socket, so monolithic - libvirtd's files)
    out = run_tls(tmp_path, "auto", check=True)
    said = said_which(out)
    assert set(said) == set(HOSTS), out[-4000:]
    for h in HOSTS:
        assert said[h] == ("%s: monolithic libvirt daemons (found) - %s, restarts libvirtd, sockets libvirtd-tls.socket"
                           % (h, tmp_path / h / "etc" / "libvirtd.conf")), said[h]
    # modular (as found on an EL9 host): virtproxyd's configuration, both daemons restarted, virtproxyd's TLS socket
    out = run_tls(tmp_path, "modular", check=True, tls_daemons="modular", tls_libvirtd_conf="")
    for h, line in said_which(out).items():
        assert line == ("%s: modular libvirt daemons (as given) - /etc/libvirt/virtproxyd.conf, restarts virtqemud, "
                        "virtproxyd, sockets virtproxyd-tls.socket" % h), line
    assert "failed=0" in out and not os.path.exists(str(tmp_path / "ca-modular"))
    # a daemon kind that is none of the three is refused by the role's argument spec
    out = run_tls(tmp_path, "bad", check=True, tls_daemons="systemd")
    assert "value of tls_daemons must be one of: auto, monolithic, modular" in " ".join(out.split()), out[-3000:]
