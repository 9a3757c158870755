#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

DOCUMENTATION = r'''
---
module: ip_advertise
short_description: Tell the network where a VM's addresses are now, after a migration
version_added: 0.1.0
description:
  - Run on the destination hypervisor after a migration. For each interface of the domain, with its
    IPv4 and IPv6 addresses, announces the new location with any combination of O(methods).
  - V(announce_self) - asks QEMU to announce the guest NICs again (QMP C(announce-self) through
    libvirt's QEMU monitor API).
  - V(garp) - gratuitous ARP for every IPv4 address, sent on the bridge the NIC is attached to, from the
    VM's MAC (flat L2) or the host's bridge MAC (O(sender_mac=host), for proxy-ARP and routed designs).
  - V(unsolicited_na) - IPv6 unsolicited neighbour advertisements (override flag) for every IPv6 address.
  - V(route) - host routes (/32, /128) for the addresses through the NIC's bridge on this host, for
    routed designs where the hypervisor answers for its VMs or a routing daemon redistributes kernel
    routes. Remove them from the source by running the module there with O(state=absent).
  - Frames are built in Python and sent through a raw packet socket; root is required.
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.connection
  - vmmigration.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports what would be sent and which routes would change; sends nothing.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - Routes are changed only when missing or wrong; announcements are sent at every run by design.
options:
  domain:
    description: Name of the running domain on this host (with O(state=absent), the domain may be gone).
    type: str
    required: true
  interfaces:
    description: The interfaces and addresses to advertise.
    type: list
    elements: dict
    required: true
    suboptions:
      mac:
        description: MAC of the NIC. Optional when the domain has exactly one NIC.
        type: str
      ipv4:
        description: IPv4 addresses on this NIC.
        type: list
        elements: str
        default: []
      ipv6:
        description: IPv6 addresses on this NIC.
        type: list
        elements: str
        default: []
  methods:
    description: How to advertise.
    type: list
    elements: str
    choices: [announce_self, garp, unsolicited_na, route]
    default: [announce_self, garp, unsolicited_na]
  sender_mac:
    description: Source MAC of GARP and NA frames - V(vm) (the NIC's MAC), V(host) (the bridge's MAC), or a MAC.
    type: str
    default: vm
  count:
    description: How many times each frame is sent.
    type: int
    default: 3
  interval_ms:
    description: Milliseconds between repetitions.
    type: int
    default: 100
  route_bridge:
    description: Device for the host routes. Default - the bridge the NIC is attached to.
    type: str
  announce_interface:
    description:
      - Interface the GARP and NA frames go out on. Default - the bridge the NIC is attached to (flat L2).
        In routed designs, the interface facing the routers (with O(sender_mac=host), its MAC is announced
        for the VM's addresses).
    type: str
  state:
    description: V(present) advertises (and adds routes); V(absent) only removes the host routes (run on the source).
    type: str
    choices: [present, absent]
    default: present
'''

EXAMPLES = r'''
- name: After moving web01 to hv2, make the flat L2 network learn it at once
  vmmigration.libvirt.ip_advertise:
    domain: web01
    interfaces:
      - ipv4: [192.0.2.10]
        ipv6: ['2001:db8::10']
  delegate_to: hv2

- name: Routed design - remove the host routes on the source ...
  vmmigration.libvirt.ip_advertise:
    domain: web01
    interfaces: [{mac: '52:54:00:aa:bb:cc', ipv4: [198.51.100.7]}]
    methods: [route]
    route_bridge: br-vms
    state: absent
  delegate_to: hv1

- name: ... and add them on the destination, answering for the VM with the host's MAC
  vmmigration.libvirt.ip_advertise:
    domain: web01
    interfaces: [{mac: '52:54:00:aa:bb:cc', ipv4: [198.51.100.7]}]
    methods: [route, garp]
    sender_mac: host
  delegate_to: hv2
'''

