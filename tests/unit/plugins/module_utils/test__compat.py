"""The libvirt version table, and the live migration refusing what either libvirt cannot do."""
import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import features as compat
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import live as migrate
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError

libvirt = migrate.driver.libvirt


def test_versions_in_every_form():
    assert compat.version_tuple(8000000) == (8, 0, 0)
    assert compat.version_tuple(9004001) == (9, 4, 1)
    assert compat.version_tuple("10.0") == (10, 0, 0)
    assert compat.version_tuple((11, 3)) == (11, 3, 0)
    assert compat.version_text(8005000) == "8.5"
    assert compat.version_text(9004001) == "9.4.1"


@pytest.mark.parametrize("name,below,at", [
    ("postcopy_resume", 8004000, 8005000),
    ("postcopy_interrupt", 8000000, 8005000),
    ("compression_zstd", 9003000, 9004000),
    ("compression_zlib", 9000000, 9004000),
    ("parallel_connections", 5001000, 5002000),
    ("postcopy_bandwidth", 5000000, 5001000),
])
def test_require_feature_names_the_version_needed(name, below, at):
    compat.require_feature(name, at)
    compat.require_feature(name, 11003000)
    with pytest.raises(LibvirtClientError) as e:
        compat.require_feature(name, below)
    assert "needs libvirt >= %s (this host has %s)" % (compat.version_text(at), compat.version_text(below)) \
        in e.value.msg


def test_the_message_says_which_feature_and_host():
    msg = compat.feature_problem("postcopy_resume", 8000000, "the destination qemu+tcp://h2/system")
    assert msg == ("resuming a failed post-copy migration needs libvirt >= 8.5 "
                   "(the destination qemu+tcp://h2/system has 8.0)")


def test_the_table_names_what_this_binding_has():
    """Every libvirt-python name in the table exists in a current binding (a typo would refuse a feature)."""
    for name in compat.FEATURES:
        assert compat.binding_problem(name, libvirt) is None, name


def test_an_old_binding_is_refused_not_dropped():
    class OldBinding:
        VIR_MIGRATE_PARALLEL = 1 << 17
    msg = compat.binding_problem("parallel_connections", OldBinding)
    assert msg == ("parallel migration connections (parallel_connections) needs libvirt-python >= 5.2 "
                   "(the binding on this host lacks VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS)")
    with pytest.raises(LibvirtClientError):
        compat.require_binding("postcopy_resume", OldBinding)


def test_features_a_migration_asks_for():
    assert compat.migration_features({}) == []
    assert compat.migration_features({"tls": True, "parallel_connections": 4, "compression": "ZSTD",
                                      "postcopy_bandwidth_mibps": 10}) == [
        "tls", "postcopy_bandwidth", "parallel_connections", "compression_zstd"]
    # methods every supported libvirt knows are left to libvirt (it refuses unknown ones itself)
    assert compat.migration_features({"compression": "xbzrle"}) == []


def test_features_newer_than_the_supported_minimum_are_the_gated_ones():
    newer = sorted(n for n, f in compat.FEATURES.items() if f[0] > compat.MIN_LIBVIRT)
    assert newer == ["compression_zlib", "compression_zstd", "postcopy_interrupt", "postcopy_resume",
                     "switchover_bandwidth"]


# -- the live migration uses the table ---------------------------------------------------------------

class FakeDom:
    def __init__(self, state=(1, 1)):
        self._state, self.calls = state, []

    def isActive(self):  # noqa: N802 (libvirt's names)
        return True

    def state(self):
        return list(self._state)

    def UUIDString(self):  # noqa: N802
        return "0b1c"

    def abortJobFlags(self, flags):  # noqa: N802
        self.calls.append(("abortJobFlags", flags))

    def migrateToURI3(self, uri, params, flags):  # noqa: N802
        self.calls.append(("migrateToURI3", flags))


class FakeConn:
    def __init__(self, version, qemu=10000002):
        self.version, self.qemu = version, qemu

    def getLibVersion(self):  # noqa: N802
        return self.version

    def getVersion(self):  # noqa: N802
        return self.qemu

    def getHostname(self):  # noqa: N802
        return "h"


