"""Unit tests of the pure domain/host XML parsers."""
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import domain_xml as D

DOMAIN = """
<domain type='kvm'>
  <name>web01</name>
  <uuid>6f3c8a4e-5d1b-4b8e-9a61-2f9d1c2e7a10</uuid>
  <memory unit='GiB'>4</memory>
  <currentMemory unit='MiB'>2048</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
    <nvram>/var/lib/libvirt/qemu/nvram/web01_VARS.fd</nvram>
  </os>
  <cpu mode='custom' match='exact'>
    <model fallback='forbid'>Skylake-Client</model>
    <vendor>Intel</vendor>
    <feature policy='require' name='avx512f'/>
    <feature policy='disable' name='hle'/>
  </cpu>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' io='native'/>
      <source file='/var/lib/libvirt/images/web01.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='writeback'/>
      <source protocol='nbd' name='data'><host name='198.18.0.4' port='10810'/></source>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='bridge'>
      <mac address='52:54:00:AA:BB:CC'/>
      <source bridge='br0'/>
      <model type='virtio'/>
    </interface>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cd'/>
      <source network='default'/>
    </interface>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
  </devices>
</domain>
"""


def test_parse_domain_basics():
    d = D.parse_domain(DOMAIN)
    assert d["name"] == "web01"
    assert d["domain_type"] == "kvm"
    assert d["memory_kib"] == 4 * 1024 * 1024
    assert d["current_memory_kib"] == 2048 * 1024
    assert d["vcpus"] == 2
    assert (d["arch"], d["machine"]) == ("x86_64", "pc-q35-7.2")
    assert d["nvram"].endswith("web01_VARS.fd")
    assert d["tpm"] is True
    assert d["blockers"] == []


def test_parse_domain_cpu():
    cpu = D.parse_domain(DOMAIN)["cpu"]
    assert cpu["mode"] == "custom" and cpu["model"] == "Skylake-Client" and cpu["fallback"] == "forbid"
    assert {"name": "avx512f", "policy": "require"} in cpu["features"]
    assert {"name": "hle", "policy": "disable"} in cpu["features"]


def test_parse_disks():
    disks = D.parse_domain(DOMAIN)["disks"]
    assert [x["target"] for x in disks] == ["vda", "vdb", "sda"]
    assert disks[0]["source"] == "/var/lib/libvirt/images/web01.qcow2"
    assert (disks[0]["format"], disks[0]["cache"], disks[0]["io"]) == ("qcow2", "none", "native")
    assert disks[1]["protocol"] == "nbd" and disks[1]["source"] == "data"
    assert disks[1]["hosts"] == [{"name": "198.18.0.4", "port": 10810, "transport": None, "socket": None}]
    assert disks[2]["device"] == "cdrom" and disks[2]["source"] is None and disks[2]["readonly"]


def test_parse_interfaces_lowercases_macs():
    ifaces = D.parse_domain(DOMAIN)["interfaces"]
    assert ifaces[0] == {"type": "bridge", "mac": "52:54:00:aa:bb:cc", "model": "virtio", "bridge": "br0",
                         "network": None, "source_dev": None, "target_dev": None}
    assert ifaces[1]["network"] == "default" and ifaces[1]["model"] is None


def _with_devices(extra, cpu=""):
    return "<domain type='qemu'><name>x</name><memory>1024</memory>%s<devices>%s</devices></domain>" % (cpu, extra)


def test_blockers_each_kind():
    cases = [
        ("<hostdev mode='subsystem' type='pci'><source><address bus='1'/></source></hostdev>", "hostdev"),
        ("<redirdev bus='usb' type='spicevmc'/>", "redirdev"),
        ("<smartcard mode='host'/>", "smartcard"),
        ("<tpm model='tpm-tis'><backend type='passthrough'/></tpm>", "tpm"),
        ("<shmem name='ivshmem0'/>", "shmem"),
        ("<filesystem type='mount'><driver type='virtiofs'/><source dir='/srv'/><target dir='t'/></filesystem>",
         "filesystem"),
        ("<interface type='vhostuser'><source type='unix' path='/x' mode='client'/></interface>", "interface"),
        ("<interface type='direct'><source dev='eth0' mode='passthrough'/></interface>", "interface"),
    ]
    for xml, device in cases:
        blockers = D.parse_domain(_with_devices(xml))["blockers"]
        assert [b["device"] for b in blockers] == [device], xml
        assert blockers[0]["reason"]


def test_not_blockers():
    harmless = ("<tpm model='tpm-crb'><backend type='emulator'/></tpm>"
                "<interface type='direct'><source dev='eth0' mode='bridge'/></interface>"
                "<smartcard mode='passthrough' type='spicevmc'/>")
    assert D.parse_domain(_with_devices(harmless))["blockers"] == []


def test_host_passthrough_cpu():
    blocked = D.parse_domain(_with_devices("", "<cpu mode='host-passthrough'/>"))["blockers"]
    assert [b["device"] for b in blocked] == ["cpu"]
    ok = D.parse_domain(_with_devices("", "<cpu mode='host-passthrough' migratable='on'/>"))["blockers"]
    assert ok == []


def test_memory_units():
    assert D.parse_domain(_with_devices(""))["memory_kib"] == 1024
    for unit, kib in (("b", 1), ("KiB", 1024), ("MiB", 1024 ** 2), ("G", 1024 ** 3)):
        xml = "<domain><name>x</name><memory unit='%s'>1024</memory></domain>" % unit
        assert D.parse_domain(xml)["memory_kib"] == kib


CAPS = """
<capabilities>
  <host>
    <uuid>f6f1b2dc-af7a-5d10-ae16-1df062eda56d</uuid>
    <cpu><arch>x86_64</arch><model>Skylake-Client-IBRS</model><vendor>Intel</vendor>
      <feature name='vmx'/><feature name='aes'/></cpu>
  </host>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <machine canonical='pc-i440fx-7.2'>pc</machine>
      <machine>pc-q35-7.2</machine>
      <domain type='qemu'/>
      <domain type='kvm'><machine>pc-q35-8.0</machine></domain>
    </arch>
  </guest>
</capabilities>
"""


def test_host_capabilities():
    c = D.parse_host_capabilities(CAPS)
    assert c["uuid"] == "f6f1b2dc-af7a-5d10-ae16-1df062eda56d"
    assert c["domain_types"] == ["kvm", "qemu"]
    assert c["cpu_model"] == "Skylake-Client-IBRS" and c["cpu_features"] == ["aes", "vmx"]
    assert c["machine_types"]["x86_64"] == ["pc", "pc-i440fx-7.2", "pc-q35-7.2", "pc-q35-8.0"]


def test_version_string():
    assert D.version_string(9000000) == "9.0.0"
    assert D.version_string(7002001) == "7.2.1"
    assert D.version_string(None) is None