RETURN = r'''
sent:
  description: Every announcement - method, interface (device it went out on), address, sender MAC, count and time (epoch seconds).
  returned: always
  type: list
  elements: dict
routes:
  description: Host routes added (V(present)) or removed (V(absent)) on this host.
  returned: always
  type: dict
  sample: {added: [198.51.100.7/32], removed: []}
'''

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.vmmigration.libvirt.plugins.module_utils._advertise import (
    AdvertiseError,
    announce_self_command,
    domain_nics,
    garp_frame,
    host_route,
    mac_bytes,
    plan_route_moves,
    resolve_interfaces,
    send_frames,
    unsolicited_na_frame,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils._client import (
    CONNECTION_ARGSPEC,
    INSTALL_HINT,
    LIBVIRT_IMPORT_ERROR,
    LibvirtClient,
    LibvirtClientError,
    libvirt,
)


def current_routes(module):
    routes = {}
    for fam in ('-4', '-6'):
        rc, out, err = module.run_command(['ip', fam, 'route', 'show', 'table', 'main'])
        if rc != 0:
            raise AdvertiseError('cannot read routes: %s' % err.strip())
        for line in out.splitlines():
            parts = line.split()
            if not parts or '/' not in parts[0] and parts[0] == 'default':
                continue
            prefix = parts[0] if '/' in parts[0] else host_route(parts[0]) if _is_addr(parts[0]) else None
            if prefix and 'dev' in parts:
                routes[prefix] = parts[parts.index('dev') + 1]
    return routes


def _is_addr(text):
    try:
        host_route(text)
        return True
    except ValueError:
        return False


def bridge_mac(ifname):
    try:
        with open('/sys/class/net/%s/address' % ifname) as f:
            return f.read().strip()
    except OSError:
        raise AdvertiseError('no interface %s on this host' % ifname)


def main():
    argument_spec = dict(
        domain=dict(type='str', required=True),
        interfaces=dict(type='list', elements='dict', required=True, options=dict(
            mac=dict(type='str'), ipv4=dict(type='list', elements='str', default=[]),
            ipv6=dict(type='list', elements='str', default=[]))),
        methods=dict(type='list', elements='str', choices=['announce_self', 'garp', 'unsolicited_na', 'route'],
                     default=['announce_self', 'garp', 'unsolicited_na']),
        sender_mac=dict(type='str', default='vm'),
        count=dict(type='int', default=3),
        interval_ms=dict(type='int', default=100),
        route_bridge=dict(type='str'),
        announce_interface=dict(type='str'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    )
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if LIBVIRT_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib('libvirt-python') + '; ' + INSTALL_HINT,
                         exception=LIBVIRT_IMPORT_ERROR)
    if p['count'] < 1 or p['interval_ms'] < 0:
        module.fail_json(msg='count must be at least 1 and interval_ms not negative')
    if p['sender_mac'] not in ('vm', 'host'):
        try:
            mac_bytes(p['sender_mac'])
        except AdvertiseError as e:
            module.fail_json(msg='sender_mac: %s' % e)
    sent, routes = [], {'added': [], 'removed': []}
    client = None
    try:
        for item in p['interfaces']:
            for addr in (item.get('ipv4') or []) + (item.get('ipv6') or []):
                if not _is_addr(addr):
                    raise AdvertiseError('not an IP address: %s' % addr)
        if p['state'] == 'absent':
            if not p['route_bridge']:
                raise AdvertiseError('state=absent needs route_bridge (the domain may be gone from this host)')
            addrs = [a for i in p['interfaces'] for a in (i.get('ipv4') or []) + (i.get('ipv6') or [])]
            have = current_routes(module)
            gone = [host_route(a) for a in addrs if have.get(host_route(a)) == p['route_bridge']]
            if not module.check_mode:
                for prefix in gone:
                    module.run_command(['ip', 'route', 'del', prefix, 'dev', p['route_bridge']], check_rc=True)
            routes['removed'] = gone
            module.exit_json(changed=bool(gone), sent=[], routes=routes)
        client = LibvirtClient(p['uri'], retries=p['connect_retries'], retry_delay=p['connect_retry_delay'])
        dom = client.lookup(p['domain'])
        if dom is None or not dom.isActive():
            raise AdvertiseError('%s does not run on %s: advertise on the host that runs it' % (p['domain'], p['uri']))
        nics = resolve_interfaces(p['interfaces'], domain_nics(client, dom))
        changed = False
        if 'route' in p['methods']:
            have = current_routes(module)
            for nic in nics:
                dev = p['route_bridge'] or nic['bridge']
                plan = plan_route_moves(nic['ipv4'] + nic['ipv6'], have, {}, dev)
                for prefix in plan['add']:
                    if not module.check_mode:
                        module.run_command(['ip', 'route', 'replace', prefix, 'dev', dev], check_rc=True)
                    routes['added'].append(prefix)
            changed = bool(routes['added'])
        if 'announce_self' in p['methods']:
            if not module.check_mode:
                import libvirt_qemu  # pylint: disable=import-outside-toplevel
                try:
                    command = announce_self_command(rounds=p['count'], step_ms=max(1, p['interval_ms']))
                    libvirt_qemu.qemuMonitorCommand(dom, command, 0)
                except libvirt.libvirtError as e:
                    raise AdvertiseError('QEMU announce-self failed: %s' % e.get_error_message())
            sent.append({'method': 'announce_self', 'interface': 'all', 'address': None, 'sender': None,
                         'count': p['count'], 'time': time.time()})
        for nic in nics:
            dev = p['announce_interface'] or nic['bridge'] or nic['tap']
            if p['sender_mac'] == 'vm':
                sender = nic['mac']
            elif p['sender_mac'] == 'host':
                sender = bridge_mac(dev)
            else:
                sender = p['sender_mac'].lower()
            # the link-layer address the network should map the IPs to: the VM's, or the one answering for it
            owner = nic['mac'] if p['sender_mac'] == 'vm' else sender
            frames = []
            if 'garp' in p['methods']:
                frames += [('garp', a, garp_frame(a, owner, sender)) for a in nic['ipv4']]
            if 'unsolicited_na' in p['methods']:
                frames += [('unsolicited_na', a, unsolicited_na_frame(a, owner, sender, router=owner != nic['mac']))
                           for a in nic['ipv6']]
            if not frames:
                continue
            times = [time.time()]
            if not module.check_mode:
                times = send_frames(dev, [f[2] for f in frames], p['count'], p['interval_ms'] / 1000.0)
            for method, addr, _frame in frames:
                sent.append({'method': method, 'interface': dev, 'address': addr, 'sender': sender,
                             'count': p['count'], 'time': times[0]})
    except (AdvertiseError, LibvirtClientError) as e:
        module.fail_json(msg=str(e), sent=sent, routes=routes)
    finally:
        if client is not None:
            client.close()
    # announcements change what the network believes: reported as changes (in check mode: would be sent)
    module.exit_json(changed=changed or bool(sent), sent=sent, routes=routes)


if __name__ == '__main__':
    main()
