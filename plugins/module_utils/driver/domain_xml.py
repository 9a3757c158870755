# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Domain and host XML to plain data. Pure functions: no libvirt connection here.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import xml.etree.ElementTree as ET

# libvirt's virDomainState numbers -> names
DOMAIN_STATES = {
    0: 'nostate', 1: 'running', 2: 'blocked', 3: 'paused', 4: 'shutdown', 5: 'shutoff', 6: 'crashed',
    7: 'pmsuspended',
}


def _xml(doc):
    return ET.fromstring(doc) if isinstance(doc, str) else doc


def _int(text, default=None):
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def _kib(node):
    """A libvirt memory element (<memory unit='KiB'>) in KiB."""
    if node is None or node.text is None:
        return None
    value = int(node.text)
    unit = (node.get('unit') or 'KiB').lower()
    factor = {
        'b': 1.0 / 1024, 'bytes': 1.0 / 1024, 'kb': 1000.0 / 1024, 'k': 1, 'kib': 1,
        'mb': 1000.0 ** 2 / 1024, 'm': 1024, 'mib': 1024, 'gb': 1000.0 ** 3 / 1024, 'g': 1024 ** 2,
        'gib': 1024 ** 2, 'tb': 1000.0 ** 4 / 1024, 't': 1024 ** 3, 'tib': 1024 ** 3,
    }.get(unit, 1)
    return int(value * factor)


def parse_disk(node):
    src = node.find('source')
    drv = node.find('driver')
    tgt = node.find('target')
    disk = {
        'type': node.get('type'),
        'device': node.get('device', 'disk'),
        'target': tgt.get('dev') if tgt is not None else None,
        'bus': tgt.get('bus') if tgt is not None else None,
        'format': drv.get('type') if drv is not None else None,
        'cache': drv.get('cache') if drv is not None else None,
        'io': drv.get('io') if drv is not None else None,
        'readonly': node.find('readonly') is not None,
        'shareable': node.find('shareable') is not None,
        'source': None,
        'protocol': None,
        'hosts': [],
        'pool': None,
        'volume': None,
    }
    if src is not None:
        if disk['type'] == 'file':
            disk['source'] = src.get('file')
        elif disk['type'] == 'block':
            disk['source'] = src.get('dev')
        elif disk['type'] == 'network':
            disk['protocol'] = src.get('protocol')
            disk['source'] = src.get('name')
            disk['hosts'] = [{'name': h.get('name'), 'port': _int(h.get('port')), 'transport': h.get('transport'),
                              'socket': h.get('socket')} for h in src.findall('host')]
        elif disk['type'] == 'volume':
            disk['pool'] = src.get('pool')
            disk['volume'] = src.get('volume')
        elif disk['type'] == 'dir':
            disk['source'] = src.get('dir')
    return disk


def parse_interface(node):
    src = node.find('source')
    mac = node.find('mac')
    model = node.find('model')
    target = node.find('target')
    iface = {
        'type': node.get('type'),
        'mac': mac.get('address').lower() if mac is not None and mac.get('address') else None,
        'model': model.get('type') if model is not None else None,
        'bridge': None,
        'network': None,
        'source_dev': None,
        'target_dev': target.get('dev') if target is not None else None,
    }
    if src is not None:
        iface['bridge'] = src.get('bridge')
        iface['network'] = src.get('network')
        iface['source_dev'] = src.get('dev')
    return iface


def migration_blockers(root):
    """Devices that keep a domain from live-migrating, each with a reason.

    Host-bound devices: PCI/USB/SCSI passthrough (hostdev), host-USB redirection, host smartcards,
    passthrough TPM, shared memory, host filesystem passthrough (virtiofs / 9p), vhost-user and
    direct (macvtap passthrough) interfaces in passthrough mode, and a CPU in host-passthrough
    mode (only safe between identical hosts, so reported with that reason).
    """
    blockers = []
    devices = root.find('devices')
    if devices is None:
        devices = ET.Element('devices')
    for hd in devices.findall('hostdev'):
        blockers.append({'device': 'hostdev', 'reason': 'host device passthrough (%s) is bound to this host'
                         % (hd.get('type') or 'unknown')})
    for rd in devices.findall('redirdev'):
        blockers.append({'device': 'redirdev', 'reason': 'USB redirection of type %s' % rd.get('type')})
    for sc in devices.findall('smartcard'):
        if sc.get('mode') in ('host', 'host-certificates'):
            blockers.append({'device': 'smartcard', 'reason': 'smartcard in %s mode' % sc.get('mode')})
    for tpm in devices.findall('tpm'):
        backend = tpm.find('backend')
        if backend is not None and backend.get('type') == 'passthrough':
            blockers.append({'device': 'tpm', 'reason': 'TPM passthrough of the host TPM'})
    for shm in devices.findall('shmem'):
        blockers.append({'device': 'shmem', 'reason': 'shared memory region %s' % shm.get('name')})
    for fs in devices.findall('filesystem'):
        drv = fs.find('driver')
        blockers.append({'device': 'filesystem', 'reason': 'host filesystem passthrough (%s)'
                         % (drv.get('type') if drv is not None and drv.get('type') else 'path')})
    for iface in devices.findall('interface'):
        if iface.get('type') == 'vhostuser':
            blockers.append({'device': 'interface', 'reason': 'vhost-user interface'})
        elif iface.get('type') == 'hostdev':
            blockers.append({'device': 'interface', 'reason': 'SR-IOV interface (hostdev)'})
        elif iface.get('type') == 'direct':
            src = iface.find('source')
            if src is not None and src.get('mode') == 'passthrough':
                blockers.append({'device': 'interface', 'reason': 'macvtap in passthrough mode'})
    cpu = root.find('cpu')
    if cpu is not None and cpu.get('mode') == 'host-passthrough' and cpu.get('migratable') != 'on':
        blockers.append({'device': 'cpu', 'reason': 'host-passthrough CPU without migratable=on'})
    return blockers


