"""The typed driver: our words become the binding's flags and parameters, its errors our one error type,
and no other code of the collection knows the binding."""
import os
import re

import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as D

libvirt = pytest.importorskip("libvirt")

PLUGINS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "plugins"))
# the issue's own criterion: no engine or module uses a VIR_* constant or one of these binding methods
BINDING = re.compile(r"VIR_[A-Z_]+|\.(migrate|migrate3|migrateToURI3|jobStats|jobInfo|XMLDesc|lookupByName|"
                     r"lookupByUUIDString|storageVol|newStream|abortJob|migrateSetMaxDowntime|migrateStartPostCopy)\(")


def test_only_the_driver_knows_the_binding():
    found = []
    for top, _dirs, files in os.walk(PLUGINS):
        for name in files:
            path = os.path.join(top, name)
            if not name.endswith(".py") or path.endswith(os.path.join("module_utils", "driver", "typed.py")):
                continue
            with open(path) as f:
                for n, line in enumerate(f, 1):
                    if BINDING.search(line) and "driver" not in line:
                        found.append("%s:%d: %s" % (os.path.relpath(path, PLUGINS), n, line.strip()))
            with open(path) as f:
                text = f.read()
            if re.search(r"^\s*import libvirt\b", text, re.M):
                found.append("%s imports the binding" % os.path.relpath(path, PLUGINS))
    assert not found, "\n".join(found)


def test_every_word_is_a_flag_or_parameter_of_the_binding():
    for word, name in D.MIGRATE_FLAGS.items():
        if hasattr(libvirt, name):
            assert D.migrate_flags({word}) == getattr(libvirt, name), word
    for word, name in D.MIGRATE_PARAMS.items():
        if hasattr(libvirt, name):
            assert D.migrate_params({word: 1}) == {getattr(libvirt, name): 1}, word
    bits = D.migrate_flags({"live", "peer2peer", "tls", "non_shared_disk"})
    assert bits == (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_TLS
                    | libvirt.VIR_MIGRATE_NON_SHARED_DISK)
    with pytest.raises(KeyError):
        D.migrate_flags({"fast"})       # a word the driver does not know is our defect, not libvirt's


def test_a_flag_this_binding_lacks_is_refused_not_dropped(monkeypatch):
    monkeypatch.delattr(libvirt, "VIR_MIGRATE_TLS")
    with pytest.raises(D.LibvirtClientError) as err:
        D.migrate_flags({"live", "tls"})
    assert "lacks VIR_MIGRATE_TLS" in err.value.msg


class _Dom:
    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((name,) + args)
            if self.fail:
                raise self.fail
            return {"type": 3} if name == "jobStats" else "<domain/>"
        return call


def test_migrate_peer_to_peer_or_through_the_destination_connection():
    dom = _Dom()
    D.migrate(dom, {"live", "peer2peer"}, {"bandwidth": 8}, dest_uri="qemu+tls://h2/system", dest_conn="conn")
    assert dom.calls == [("migrateToURI3", "qemu+tls://h2/system", {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 8},
                          libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER)]
    dom = _Dom()
    D.migrate(dom, {"live"}, {}, dest_uri="qemu+tls://h2/system", dest_conn="conn")
    assert dom.calls == [("migrate3", "conn", {}, libvirt.VIR_MIGRATE_LIVE)]


def test_definitions_jobs_and_undefine_in_our_words():
    dom = _Dom()
    D.definition(dom, inactive=True, secure=True)
    D.definition(dom, migratable=True)
    D.definition(dom)
    assert [c[1] for c in dom.calls] == [libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE,
                                         libvirt.VIR_DOMAIN_XML_MIGRATABLE, 0]
    dom = _Dom()
    assert D.job_kind(D.job_stats(dom, completed=True)) == "completed"
    assert dom.calls == [("jobStats", libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)]
    assert D.job_running({"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED})
    assert not D.job_running({"type": libvirt.VIR_DOMAIN_JOB_NONE}) and not D.job_running({})
    dom = _Dom()
    D.undefine(dom, nvram="remove")
    D.undefine(dom)
    D.abort_job(dom, postcopy=True)
    assert dom.calls == [("undefineFlags", libvirt.VIR_DOMAIN_UNDEFINE_NVRAM),
                         ("undefineFlags", libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM),
                         ("abortJobFlags", libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY)]
    assert D.state_name(libvirt.VIR_DOMAIN_RUNNING) == "running"
    assert D.postcopy_failed(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED)
    assert not D.postcopy_failed(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER)


def _error(code):
    return D.LibvirtClientError("lookup failed", code=code)


def test_no_such_domain_is_none_and_no_answer_is_raised():
    """'The host has no such domain' and 'the host did not answer' are different facts: a read-back that took
    the second for the first would think a guest that may run there is gone."""
    class Conn:
        def __init__(self, code):
            self.code = code

        def lookupByUUIDString(self, uuid):
            raise _error(self.code)
    assert D.lookup_uuid(Conn(libvirt.VIR_ERR_NO_DOMAIN), "u") is None
    with pytest.raises(D.LibvirtClientError) as err:
        D.lookup_uuid(Conn(libvirt.VIR_ERR_SYSTEM_ERROR), "u")
    assert err.value.code == libvirt.VIR_ERR_SYSTEM_ERROR

    class Pool:
        def storageVolLookupByName(self, name):
            raise _error(libvirt.VIR_ERR_NO_STORAGE_VOL if name == "none" else libvirt.VIR_ERR_RPC)
    assert D.volume(Pool(), "none") is None
    with pytest.raises(D.LibvirtClientError):
        D.volume(Pool(), "lost")
    assert D.is_error(_error(libvirt.VIR_ERR_NO_SUPPORT), "no_support")
    assert not D.is_error(_error(None), "no_support")


def test_feature_words_name_the_binding_symbols():
    assert D.binding_names(("flag:parallel", "param:parallel_connections", "call:abort_postcopy")) == [
        "VIR_MIGRATE_PARALLEL", "VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS", "VIR_DOMAIN_ABORT_JOB_POSTCOPY"]


def test_a_closed_connection_is_transient_whatever_its_error_code():
    """libvirt reports a connection keepalive closed, and every later call on it, as an internal error ('client
    socket is closed'): a new connection may work, so it is transient - the read-back reopens (seen in the lab: a
    read-back that kept the dead connection ended 'unknown' while the host answered)."""
    for text in ("internal error: client socket is closed", "internal error: connection closed due to keepalive timeout"):
        err = libvirt.libvirtError(text)
        err.err = (libvirt.VIR_ERR_INTERNAL_ERROR, 0, text, 0, None, None, None, 0, 0)
        assert D.wrap_error(err, "lookup").transient, text
    err = libvirt.libvirtError("internal error: unexpected QEMU reply")
    err.err = (libvirt.VIR_ERR_INTERNAL_ERROR, 0, "internal error: unexpected QEMU reply", 0, None, None, None, 0, 0)
    assert not D.wrap_error(err, "migrate").transient
