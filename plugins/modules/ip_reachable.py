#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: ip_reachable
short_description: Wait until a moved VM's addresses answer from a vantage point, and measure how long the network took
version_added: 0.1.0
description:
  - Run on a vantage point (C(delegate_to) a host in the VM's network, or beyond its router) after a
    migration and M(vmmigration.libvirt.ip_advertise). Sends ICMP / ICMPv6 echo requests to every
    address every O(interval_ms) until each has answered, and returns the time to the first reply.
  - With O(expect_mac), also checks that this host's neighbour entry for each address now holds that
    link-layer address (the VM's MAC on flat L2; the answering router or hypervisor's MAC in routed designs).
  - A timeout is a failure that names the addresses still silent.
  - Raw ICMP sockets need root. Changes nothing.
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.attributes
  - vmmigration.libvirt.attributes.info_module
seealso:
  - module: vmmigration.libvirt.domain_addresses
  - module: vmmigration.libvirt.ip_advertise
options:
  addresses:
    description: IPv4 and IPv6 addresses to probe.
    type: list
    elements: str
    required: true
  timeout_s:
    description: Give up (and fail) after this many seconds.
    type: float
    default: 30
  interval_ms:
    description: Milliseconds between echo requests to an address not answered yet.
    type: int
    default: 50
  since:
    description:
      - An epoch time (for example when the migration ended, RV(vmmigration.libvirt.migrate#module:running_on_destination_at)),
        to report the time to convergence from then as well. Meaningful when this host's clock agrees with it.
    type: float
  expect_mac:
    description: The link-layer address this host's neighbour entries for the addresses must hold after the replies.
    type: str
'''

EXAMPLES = r'''
- name: Check from the router side that web01 answers at its new home
  vmmigration.libvirt.ip_reachable:
    addresses: [192.0.2.10, '2001:db8::10']
    timeout_s: 10
  delegate_to: monitor01
  register: reach

- name: Report the time to convergence
  ansible.builtin.debug:
    msg: "web01 answered after {{ reach.converged_s }} s"
'''

RETURN = r'''
first_reply_s:
  description: Seconds from the module's start to each address's first reply (null - no reply).
  returned: always
  type: dict
  sample: {192.0.2.10: 0.004, '2001:db8::10': 0.006}
converged_s:
  description: Seconds until every address had answered.
  returned: when all answered
  type: float
  sample: 0.006
since_s:
  description: Seconds from O(since) until every address had answered.
  returned: when O(since) is given and all answered
  type: float
neighbours:
  description: This host's neighbour entry (link-layer address) for each address after the probes.
  returned: always
  type: dict
'''

import ipaddress
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.advertise import (
    AdvertiseError,
    mac_bytes,
    neighbour_macs,
    wait_reachable,
)


def main():
    module = AnsibleModule(argument_spec=dict(
        addresses=dict(type='list', elements='str', required=True),
        timeout_s=dict(type='float', default=30),
        interval_ms=dict(type='int', default=50),
        since=dict(type='float'),
        expect_mac=dict(type='str'),
    ), supports_check_mode=True)
    p = module.params
    problems = []
    for a in p['addresses']:
        try:
            ipaddress.ip_address(a)
        except ValueError:
            problems.append('not an IP address: %s' % a)
    if not p['addresses']:
        problems.append('addresses is empty')
    if p['timeout_s'] <= 0 or p['interval_ms'] <= 0:
        problems.append('timeout_s and interval_ms must be greater than 0')
    if p['expect_mac']:
        try:
            mac_bytes(p['expect_mac'])
        except AdvertiseError as e:
            problems.append(str(e))
    if problems:
        module.fail_json(msg='; '.join(problems))
    started = time.time()
    try:
        first = wait_reachable(p['addresses'], p['timeout_s'], p['interval_ms'] / 1000.0)
    except AdvertiseError as e:
        module.fail_json(msg=str(e))
    try:
        table = neighbour_macs(module.run_command)
    except AdvertiseError as e:
        module.fail_json(msg=str(e))
    neighbours = dict((a, table.get(str(ipaddress.ip_address(a)))) for a in first)
    result = {'changed': False, 'first_reply_s': first, 'neighbours': neighbours}
    silent = sorted(a for a, t in first.items() if t is None)
    if silent:
        module.fail_json(msg='no reply within %s s from %s' % (p['timeout_s'], ', '.join(silent)), **result)
    result['converged_s'] = max(first.values())
    if p['since'] is not None:
        result['since_s'] = round(started + result['converged_s'] - p['since'], 3)
    if p['expect_mac']:
        want = p['expect_mac'].lower()
        wrong = sorted('%s at %s' % (a, m) for a, m in neighbours.items() if m != want)
        if wrong:
            module.fail_json(msg='answered, but not from %s: %s' % (want, ', '.join(wrong)), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