def parse_cpu(root):
    cpu = root.find('cpu')
    if cpu is None:
        return {'mode': None, 'match': None, 'model': None, 'fallback': None, 'vendor': None, 'features': []}
    model = cpu.find('model')
    vendor = cpu.find('vendor')
    return {
        'mode': cpu.get('mode', 'custom' if model is not None else None),
        'match': cpu.get('match'),
        'model': model.text if model is not None else None,
        'fallback': model.get('fallback') if model is not None else None,
        'vendor': vendor.text if vendor is not None else None,
        'features': [{'name': f.get('name'), 'policy': f.get('policy', 'require')} for f in cpu.findall('feature')],
    }


def parse_domain(doc):
    """The facts the collection needs about one domain, from its XML description."""
    root = _xml(doc)
    os_type = root.find('./os/type')
    devices = root.find('devices')
    disks = [parse_disk(d) for d in devices.findall('disk')] if devices is not None else []
    ifaces = [parse_interface(i) for i in devices.findall('interface')] if devices is not None else []
    loader = root.find('./os/loader')
    nvram = root.find('./os/nvram')
    vcpu = root.find('vcpu')
    return {
        'name': root.findtext('name'),
        'uuid': root.findtext('uuid'),
        'domain_type': root.get('type'),
        'memory_kib': _kib(root.find('memory')),
        'current_memory_kib': _kib(root.find('currentMemory')) or _kib(root.find('memory')),
        'vcpus': _int(vcpu.text, 1) if vcpu is not None else 1,
        'arch': os_type.get('arch') if os_type is not None else None,
        'machine': os_type.get('machine') if os_type is not None else None,
        'cpu': parse_cpu(root),
        'loader': loader.text if loader is not None else None,
        'nvram': nvram.text if nvram is not None else None,
        'tpm': devices is not None and devices.find('tpm') is not None,
        'disks': disks,
        'interfaces': ifaces,
        'blockers': migration_blockers(root),
    }


def parse_host_capabilities(doc):
    """Host facts from virConnectGetCapabilities XML: UUID, CPU, and the domain types per arch."""
    root = _xml(doc)
    host = root.find('host')
    cpu = host.find('cpu') if host is not None else None
    domain_types = set()
    machines = {}
    for guest in root.findall('guest'):
        arch = guest.find('arch')
        if arch is None:
            continue
        for dom in arch.findall('domain'):
            domain_types.add(dom.get('type'))
        names = machines.setdefault(arch.get('name'), set())
        for m in arch.findall('machine'):
            if m.text:
                names.add(m.text)
            if m.get('canonical'):
                names.add(m.get('canonical'))
        for dom in arch.findall('domain'):
            for m in dom.findall('machine'):
                if m.text:
                    names.add(m.text)
    return {
        'uuid': host.findtext('uuid') if host is not None else None,
        'cpu_arch': cpu.findtext('arch') if cpu is not None else None,
        'cpu_model': cpu.findtext('model') if cpu is not None else None,
        'cpu_vendor': cpu.findtext('vendor') if cpu is not None else None,
        'cpu_features': sorted(f.get('name') for f in cpu.findall('feature')) if cpu is not None else [],
        'domain_types': sorted(domain_types),
        'machine_types': dict((k, sorted(v)) for k, v in machines.items()),
    }


def version_string(number):
    """libvirt encodes versions as major * 1,000,000 + minor * 1,000 + release."""
    if number is None:
        return None
    return '%d.%d.%d' % (number // 1000000, (number // 1000) % 1000, number % 1000)