class FakeClient:
    def __init__(self, uri, version, dom=None):
        self.uri, self.conn, self.dom = uri, FakeConn(version), dom

    def lookup(self, name):
        return self.dom

    def host_uuid(self):
        return "u"


def live(src_version, dst_version, dom, **opts):
    p = {k: v.get("default") for k, v in migrate.migration_argspec().items()}
    p.update(domain="g", dest_uri="qemu+tcp://h2/system")
    p.update(opts)
    src = FakeClient("qemu:///system", src_version, dom)
    dst = FakeClient("qemu+tcp://h2/system", dst_version)
    return migrate.LiveMigration(src, dst, "g", p, clock=lambda: 100.0, sleep=lambda s: None,
                                 hosts_security=opts.pop("hosts_security", {"source": READY, "dest": READY}))


READY = {"migration_tls": {"ready": True, "missing": [], "cert_dir": "/etc/pki/qemu"}}
BARE = {"migration_tls": {"ready": False, "missing": ["server-cert.pem"], "cert_dir": "/etc/pki/qemu"}}


@pytest.mark.parametrize("check_mode", [True, False])
def test_plaintext_is_refused_by_default_before_anything(check_mode):
    dom = FakeDom()
    m = live(11003000, 11003000, dom, hosts_security={"source": READY, "dest": BARE})
    with pytest.raises(migrate.MigrationError) as e:
        m.run(check_mode=check_mode)
    assert "in the clear" in e.value.msg and "the destination qemu+tcp://h2/system is not set up" in e.value.msg
    assert "server-cert.pem" in e.value.msg and "allow_plaintext" in e.value.msg
    assert dom.calls == [] and e.value.result["transport"]["transport"] == "plaintext"


def test_tls_between_ready_hosts_and_plaintext_only_when_allowed():
    m = live(11003000, 11003000, FakeDom())
    assert m.decide_transport()["tls"]
    m = live(11003000, 11003000, FakeDom(), allow_plaintext=True, hosts_security={"source": BARE, "dest": READY})
    t = m.decide_transport()
    assert not t["tls"] and not t["refused"]
    flags, _p = m.flags_and_params({"flags": {"postcopy": False, "auto_converge": False}},
                                   {"copied": [], "unsafe_override_for": []})
    assert "tls" not in flags and not migrate.driver.migrate_flags(flags) & migrate.driver.libvirt.VIR_MIGRATE_TLS


@pytest.mark.parametrize("check_mode", [True, False])
def test_zstd_to_an_older_destination_is_refused_before_anything(check_mode):
    dom = FakeDom()
    m = live(11003000, 9000000, dom, compression="zstd", parallel_connections=2)
    with pytest.raises(migrate.MigrationError) as e:
        m.run(check_mode=check_mode)
    assert e.value.msg == ("cannot migrate g: compression=zstd (compressed parallel migration) needs libvirt >= 9.4 "
                           "(the destination qemu+tcp://h2/system has 9.0)")
    assert dom.calls == []


def test_resuming_a_failed_postcopy_on_libvirt_8_0_is_refused_even_in_check_mode():
    dom = FakeDom(state=(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED))
    m = live(8000000, 11003000, dom)
    with pytest.raises(migrate.MigrationError) as e:
        m.run(check_mode=True)
    assert "resuming a failed post-copy migration needs libvirt >= 8.5 (the source qemu:///system has 8.0)" \
        in e.value.msg


def test_postcopy_recovery_is_not_attempted_where_libvirt_cannot():
    dom = FakeDom()
    m = live(11003000, 8004000, dom)
    m.t0 = 90.0
    ok, how = m.postcopy.recover(dom)
    assert not ok and dom.calls == []
    assert how.startswith("resuming a failed post-copy migration needs libvirt >= 8.5 "
                          "(the destination qemu+tcp://h2/system has 8.4)")
    assert "do not destroy either side" in how


