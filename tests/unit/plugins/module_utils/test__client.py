"""Unit tests of the libvirt client wrapper, against libvirt's own test:///default driver."""
import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils import _client as C


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
    assert err.value.code == C.libvirt.VIR_ERR_NO_DOMAIN
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
    assert C.is_transient(C.libvirt.VIR_ERR_SYSTEM_ERROR)
    assert C.is_transient(C.libvirt.VIR_ERR_OPERATION_TIMEOUT)
    assert not C.is_transient(C.libvirt.VIR_ERR_OPERATION_INVALID)
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
