# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Hypervisor and domain facts read through one LibvirtClient. Read-only.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import os
import xml.etree.ElementTree as ET

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import LibvirtClientError
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.domain_xml import (
    DOMAIN_STATES,
    parse_domain,
    parse_host_capabilities,
    version_string,
)


def _is_local(uri):
    """A URI whose daemon runs on this machine (no host part), so its sysfs is ours to read."""
    rest = uri.split('://', 1)[1] if '://' in uri else ''
    return rest.startswith('/')


def host_bridges(client):
    """Names of the host's Linux bridges: libvirt's interface driver, else sysfs for a local URI."""
    names = set()
    try:
        for iface in client.conn.listAllInterfaces(0):
            root = ET.fromstring(driver.definition(iface))
            if root.get('type') == 'bridge':
                names.add(iface.name())
    except LibvirtClientError:
        pass
    if not names and _is_local(client.uri) and os.path.isdir('/sys/class/net'):
        for dev in os.listdir('/sys/class/net'):
            if os.path.isdir(os.path.join('/sys/class/net', dev, 'bridge')):
                names.add(dev)
    return sorted(names)


def networks(client):
    out = []
    for net in client.call('cannot list networks', client.conn.listAllNetworks, 0):
        try:
            bridge = net.bridgeName()
        except LibvirtClientError:
            bridge = None
        out.append({'name': net.name(), 'active': bool(net.isActive()), 'bridge': bridge})
    return sorted(out, key=lambda n: n['name'])


def storage_pools(client):
    out = []
    for pool in client.call('cannot list storage pools', client.conn.listAllStoragePools, 0):
        root = ET.fromstring(driver.definition(pool))
        info = pool.info() if pool.isActive() else [0, 0, 0, 0]
        out.append({
            'name': pool.name(),
            'type': root.get('type'),
            'active': bool(pool.isActive()),
            'path': root.findtext('./target/path'),
            'capacity': info[1],
            'allocation': info[2],
            'available': info[3],
        })
    return sorted(out, key=lambda p: p['name'])


def domain_facts(client, dom):
    """One domain's facts: its XML as data, plus live figures where the domain runs."""
    state, reason = client.call('cannot read the state of %s' % dom.name(), dom.state)
    facts = parse_domain(client.call('cannot read the XML of %s' % dom.name(), driver.definition, dom))
    facts['state'] = DOMAIN_STATES.get(state, 'unknown')
    facts['state_reason'] = reason
    facts['persistent'] = bool(dom.isPersistent())
    facts['active'] = bool(dom.isActive())
    for disk in facts['disks']:
        disk['capacity'] = disk['allocation'] = disk['physical'] = None
        if disk['target'] and (disk['source'] or disk['volume']) and facts['active']:
            try:
                disk['capacity'], disk['allocation'], disk['physical'] = dom.blockInfo(disk['target'], 0)
            except LibvirtClientError:
                pass
    for iface in facts['interfaces']:
        iface['addresses'] = []
    if facts['active']:
        by_mac = {}
        for source in ('lease', 'arp'):
            if not driver.address_source_known(source):
                continue
            try:
                found = driver.interface_addresses(dom, source) or {}
            except LibvirtClientError:
                continue
            for entry in found.values():
                mac = (entry.get('hwaddr') or '').lower()
                for a in entry.get('addrs') or []:
                    by_mac.setdefault(mac, set()).add(a['addr'])
        for iface in facts['interfaces']:
            iface['addresses'] = sorted(by_mac.get(iface['mac'], ()))
    return facts


def gather(client, domains=None, include_domains=True):
    """Facts of the hypervisor behind CLIENT and of its domains (all, or those named)."""
    conn = client.conn
    caps = parse_host_capabilities(client.call('cannot read capabilities', conn.getCapabilities))
    info = client.call('cannot read node info', conn.getInfo)
    free = client.call('cannot read free memory', conn.getFreeMemory)
    host = {
        'hostname': client.call('cannot read the hostname', conn.getHostname),
        'uri': client.uri,
        'uuid': caps['uuid'],
        'driver': client.call('cannot read the driver type', conn.getType),
        'libvirt_version': version_string(client.call('cannot read the libvirt version', conn.getLibVersion)),
        'hypervisor_version': version_string(client.call('cannot read the hypervisor version', conn.getVersion)),
        'domain_types': caps['domain_types'],
        'machine_types': caps['machine_types'],
        'cpu_arch': caps['cpu_arch'],
        'cpu_model': caps['cpu_model'],
        'cpu_vendor': caps['cpu_vendor'],
        'cpu_features': caps['cpu_features'],
        'cpus': info[2],
        'memory_total': info[1] * 1024 * 1024,
        'memory_free': free,
        'bridges': host_bridges(client),
        'networks': networks(client),
        'storage_pools': storage_pools(client),
    }
    result = {'host': host, 'domains': []}
    if not include_domains:
        return result
    if domains:
        missing = [n for n in domains if client.lookup(n) is None]
        if missing:
            raise LibvirtClientError('no domain named %s on %s' % (', '.join(missing), client.uri))
        doms = [client.lookup(n) for n in domains]
    else:
        doms = sorted(client.call('cannot list domains', conn.listAllDomains, 0), key=lambda d: d.name())
    result['domains'] = [domain_facts(client, d) for d in doms]
    return result
