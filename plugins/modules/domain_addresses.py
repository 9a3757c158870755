#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: domain_addresses
short_description: The IPv4 and IPv6 addresses of a running VM's interfaces, from the guest agent, DHCP leases or the host's neighbour table
version_added: 0.1.0
description:
  - Run on the hypervisor that runs the domain - before a migration on the source, whose neighbour table
    knows the VM (in routed designs the hypervisor is the VM's gateway) - and pass the result as
    O(vmmigration.libvirt.ip_advertise#module:interfaces) on the destination after the move.
  - Sources, in the order given - V(agent) (QEMU guest agent), V(lease) (DHCP leases of libvirt networks),
    V(neighbours) (this host's IPv4 and IPv6 neighbour entries whose link-layer address is the NIC's MAC).
    A source that cannot answer (no guest agent, NIC not on a libvirt network) is reported in RV(notes).
  - Link-local and loopback addresses are left out (they are never advertised).
  - Read-only.
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.connection
  - vmmigration.libvirt.connection.retries
  - vmmigration.libvirt.attributes
  - vmmigration.libvirt.attributes.info_module
seealso:
  - module: vmmigration.libvirt.ip_reachable
  - module: vmmigration.libvirt.ip_advertise
options:
  domain:
    description: Name of the running domain on this host.
    type: str
    required: true
    aliases: [name]
  sources:
    description: Where to look.
    type: list
    elements: str
    choices: [agent, lease, neighbours]
    default: [agent, lease, neighbours]
  require:
    description: Fail when no address is found for any interface.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Before moving web01 away from hv1, note its addresses there
  vmmigration.libvirt.domain_addresses:
    domain: web01
  delegate_to: hv1
  register: web01_addresses

- name: After the move, advertise them from hv2
  vmmigration.libvirt.ip_advertise:
    domain: web01
    interfaces: "{{ web01_addresses.interfaces }}"
  delegate_to: hv2
'''

RETURN = r'''
interfaces:
  description: One entry per NIC of the domain, in its order - MAC, addresses and the sources that gave them.
  returned: always
  type: list
  elements: dict
  sample: [{mac: '52:54:00:aa:bb:cc', ipv4: [192.0.2.10], ipv6: ['2001:db8::10'], sources: [neighbours]}]
notes:
  description: Sources that could not answer, with libvirt's reason.
  returned: always
  type: list
  elements: str
  sample: ['agent: Guest agent is not responding: QEMU guest agent is not connected']
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.advertise import (
    ADDRESS_SOURCES,
    AdvertiseError,
    discover_addresses,
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
        sources=dict(type='list', elements='str', choices=list(ADDRESS_SOURCES), default=list(ADDRESS_SOURCES)),
        require=dict(type='bool', default=False),
    )
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    require_libvirt(module)
    start_event_loop()   # keepalive: a libvirtd that stops answering ends the call, not the module
    with libvirt_session(module, errors=(AdvertiseError,)) as cache:
        client = cache.get(p['uri'])
        dom = client.lookup(p['domain'])
        if dom is None or not dom.isActive():
            module.fail_json(msg='%s does not run on %s' % (p['domain'], client.uri))
        interfaces, notes = discover_addresses(client, dom, p['sources'], module.run_command)
    if p['require'] and not any(i['ipv4'] or i['ipv6'] for i in interfaces):
        module.fail_json(msg='no address of %s found (%s)' % (p['domain'], '; '.join(notes) or ', '.join(p['sources'])),
                         interfaces=interfaces, notes=notes)
    module.exit_json(changed=False, interfaces=interfaces, notes=notes)


if __name__ == '__main__':
    main()
