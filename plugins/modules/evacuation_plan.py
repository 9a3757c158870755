#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

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
  - vmmigration.libvirt.connection.retries
  - vmmigration.libvirt.attributes
  - vmmigration.libvirt.attributes.info_module
  - vmmigration.libvirt.evacuation
seealso:
  - module: vmmigration.libvirt.evacuate
  - module: vmmigration.libvirt.migration_check
options:
  copy_storage:
    description:
      - The drain's O(vmmigration.libvirt.migrate#module:copy_storage). With V(none) a VM whose disks are not proven
        shared is not planned to move live (it could only move cold, or not at all); any other value lets the plan
        copy them.
    type: str
    choices: [auto, all, incremental, none]
    default: auto
  plan:
    description:
      - A plan made earlier (RV(plan)) to look at again instead of planning anew - only what can have changed
        since is read (each VM still running with the same UUID; each destination reachable, its free memory,
        a domain of the same name or UUID there; VMs started since), as M(vmmigration.libvirt.evacuate) does
        before it runs it. No check and no storage probe runs again.
      - Refused when it is of another version, for another host, or made with another O(non_live_policy).
    type: dict
'''

EXAMPLES = r'''
- name: Plan the drain of hv1 onto hv2 and hv3
  vmmigration.libvirt.evacuation_plan:
    destinations:
      - {name: hv2, uri: qemu+tls://hv2.example.com/system}
      - {name: hv3, uri: qemu+tls://hv3.example.com/system}
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
  description: VMs that stay, with the reason (no destination can take them, or only cold and O(non_live_policy) is not V(cold)).
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
plan:
  description:
    - The whole plan as one versioned object (the fields above, each move with the VM's UUID and its disks'
      storage verdicts, the source host's UUID, whether cold moves were planned and the headroom), for
      M(vmmigration.libvirt.evacuate)'s O(vmmigration.libvirt.evacuate#module:plan) - the plan that is approved is
      the plan that runs.
  returned: always
  type: dict
changes:
  description: With O(plan), what changed since it was approved, one line per VM (each such VM stays).
  returned: always
  type: list
  elements: str
lines:
  description: The plan as readable lines.
  returned: always
  type: list
  elements: str
  sample: ['plan: 1 to move, 0 left, predicted 2.3 s', '  web01 -> hv2 (live, 256 MiB): 0.0-2.3 s']
elapsed_s:
  description: Seconds the planning took.
  returned: always
  type: float
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    CONNECTION_ARGSPEC,
    libvirt_session,
    require_libvirt,
    start_event_loop,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration.report import plan_lines
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.drain_plan import (
    PLAN_ARGSPEC,
    check_approved,
    plan_evacuation,
    validate_plan_options,
)


def main():
    argument_spec = dict(plan=dict(type='dict'),
                         copy_storage=dict(type='str', choices=['auto', 'all', 'incremental', 'none'], default='auto'))
    argument_spec.update(PLAN_ARGSPEC)
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    require_libvirt(module)
    problems = validate_plan_options(p)
    if problems:
        module.fail_json(msg='; '.join(problems))
    started = time.monotonic()
    changes = []
    start_event_loop()   # keepalive: a libvirtd that stops answering ends the call, not the module
    with libvirt_session(module) as cache:
        if p['plan']:
            result, changes = check_approved(cache, p, p['plan'], p['non_live_policy'])
        else:
            result = plan_evacuation(cache, dict(p, allow_cold=p['non_live_policy'] == 'cold'))
    result['plan'] = dict(result)
    result['changes'] = changes
    result['elapsed_s'] = round(time.monotonic() - started, 3)
    result['lines'] = plan_lines(result) + ['  changed since the plan was approved - %s' % c for c in changes]
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
