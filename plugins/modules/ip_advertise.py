#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

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
  - vmmigration.libvirt.connection.retries
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
seealso:
  - module: vmmigration.libvirt.domain_addresses
  - module: vmmigration.libvirt.ip_reachable
  - module: vmmigration.libvirt.migrate
options:
  domain:
    description: Name of the running domain on this host (with O(state=absent), the domain may be gone).
    type: str
    required: true
    aliases: [name]
  interfaces:
    description:
      - The interfaces and addresses to advertise.
      - Default - discovered on this host from O(address_sources); give them (for example from
        M(vmmigration.libvirt.domain_addresses) run on the source before the move) where this host
        cannot know them.
    type: list
    elements: dict
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
      sources:
        description: Ignored - accepted so that RV(vmmigration.libvirt.domain_addresses#module:interfaces) can be passed as it is.
        type: list
        elements: str
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
  address_sources:
    description:
      - Where to look for the addresses when O(interfaces) is not given - V(agent) (QEMU guest agent),
        V(lease) (DHCP leases of libvirt networks), V(neighbours) (this host's neighbour table, by the NIC's MAC).
      - Link-local addresses are never advertised.
    type: list
    elements: str
    choices: [agent, lease, neighbours]
    default: [agent, lease, neighbours]
  check_guest_addresses:
    description:
      - When O(interfaces) are given and the guest agent answers, refuse (before anything is sent) an address the
        guest does not hold on that NIC - announcing it would take it away from whoever holds it. Without an agent
        the addresses are used as given (RV(discovery_notes) says so).
    type: bool
    default: true
  proxy_ndp:
    description:
      - With V(route) in O(methods), also add a proxy neighbour entry (C(ip -6 neigh add proxy)) for every
        IPv6 address on O(announce_interface), so that this host answers neighbour solicitations for the VM
        (the IPv6 counterpart of proxy-ARP; Linux proxies NDP only per address). O(state=absent) removes them.
      - Needs O(announce_interface), and the C(proxy_ndp) and C(forwarding) sysctls on this host.
    type: bool
    default: false
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

- name: Addresses discovered on the destination (guest agent, leases, neighbour table)
  vmmigration.libvirt.ip_advertise:
    domain: web01
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
proxy_ndp:
  description: Proxy neighbour entries added (V(present)) or removed (V(absent)) on O(announce_interface).
  returned: always
  type: dict
  sample: {added: ['2001:db8:2::7'], removed: []}
interfaces:
  description: The interfaces and addresses advertised (given or discovered).
  returned: with O(state=present)
  type: list
  elements: dict
  sample: [{mac: '52:54:00:aa:bb:cc', ipv4: [192.0.2.10], ipv6: ['2001:db8::10']}]
discovery_notes:
  description: Address sources that could not answer (for example no guest agent), or why given addresses were not checked.
  returned: with O(state=present)
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.advertise import (
    ADDRESS_SOURCES,
    AdvertiseError,
    advertise,
    mac_bytes,
    remove_routes,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    CONNECTION_ARGSPEC,
    libvirt_session,
    require_libvirt,
    start_event_loop,
)


def main():
    argument_spec = dict(
        domain=dict(type='str', required=True, aliases=['name']),
        interfaces=dict(type='list', elements='dict', options=dict(
            mac=dict(type='str'), ipv4=dict(type='list', elements='str', default=[]),
            ipv6=dict(type='list', elements='str', default=[]), sources=dict(type='list', elements='str'))),
        methods=dict(type='list', elements='str', choices=['announce_self', 'garp', 'unsolicited_na', 'route'],
                     default=['announce_self', 'garp', 'unsolicited_na']),
        sender_mac=dict(type='str', default='vm'),
        count=dict(type='int', default=3),
        interval_ms=dict(type='int', default=100),
        route_bridge=dict(type='str'),
        announce_interface=dict(type='str'),
        address_sources=dict(type='list', elements='str', choices=list(ADDRESS_SOURCES), default=list(ADDRESS_SOURCES)),
        proxy_ndp=dict(type='bool', default=False),
        check_guest_addresses=dict(type='bool', default=True),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    )
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    require_libvirt(module)
    if p['count'] < 1 or p['interval_ms'] < 0:
        module.fail_json(msg='count must be at least 1 and interval_ms not negative')
    if p['sender_mac'] not in ('vm', 'host'):
        try:
            mac_bytes(p['sender_mac'])
        except AdvertiseError as e:
            module.fail_json(msg='sender_mac: %s' % e)
    if p['state'] == 'absent' and not p['interfaces']:
        module.fail_json(msg='state=absent needs interfaces (the domain is gone from this host)')
    start_event_loop()   # keepalive: a libvirtd that stops answering ends the call, not the module
    with libvirt_session(module, errors=(AdvertiseError,)) as cache:
        if p['state'] == 'absent':
            result = remove_routes(p, module.run_command, module.check_mode)
        else:
            result = advertise(cache.get(p['uri']), p, module.run_command, module.check_mode)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