@pytest.mark.parametrize("dst_version,interrupted", [(8000000, False), (8005000, True)])
def test_postcopy_interrupt_only_where_libvirt_can(dst_version, interrupted):
    dom = FakeDom()
    m = live(11003000, dst_version, dom)
    m.t0 = 90.0
    state = {"postcopy": True}
    m.monitor.apply(dom, "postcopy_pause", None, "link dead", state)
    assert state["postcopy_interrupted"]
    if interrupted:
        assert dom.calls == [("abortJobFlags", libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY)]
        assert m.decisions[-1]["reason"] == "link dead"
    else:
        assert dom.calls == []
        assert "needs libvirt >= 8.5 (the destination qemu+tcp://h2/system has 8.0): waiting for it" \
            in m.decisions[-1]["reason"]


def test_versions_are_read_once():
    """Later checks run while the link may be dead: no second call to a peer that may not answer."""
    m = live(11003000, 11003000, FakeDom())
    assert m.feature_problems(["postcopy_resume"]) == []
    m.dst.conn = None
    assert m.feature_problems(["postcopy_interrupt"]) == []


# -- the switch-over bandwidth (libvirt 11.1, QEMU 8.2) ------------------------------------------------

NO_FLAGS = {"copied": [], "unsafe_override_for": []}


def _params(m, plan):
    return m.flags_and_params(dict({"flags": {"postcopy": False, "auto_converge": False}}, **plan), NO_FLAGS)[1]


def test_an_explicit_switchover_bandwidth_reaches_libvirt_in_mib_per_second():
    m = live(11003000, 11003000, FakeDom(), bandwidth_mibps=32, switchover_bandwidth_mibps=400)
    assert m.feature_problems(compat.migration_features(m.o)) == []
    assert m.switchover_bandwidth() == (400, "switchover_bandwidth_mibps")
    typed = migrate.driver.migrate_params(_params(m, {"switchover_bandwidth_mibps": 400}))
    assert typed["bandwidth.avail.switchover"] == 400 and typed[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] == 32
    assert "bandwidth_avail_switchover" not in _params(m, {"switchover_bandwidth_mibps": None})


@pytest.mark.parametrize("check_mode", [True, False])
@pytest.mark.parametrize("src,dst,qemu,why", [
    (11000000, 11003000, 10000002, "needs libvirt >= 11.1 (the source qemu:///system has 11.0)"),
    (11003000, 10010000, 10000002, "needs libvirt >= 11.1 (the destination qemu+tcp://h2/system has 10.10)"),
    (11003000, 11003000, 8001000, "needs QEMU >= 8.2 (the source qemu:///system has 8.1)")])
def test_an_explicit_switchover_bandwidth_is_refused_before_anything_where_it_cannot_work(
        check_mode, src, dst, qemu, why):
    dom = FakeDom()
    m = live(src, dst, dom, switchover_bandwidth_mibps=400)
    m.src.conn.qemu = qemu
    with pytest.raises(migrate.MigrationError) as e:
        m.run(check_mode=check_mode)
    assert e.value.msg == "cannot migrate g: a switch-over bandwidth (switchover_bandwidth_mibps) " + why
    assert dom.calls == []


def test_the_link_speed_above_a_cap_is_what_the_switchover_counts_on_where_the_hosts_can_be_told():
    m = live(11003000, 11003000, FakeDom(), bandwidth_mibps=32, expected_bandwidth_mibps=1000)
    value, why = m.switchover_bandwidth()
    assert value == 1000 and "not on the 32 MiB/s cap" in why
    # no cap, or a cap at the link speed: QEMU's own measure is right
    assert live(11003000, 11003000, FakeDom(), expected_bandwidth_mibps=1000).switchover_bandwidth()[0] is None
    assert live(11003000, 11003000, FakeDom(), bandwidth_mibps=100,
                expected_bandwidth_mibps=100).switchover_bandwidth()[0] is None
    # an older host: not used, and the plan says why (the option itself was not asked for: nothing refused)
    value, why = live(11003000, 11000000, FakeDom(), bandwidth_mibps=32,
                      expected_bandwidth_mibps=1000).switchover_bandwidth()
    assert value is None and "needs libvirt >= 11.1 (the destination qemu+tcp://h2/system has 11.0)" in why
