"""The shared-storage probe against libvirt's test driver.

Two connections to test:///default share one in-memory driver (one storage: "shared"); two
connections to a test:///FILE URI each get their own driver (same paths, separate storage: the
trap). The probe must tell them apart and leave no marker and no transient pool behind.
"""
import socket

import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import connection as C
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import storage_proof as S

NODE = ("<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>1</cores><threads>1</threads>"
        "<active>1</active><mhz>1000</mhz></cpu><memory>1048576</memory></node>")


@pytest.fixture(name="separate")
def separate_fixture(tmp_path):
    node = tmp_path / "node.xml"
    node.write_text(NODE)
    uri = "test://%s" % node
    return C.LibvirtClient(uri), C.LibvirtClient(uri)


def leftovers(client):
    pools = [p.name() for p in client.conn.listAllStoragePools(0)]
    vols = [v for p in client.conn.listAllStoragePools(0) if p.isActive() for v in p.listVolumes()]
    return [p for p in pools if p.startswith(S.MARKER_PREFIX)] + [v for v in vols if v.startswith(S.MARKER_PREFIX)]


def test_same_storage_is_shared():
    a, b = C.LibvirtClient("test:///default"), C.LibvirtClient("test:///default")
    state, reason = S.probe_directory(a, b, "/srv/images")
    assert state == "shared" and "seen on the destination" in reason
    assert leftovers(a) == [] and leftovers(b) == []


def test_same_path_separate_storage_is_not_shared(separate):
    a, b = separate
    state, reason = S.probe_directory(a, b, "/srv/images")
    assert state == "not_shared" and "same path, different storage" in reason
    assert leftovers(a) == [] and leftovers(b) == []


def test_existing_pool_is_used_and_kept():
    a, b = C.LibvirtClient("test:///default"), C.LibvirtClient("test:///default")
    pool = a.conn.storagePoolLookupByName("default-pool")
    path = S._pool_path(pool)  # pylint: disable=protected-access
    before = sorted(pool.listVolumes())
    assert S.probe_directory(a, b, path)[0] == "shared"
    assert pool.isActive() and sorted(pool.listVolumes()) == before


def test_marker_removed_when_destination_fails(separate):
    a, _b = separate

    class Broken:
        uri = "broken"

        class conn:  # pylint: disable=invalid-name,too-few-public-methods
            @staticmethod
            def listAllStoragePools(flags):  # pylint: disable=invalid-name,unused-argument
                raise RuntimeError("destination went away")

    with pytest.raises(RuntimeError):
        S.probe_directory(a, Broken(), "/srv/images")
    assert leftovers(a) == []


def test_network_disk_reachable_and_not():
    disk = {"type": "network", "protocol": "nbd", "hosts": [{"name": "198.18.0.4", "port": 10810}]}
    calls = []

    class Sock:  # pylint: disable=too-few-public-methods
        def close(self):
            pass

    def ok(addr, timeout):
        calls.append((addr, timeout))
        return Sock()

    def refused(addr, timeout):
        raise ConnectionRefusedError(111, "Connection refused")

    state, reason = S.probe_network(disk, connect=ok)
    assert state == "shared" and "198.18.0.4:10810" in reason and calls[0][0] == ("198.18.0.4", 10810)
    state, reason = S.probe_network(disk, connect=refused)
    assert state == "not_shared" and "does not answer" in reason
    # default port by protocol
    S.probe_network({"protocol": "iscsi", "hosts": [{"name": "198.18.0.9"}]}, connect=ok)
    assert calls[-1][0] == ("198.18.0.9", 3260)
    assert S.probe_network({"protocol": "nbd", "hosts": []})[0] == "unknown"


def test_probe_disks_kinds(separate):
    a, b = separate

    def refused(addr, timeout):
        raise socket.timeout("timed out")

    disks = [{"target": "vda", "type": "file", "source": "/srv/a/vda.qcow2"},
             {"target": "vdb", "type": "file", "source": "/srv/a/vdb.qcow2"},
             {"target": "vdc", "type": "block", "source": "/dev/sdb"},
             {"target": "vdd", "type": "network", "protocol": "nbd", "source": "x",
              "hosts": [{"name": "198.18.0.4", "port": 1}]},
             {"target": "vde", "type": "volume", "pool": "nope", "volume": "v"}]
    out = S.probe_disks(a, b, disks, connect=refused)
    assert {t: f["verdict"] for t, f in out.items()} == {
        "vda": "not_shared", "vdb": "not_shared", "vdc": "unknown", "vdd": "not_shared", "vde": "unknown"}
    assert out["vda"]["method"] == "marker" and out["vdc"]["method"] == "none"
    assert "cannot prove it is the same LUN" in out["vdc"]["reason"]
    assert leftovers(a) == [] and leftovers(b) == []
