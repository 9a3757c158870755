"""Cold migration in the lab: a running guest with a local disk (its disk counter continues after
the move, no write lost), an offline move of a stopped guest on shared storage, and a disk copy that
fails half-way (the destination fills up): rolled back, guest running on the source, rerun succeeds."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmmlab as L  # noqa: E402  pylint: disable=wrong-import-position
from test_integration import run_target  # noqa: E402  pylint: disable=wrong-import-position
from test_migrate import migrate_with_probe, where  # noqa: E402  pylint: disable=wrong-import-position


def result_of(name):
    with open(L.state_path("result-%s.json" % name)) as f:
        return json.load(f)


def test_running_guest_with_local_disk(lab, figures):
    g = L.define_guest("cold_local", "h1", disk="local", disk_ms=50)
    L.wait_guest(g["ip"])
    time.sleep(1)
    before = L.guest_status(g["ip"])
    t0 = time.monotonic()
    run_target("cold_migrate", target_hosts="h1", cold_domain="cold_local", cold_dest="h2",
               cold_expect_copy=["vda"], cold_expect_shutdown=True)
    after = L.wait_guest(g["ip"], timeout=60)
    figures["cold_local_disk"] = {"to_first_answer_s": round(time.monotonic() - t0, 1),
                                  "module_s": result_of("cold_local")["total_time_s"]}
    assert where(lab, "cold_local") == {"h2": "running"}
    # a new boot that found every record the old one wrote, and counts on from there
    assert after["boot_id"] != before["boot_id"]
    assert after["disk_recovered"] >= before["disk_seq"] and after["disk_gaps"] == 0
    assert not os.path.exists(os.path.join(L.state_path("hosts", "h1", "local"), "cold_local.qcow2"))
    L.virsh("h2", "destroy", "cold_local")


def test_offline_move_of_stopped_guest_on_shared_storage(lab):
    L.define_guest("cold_off", "h1", disk="nbd", start=False)
    run_target("cold_migrate", target_hosts="h1", cold_domain="cold_off", cold_dest="h3",
               cold_expect_copy=[], cold_expect_shutdown=False)
    assert where(lab, "cold_off") == {"h3": "shut off"}


def test_disk_copy_fails_half_way(lab, figures):
    g = L.define_guest("cold_fail", "h1", disk="local", start=False)
    # 24 MiB of real data in the image, then an 8 MiB filesystem on the destination: the copy fails
    L.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 16M 24M", g["image"]])
    L.virsh("h1", "start", "cold_fail")
    L.wait_guest(g["ip"])
    time.sleep(1)
    tiny = L.host_enter("h2") + ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", L.MNT_LOCAL]
    L.run(tiny)
    try:
        L.virsh("h2", "pool-refresh", "local")
        before = L.guest_status(g["ip"])
        run_target("cold_migrate", target_hosts="h1", cold_domain="cold_fail", cold_dest="h2",
                   cold_expect_copy=["vda"], cold_expect_shutdown=True, cold_fault=True)
        result = result_of("cold_fail")
        assert result["failed"] and "cold migration of cold_fail failed" in result["msg"]
        assert "the guest runs on the source again" in result["msg"]
        assert result["state"] == "rolled_back"
        assert L.run(L.host_enter("h2") + ["ls", "-A", L.MNT_LOCAL]).stdout.strip() == ""
    finally:
        L.run(L.host_enter("h2") + ["umount", L.MNT_LOCAL])
        L.virsh("h2", "pool-refresh", "local")
    after = L.wait_guest(g["ip"], timeout=60)
    assert where(lab, "cold_fail") == {"h1": "running"}
    assert after["disk_recovered"] >= before["disk_seq"] and after["disk_gaps"] == 0
    figures["cold_copy_fault"] = {"steps": [s["action"] for s in result["steps"]]}
    # the fault cleared, the rerun succeeds and the data arrives intact (checksum verified)
    run_target("cold_migrate", target_hosts="h1", cold_domain="cold_fail", cold_dest="h2",
               cold_expect_copy=["vda"], cold_expect_shutdown=True)
    assert result_of("cold_fail")["copied"][0]["verified"] is True
    L.wait_guest(g["ip"], timeout=60)
    assert where(lab, "cold_fail") == {"h2": "running"}
    L.virsh("h2", "destroy", "cold_fail")


NVRAM_GUEST = """<domain type='qemu'><name>cold_nvram</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<features><acpi/></features>
<os><type arch='x86_64' machine='pc'>hvm</type>
<loader readonly='yes' type='pflash'>%s</loader><nvram>/var/lib/libvirt/qemu/nvram/cold_nvram_VARS.fd</nvram></os>
<devices><interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface></devices></domain>"""


def test_nvram_moves_with_the_definition(lab):
    """A stopped UEFI guest: its firmware variables (not shared) travel with it, byte for byte."""
    code = L.state_path("shared", "fake_CODE.fd")
    with open(code, "wb") as f:
        f.write(b"\0" * 65536)
    src_vars = L.state_path("hosts", "h1", "var-lib-libvirt", "qemu", "nvram", "cold_nvram_VARS.fd")
    os.makedirs(os.path.dirname(src_vars), exist_ok=True)
    content = os.urandom(131072)
    with open(src_vars, "wb") as f:
        f.write(content)
    xml = L.state_path("guests", "cold_nvram.xml")
    with open(xml, "w") as f:
        f.write(NVRAM_GUEST % code)
    L.virsh("h1", "define", xml)
    run_target("cold_migrate", target_hosts="h1", cold_domain="cold_nvram", cold_dest="h2",
               cold_expect_copy=["nvram"], cold_expect_shutdown=False)
    dst_vars = L.state_path("hosts", "h2", "var-lib-libvirt", "qemu", "nvram", "cold_nvram_VARS.fd")
    with open(dst_vars, "rb") as f:
        assert f.read() == content
    assert not os.path.exists(src_vars)
    assert where(lab, "cold_nvram") == {"h2": "shut off"}
    assert "cold_nvram_VARS.fd" in L.virsh("h2", "dumpxml", "cold_nvram").stdout


TPM = "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"


def manufactured(name):
    """{host: how often swtpm made a new TPM for NAME there} (it logs each manufacturing)."""
    out = {}
    for h in L.load_state()["hosts"]:
        path = L.state_path("hosts", h, "log-swtpm", "libvirt", "qemu", name + "-swtpm.log")
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                out[h] = f.read().count("Starting vTPM manufacturing")
    return {h: n for h, n in out.items() if n}


def tpm_state(host, uuid):
    return L.state_path("hosts", host, "var-lib-libvirt", "swtpm", uuid, "tpm2", "tpm2-00.permall")


def test_tpm_state_moves_with_the_guest(lab, figures):
    """An emulated TPM's state (its endorsement keys, whatever the guest sealed) moves with a cold
    migration - copied, checksum-verified, gone from the source - and then with a live one: no host
    but the first ever manufactures a TPM for this guest (swtpm logs each manufacturing)."""
    g = L.define_guest("cold_tpm", "h1", disk="local", extra_devices=TPM)
    L.wait_guest(g["ip"])
    uuid = L.virsh("h1", "domuuid", "cold_tpm").stdout.strip()
    made = manufactured("cold_tpm")      # (a rerun in the same lab finds the earlier run's log lines too)
    assert os.path.exists(tpm_state("h1", uuid)) and list(made) == ["h1"]
    # (with a TPM, the lab's PVH-booted guest kernel finds the ACPI tables broken - "Invalid table
    # length 0x1 in RSDT/XSDT" - and ignores the power button: it is powered off after 5 s)
    run_target("cold_migrate", target_hosts="h1", cold_domain="cold_tpm", cold_dest="h2",
               cold_expect_copy=["vda", "tpm"], cold_expect_shutdown=True, cold_shutdown_timeout=5, cold_force=True)
    result = result_of("cold_tpm")
    tpm = [c for c in result["copied"] if c["kind"] == "tpm"]
    assert len(tpm) == 1 and tpm[0]["verified"] is True and tpm[0]["dest"].endswith("/tpm2/tpm2-00.permall")
    L.wait_guest(g["ip"], timeout=60)
    assert where(lab, "cold_tpm") == {"h2": "running"}
    assert os.path.exists(tpm_state("h2", uuid)) and not os.path.exists(tpm_state("h1", uuid))
    assert manufactured("cold_tpm") == made, "the destination made a new TPM: the state did not move"
    L.set_guest_host("cold_tpm", "h2")
    # live: QEMU carries the TPM state in the migration stream
    migrate_with_probe(lab, figures, "tpm_live", "cold_tpm", "h3", mig_expect_copied=["vda"])
    assert os.path.exists(tpm_state("h3", uuid))
    assert manufactured("cold_tpm") == made, "the live destination made a new TPM"
    figures["tpm_cold"] = {"module_s": result["total_time_s"], "tpm_bytes": tpm[0]["bytes"]}
    L.virsh("h3", "destroy", "cold_tpm")
