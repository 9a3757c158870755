"""Unit tests of the libvirt client wrapper, against libvirt's own test:///default driver."""
import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import connection as C


def test_malformed_uri_is_refused_before_connecting():
    for bad in ("", "qemu", "not a uri"):
        with pytest.raises(C.LibvirtClientError, match="malformed libvirt URI"):
            C.LibvirtClient(bad)


def test_negative_retry_knobs_are_refused():
    with pytest.raises(C.LibvirtClientError, match="must not be negative"):
        C.LibvirtClient("test:///default", retries=-1)


def test_connection_is_opened_once_and_reused():
    client = C.LibvirtClient("test:///default")
    first = client.conn
    assert client.conn is first
    assert client.conn.getHostname()
    client.close()
    assert client._conn is None  # pylint: disable=protected-access


def test_lookup_missing_domain_is_none_and_existing_is_found():
    client = C.LibvirtClient("test:///default")
    assert client.lookup("no-such-domain") is None
    assert client.lookup("test").name() == "test"


def test_libvirt_errors_become_one_readable_error():
    client = C.LibvirtClient("test:///default")
    with pytest.raises(C.LibvirtClientError) as err:
        client.call("cannot look up nothing", client.conn.lookupByName, "nothing-here")
    assert err.value.msg.startswith("cannot look up nothing: ")
    assert err.value.code == C.driver.libvirt.VIR_ERR_NO_DOMAIN
    assert err.value.transient is False


def test_unreachable_host_fails_clearly_after_retries():
    sleeps = []
    client = C.LibvirtClient("qemu+unix:///system?socket=/nonexistent/sock", retries=2, retry_delay=0.01,
                             sleep=sleeps.append)
    with pytest.raises(C.LibvirtClientError, match="cannot connect to libvirt at qemu\\+unix"):
        client.host_uuid()
    # a refused connection is a system error: transient, so it was retried twice
    assert len(sleeps) == 2


def test_transient_codes():
    assert C.is_transient(C.driver.libvirt.VIR_ERR_SYSTEM_ERROR)
    assert C.is_transient(C.driver.libvirt.VIR_ERR_OPERATION_TIMEOUT)
    assert not C.is_transient(C.driver.libvirt.VIR_ERR_OPERATION_INVALID)
    assert not C.is_transient(None)


def test_backoff_grows_with_bounded_jitter():
    delays = C.backoff_delays(4, 0.5, jitter=0.25, rand=lambda: 1.0)
    assert delays == [0.625, 1.25, 2.5, 5.0]
    low = C.backoff_delays(3, 0.5, jitter=0.25, rand=lambda: 0.0)
    assert low == [0.5, 1.0, 2.0]
    assert C.backoff_delays(0, 1) == []


def test_client_cache_one_client_per_uri():
    cache = C.ClientCache()
    a = cache.get("test:///default")
    assert cache.get("test:///default") is a
    cache.close()
    assert cache.get("test:///default") is not a


def test_every_object_the_driver_hands_out_raises_only_its_error():
    """The driver boundary: the connection, and the domains, pools and volumes its calls return, raise
    LibvirtClientError (saying which call on what failed), never the binding's libvirtError."""
    client = C.LibvirtClient("test:///default")
    dom = client.conn.lookupByName("test")
    assert isinstance(dom, C.Driven) and isinstance(dom.raw, C.driver.libvirt.virDomain)
    assert all(isinstance(d, C.Driven) for d in client.conn.listAllDomains(0))
    with pytest.raises(C.LibvirtClientError) as err:
        dom.undefineFlags(1 << 30)          # flags libvirt refuses
    assert not isinstance(err.value, C.driver.libvirt.libvirtError)
    assert err.value.msg.startswith("undefineFlags failed (domain test on test:///default): ")
    assert err.value.code is not None and err.value.detail in err.value.msg
    with pytest.raises(C.LibvirtClientError) as err:
        client.conn.lookupByName("nothing-here")
    assert err.value.code == C.driver.error_code("no_domain")
    assert err.value.msg.startswith("lookupByName failed (libvirt at test:///default): ")
    pool = client.conn.listAllStoragePools(0)[0]
    assert isinstance(pool, C.Driven)
    with pytest.raises(C.LibvirtClientError, match="storageVolLookupByName failed \\(storagepool "):
        pool.storageVolLookupByName("no-such-volume")
    # objects passed back into the binding are unwrapped
    assert client.conn.lookupByUUIDString(dom.UUIDString()).name() == "test"
    stats = client.conn.domainListGetStats([dom], 0, 0)
    assert stats[0][0].name() == "test"
    assert client.lookup_uuid("00000000-0000-0000-0000-00000000beef") is None
    # an OS error of the binding is the same error too
    broken = C.Driven(_Raises(OSError(5, "Input/output error")), "test:///default")
    with pytest.raises(C.LibvirtClientError, match="read failed .*Input/output error"):
        broken.read()


class _Raises:
    def __init__(self, exc):
        self.exc = exc

    def read(self):
        raise self.exc


def test_client_call_keeps_what_was_being_done():
    client = C.LibvirtClient("test:///default")
    with pytest.raises(C.LibvirtClientError) as err:
        client.call("cannot read the XML of ghost", client.conn.lookupByName, "ghost")
    assert err.value.msg.startswith("cannot read the XML of ghost: ") and "lookupByName" not in err.value.msg


def test_read_back_opens_no_connection_to_a_host_whose_port_is_silent(monkeypatch):
    """A host cut off at the switch drops packets: libvirt's own connect would wait for TCP's retries (about
    two minutes). read_back asks the libvirtd port first (3 s) and keeps within its bound."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import FakeClock
    probed, looked = [], []

    class Client:
        _uri, _conn = 'qemu+tls://hv2.example/system', None

        def lookup_uuid(self, uuid):
            looked.append(uuid)
            return None
    monkeypatch.setattr(C, 'reachable', lambda address, timeout=3.0: probed.append(address) or False)
    clock, errors = FakeClock(), []
    assert C.read_back(Client(), 'u-1', errors, clock, clock.sleep, seconds=10) == (None, 'unknown')
    assert probed and set(probed) == {('hv2.example', 16514)} and not looked and clock.now <= 10
    assert 'does not answer on port 16514' in errors[-1]
    # the port answers: the host is asked, and its answer counts ('gone': no such domain there)
    monkeypatch.setattr(C, 'reachable', lambda address, timeout=3.0: True)
    assert C.read_back(Client(), 'u-1', [], clock, clock.sleep, seconds=10) == (None, 'gone') and looked == ['u-1']
    # a local URI has no port to ask
    assert C.libvirtd_address('qemu:///system') is None
    assert C.libvirtd_address('qemu+tcp://hv3:1234/system') == ('hv3', 1234)
