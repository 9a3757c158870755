#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

DOCUMENTATION = r'''
---
module: evacuation_plan
short_description: Plan the drain of a hypervisor - which VM goes where, how, in which order, and why not elsewhere
version_added: 0.1.0
description:
  - Checks every VM of the source hypervisor (O(uri)) against every candidate destination (all of
    M(vmmigration.libvirt.migration_check)'s checks, shared storage proven), then places them -
    operator pins first, then the largest VMs first on the allowed destination with the most free
    memory left, keeping O(headroom_mib) free and never two VMs of one anti-affinity group on one host -
    and orders them longest first under the concurrency limits, predicting each migration's time.
  - Returns, per VM, the destination, the method (live, live_copy_storage, offline, cold), predicted
    start and end, and for every destination refused, the reason; VMs that cannot move anywhere are
    listed with their reasons.
  - Read-only (the shared-storage probe's markers are removed again).
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.connection
  - vmmigration.libvirt.attributes
  - vmmigration.libvirt.attributes.info_module
options:
  destinations:
    description: Candidate destinations - a name (inventory host) and the libvirt URI reaching it from where the module runs.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the destination.
        type: str
        required: true
      uri:
        description: libvirt URI of the destination.
        type: str
        required: true
  domains:
    description: Domains to move. Default - every active domain of the source.
    type: list
    elements: str
  headroom_mib:
    description: Memory to keep free on every destination.
    type: int
    default: 1024
  anti_affinity:
    description: Groups of VMs that must not share a host - a mapping of group name to VM names.
    type: dict
    default: {}
  pinned:
    description: Operator-chosen destinations - a mapping of VM name to destination name.
    type: dict
    default: {}
  allow_cold:
    description: Plan a cold migration for VMs that cannot move live (otherwise they are left, with the reason).
    type: bool
    default: false
  rate_mibps:
    description: Expected transfer rate of one migration, for the time prediction.
    type: int
    default: 1000
  max_outbound:
    description: Migrations out of the source at once.
    type: int
    default: 2
  max_inbound:
    description: Migrations into one destination at once.
    type: int
    default: 2
  max_total:
    description: Migrations at once overall.
    type: int
    default: 4
'''

EXAMPLES = r'''
- name: Plan the drain of hv1 onto hv2 and hv3
  vmmigration.libvirt.evacuation_plan:
    destinations:
      - {name: hv2, uri: qemu+tcp://hv2.example.com/system}
      - {name: hv3, uri: qemu+tcp://hv3.example.com/system}
    anti_affinity:
      db: [db01, db02]
    headroom_mib: 8192
  register: plan
'''

RETURN = r'''
moves:
  description: One entry per VM that will move - name, destination, method, memory_mib, start_s and end_s (predicted).
  returned: always
  type: list
  elements: dict
left:
  description: VMs that stay, with the reason (no destination can take them, or only cold and allow_cold is false).
  returned: always
  type: dict
refused:
  description: Per VM, per destination that cannot take it, the reasons.
  returned: always
  type: dict
predicted_total_s:
  description: Predicted duration of the whole drain.
  returned: always
  type: float
free_after_mib:
  description: Predicted free memory per destination after the drain.
  returned: always
  type: dict
elapsed_s:
  description: Seconds the planning took.
  returned: always
  type: float
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils._client import (
    CONNECTION_ARGSPEC,
    libvirt_session,
    require_libvirt,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils._evacuation import plan_evacuation


def main():
    argument_spec = dict(
        destinations=dict(type='list', elements='dict', required=True, options=dict(
            name=dict(type='str', required=True), uri=dict(type='str', required=True))),
        domains=dict(type='list', elements='str'),
        headroom_mib=dict(type='int', default=1024),
        anti_affinity=dict(type='dict', default={}),
        pinned=dict(type='dict', default={}),
        allow_cold=dict(type='bool', default=False),
        rate_mibps=dict(type='int', default=1000),
        max_outbound=dict(type='int', default=2),
        max_inbound=dict(type='int', default=2),
        max_total=dict(type='int', default=4),
    )
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    require_libvirt(module)
    bad = [k for k in ('rate_mibps', 'max_outbound', 'max_inbound', 'max_total') if p[k] < 1]
    if bad or p['headroom_mib'] < 0:
        module.fail_json(msg='%s must be at least 1 and headroom_mib not negative' % ', '.join(bad or ['-']))
    names = [d['name'] for d in p['destinations']]
    unknown = [d for d in p['pinned'].values() if d not in names]
    if unknown:
        module.fail_json(msg='pinned to hosts that are not destinations: %s' % ', '.join(sorted(set(unknown))))
    started = time.monotonic()
    with libvirt_session(module) as cache:
        result = plan_evacuation(cache, p)
    result['elapsed_s'] = round(time.monotonic() - started, 3)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
