"""Every pre-migration check as a pure function: facts in, verdict out."""
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import checks as C


def status(v):
    return v["status"]


def test_reachable():
    assert status(C.check_reachable(None)) == C.PASS
    v = C.check_reachable("cannot connect to libvirt at qemu+tcp://x/system: Connection refused")
    assert status(v) == C.FAIL and "Connection refused" in v["reason"] and v["blocks"] == C.ALL


def test_not_same_host():
    assert status(C.check_not_same_host("a", "b")) == C.PASS
    v = C.check_not_same_host("a", "a")
    assert status(v) == C.FAIL and "same host UUID a" in v["reason"]


def test_domain_type_kvm_needs_kvm_qemu_alike():
    assert status(C.check_domain_type("kvm", ["kvm", "qemu"])) == C.PASS
    assert status(C.check_domain_type("qemu", ["kvm", "qemu"])) == C.PASS
    v = C.check_domain_type("kvm", ["qemu"])
    assert status(v) == C.FAIL and "kvm domain cannot run" in v["reason"] and "qemu" in v["reason"]
    assert status(C.check_domain_type("kvm", [])) == C.FAIL


def test_cpu():
    cpu = {"mode": "custom", "model": "Skylake-Client"}
    assert status(C.check_cpu(cpu, None, True)) == C.PASS
    v = C.check_cpu(cpu, "Host CPU does not provide required features: avx512f", True)
    assert status(v) == C.FAIL and "avx512f" in v["reason"] and v["blocks"] == C.ALL
    assert status(C.check_cpu({"mode": None}, None, False)) == C.PASS
    v = C.check_cpu({"mode": "host-passthrough"}, None, False)
    assert status(v) == C.WARN and v["blocks"] == C.LIVE


def test_machine_type():
    types = {"x86_64": ["pc", "pc-i440fx-7.2", "q35"]}
    assert status(C.check_machine_type("x86_64", "pc-i440fx-7.2", types)) == C.PASS
    v = C.check_machine_type("x86_64", "pc-q35-9.0", types)
    assert status(v) == C.FAIL and "pc-q35-9.0" in v["reason"]
    assert status(C.check_machine_type("aarch64", "virt", types)) == C.FAIL
    assert status(C.check_machine_type("x86_64", None, types)) == C.PASS


def test_versions_destination_not_older():
    src = {"libvirt_version": "9.0.0", "hypervisor_version": "7.2.0"}
    assert status(C.check_versions(src, {"libvirt_version": "9.0.0", "hypervisor_version": "7.2.0"})) == C.PASS
    assert status(C.check_versions(src, {"libvirt_version": "10.1.0", "hypervisor_version": "8.0.0"})) == C.PASS
    v = C.check_versions(src, {"libvirt_version": "8.10.0", "hypervisor_version": "7.2.0"})
    assert status(v) == C.FAIL and "libvirt 8.10.0" in v["reason"] and v["blocks"] == C.LIVE
    v = C.check_versions(src, {"libvirt_version": "9.0.0", "hypervisor_version": "7.1.9"})
    assert status(v) == C.FAIL and "hypervisor 7.1.9" in v["reason"]


def test_memory_counts_reserve_and_planned():
    gib = 1024 * 1024 * 1024
    assert status(C.check_memory(1024 * 1024, 8 * gib, 1024, 0)) == C.PASS          # 1 GiB of 8, 1 reserved
    v = C.check_memory(4 * 1024 * 1024, 8 * gib, 1024, 4096)                        # 4 + 1 + 4 > 8
    assert status(v) == C.FAIL and "4096 MiB already planned" in v["reason"]
    assert status(C.check_memory(4 * 1024 * 1024, 8 * gib, 1024, 3072)) == C.WARN  # exactly fits
    assert status(C.check_memory(1024, 0, 0, 0)) == C.FAIL


def test_collision():
    dst = [("web01", "u1", True), ("db01", "u2", False)]
    assert status(C.check_collision("app01", "u3", dst)) == C.PASS
    assert "another domain named web01" in C.check_collision("web01", "u9", dst)["reason"]
    assert "same UUID u2" in C.check_collision("other", "u2", dst)["reason"]
    assert "already has this domain" in C.check_collision("web01", "u1", dst)["reason"]


