"""Facts gathering against libvirt's test:///default driver (a real libvirt, a fake hypervisor)."""
import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import connection as C
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import facts as F


def test_gather_host_and_all_domains():
    facts = F.gather(C.LibvirtClient("test:///default"))
    host = facts["host"]
    assert host["driver"] == "TEST"
    assert host["memory_total"] > 0 and 0 < host["memory_free"] <= host["memory_total"]
    assert host["cpus"] > 0
    assert host["libvirt_version"].count(".") == 2
    assert [d["name"] for d in facts["domains"]] == ["test"]
    dom = facts["domains"][0]
    assert dom["state"] == "running" and dom["active"] and dom["persistent"]
    assert dom["memory_kib"] > 0 and dom["vcpus"] >= 1
    assert [p["name"] for p in host["storage_pools"]] == ["default-pool"]
    assert [n["name"] for n in host["networks"]] == ["default"]


def test_gather_named_domains_and_unknown_domain():
    client = C.LibvirtClient("test:///default")
    assert [d["name"] for d in F.gather(client, domains=["test"])["domains"]] == ["test"]
    with pytest.raises(C.LibvirtClientError, match="no domain named nope, gone on test:///default"):
        F.gather(client, domains=["test", "nope", "gone"])


def test_gather_host_only():
    assert F.gather(C.LibvirtClient("test:///default"), include_domains=False)["domains"] == []


def test_is_local():
    assert F._is_local("qemu:///system")  # pylint: disable=protected-access
    assert not F._is_local("qemu+tcp://hv1/system")  # pylint: disable=protected-access