def test_networks():
    nets = [{"name": "default", "active": True}, {"name": "isolated", "active": False}]
    ifs = [{"type": "bridge", "bridge": "br0", "mac": "m1"}, {"type": "network", "network": "default", "mac": "m2"}]
    assert status(C.check_networks(ifs, ["br0"], nets)) == C.PASS
    v = C.check_networks([{"type": "bridge", "bridge": "br1", "mac": "m3"}], ["br0"], nets)
    assert status(v) == C.FAIL and "bridge br1 (interface m3)" in v["reason"]
    v = C.check_networks([{"type": "network", "network": "isolated", "mac": "m4"}], [], nets)
    assert status(v) == C.FAIL and "not active" in v["reason"]
    v = C.check_networks([{"type": "network", "network": "nope", "mac": "m5"}], [], nets)
    assert status(v) == C.FAIL and "network nope" in v["reason"]
    assert status(C.check_networks([{"type": "direct", "mac": "m6"}], [], [])) == C.WARN


def test_blockers():
    assert status(C.check_blockers([])) == C.PASS
    v = C.check_blockers([{"device": "hostdev", "reason": "host device passthrough (pci)"}])
    assert status(v) == C.FAIL and v["blocks"] == C.LIVE and "passthrough" in v["reason"]


DISKS = [{"target": "vda", "type": "file", "source": "/s/a.qcow2", "cache": "none"},
         {"target": "vdb", "type": "network", "source": "exp", "cache": "writeback"},
         {"target": "sda", "type": "file", "source": None, "device": "cdrom", "readonly": True}]


def test_storage():
    shared = {"vda": {"verdict": "shared"}, "vdb": {"verdict": "shared"}}
    assert status(C.check_storage(DISKS, shared, True)) == C.PASS
    half = {"vda": {"verdict": "not_shared", "reason": "marker not seen"}, "vdb": {"verdict": "shared"}}
    v = C.check_storage(DISKS, half, True)
    assert status(v) == C.WARN and "vda (not_shared: marker not seen)" in v["reason"]
    v = C.check_storage(DISKS, half, False)
    assert status(v) == C.FAIL and v["blocks"] == C.LIVE
    assert status(C.check_storage(DISKS, {}, True)) == C.WARN  # nothing proven


def test_cache_modes():
    shared = {"vda": {"verdict": "shared"}, "vdb": {"verdict": "shared"}}
    v = C.check_cache_modes(DISKS, shared)
    assert status(v) == C.WARN and "vdb cache=writeback" in v["reason"]  # network disk: warn
    unsafe = [dict(DISKS[0], cache="writeback")]
    v = C.check_cache_modes(unsafe, shared)
    assert status(v) == C.FAIL and v["blocks"] == C.LIVE
    v = C.check_cache_modes([dict(DISKS[0], cache=None)], shared)
    assert status(v) == C.FAIL and "default (writeback)" in v["reason"]
    # a disk that will be copied does not care about its cache mode
    assert status(C.check_cache_modes(unsafe, {"vda": {"verdict": "not_shared"}})) == C.PASS


def test_recommend():
    ok = [C.verdict("x", C.PASS, "")]
    live_only = ok + [C.verdict("no_blocking_devices", C.FAIL, "", C.LIVE)]
    hard = ok + [C.verdict("memory", C.FAIL, "", C.ALL)]
    assert C.recommend(ok, True, False) == "live"
    assert C.recommend(ok, True, True) == "live_copy_storage"
    assert C.recommend(live_only, True, False) == "cold"
    assert C.recommend(hard, True, False) == "none"
    assert C.recommend(ok, False, False) == "offline"
    assert C.recommend(ok, False, True) == "cold"
    assert C.recommend(live_only, False, False) == "offline"
    assert C.recommend(hard, False, False) == "none"


def test_overall():
    assert C.overall([]) == C.PASS
    assert C.overall([{"status": C.PASS}, {"status": C.WARN}]) == C.WARN
    assert C.overall([{"status": C.WARN}, {"status": C.FAIL}]) == C.FAIL
