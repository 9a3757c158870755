#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: migration_check
short_description: Check whether, and how, domains can move to a destination hypervisor
version_added: 0.1.0
description:
  - For each domain in O(domains) on the source hypervisor (O(uri)) and one destination
    (O(dest_uri)), runs every pre-migration check and reports, per check, V(pass), V(warn) or
    V(fail) with a reason, an overall verdict, and the recommended way to move it.
  - "Checks: destination reachable; destination is not the source (host UUID); domain type
    supported (a V(kvm) guest needs KVM on the destination, V(qemu) and V(kvm) are otherwise alike);
    CPU compatible (libvirt's hypervisor CPU comparison on the destination against the guest's CPU
    definition); machine type supported; destination libvirt and QEMU not older than the source;
    enough free memory after O(headroom_mib) and O(planned_memory_mib); no name or UUID
    collision; every bridge and network the interfaces use exists on the destination; no device
    that blocks live migration; every disk proven shared (see M(vmmigration.libvirt.shared_storage))
    or planned for copy; cache modes safe for live migration."
  - "Recommended ways: V(live) (all storage shared), V(live_copy_storage) (some disks copied
    during the live migration), V(offline) (a stopped domain on shared storage: move the
    definition), V(cold) (shut down and copy; also when only live migration is ruled out),
    V(none) (cannot move there), V(already_there) (gone from the source, running on the destination)."
  - Changes nothing on any host. The shared-storage probe writes a marker file next to file-backed
    disks and removes it again, also when it fails; set O(probe_storage=false) to skip it.
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.connection
  - vmmigration.libvirt.connection.retries
  - vmmigration.libvirt.transport
  - vmmigration.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode runs the same checks.
  diff_mode:
    support: none
  idempotent:
    support: full
seealso:
  - module: vmmigration.libvirt.migrate
  - module: vmmigration.libvirt.cold_migrate
  - module: vmmigration.libvirt.host_info
options:
  dest_uri:
    description:
      - libvirt URI of the destination hypervisor, as reached from where the module runs
        (for example V(qemu+tls://hv2/system) or V(qemu+ssh://root@hv2/system)).
    type: str
    required: true
  domains:
    description:
      - Names of the domains to check, on the source.
    type: list
    elements: str
    required: true
  headroom_mib:
    description:
      - Memory in MiB to keep free on the destination for its own use.
    type: int
    default: 1024
  planned_memory_mib:
    description:
      - Memory in MiB already promised to other migrations onto this destination. Domains checked in
        the same call count too - each one that can move adds its memory for the next.
    type: int
    default: 0
  allow_storage_copy:
    description:
      - Whether disks that are not proven shared may be copied during a live migration. When V(false),
        such disks rule out live migration (a cold migration is recommended instead).
    type: bool
    default: true
  probe_storage:
    description:
      - Prove shared storage with markers (see M(vmmigration.libvirt.shared_storage)). When V(false),
        every disk counts as not proven shared.
    type: bool
    default: true
  dest_security:
    description:
      - The destination's RV(vmmigration.libvirt.host_info#module:transport_security) (gathered on it). Without it the
        destination's side is checked by libvirt when the move starts.
    type: dict
  fail_on:
    description:
      - V(fail) - the task fails when any domain's verdict is V(fail).
      - V(warn) - it fails on V(warn) too.
      - V(never) - it never fails for a verdict (bad input and unreachable source still fail).
    type: str
    choices: [fail, warn, never]
    default: fail
'''

EXAMPLES = r'''
- name: Can web01 and db01 move from this hypervisor to hv2?
  vmmigration.libvirt.migration_check:
    dest_uri: qemu+tls://hv2.example.com/system
    domains: [web01, db01]
    headroom_mib: 4096
    fail_on: never
  register: check

- name: Show why a domain cannot move
  ansible.builtin.debug:
    msg: "{{ item.name }} -> {{ item.recommended }}: {{ item.checks | selectattr('status', 'ne', 'pass') | map(attribute='reason') | list }}"
  loop: "{{ check.domains }}"
  loop_control:
    label: "{{ item.name }}"
'''

RETURN = r'''
domains:
  description: One report per domain, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Domain name., type: str, returned: always, sample: web01}
    verdict: {description: Worst status of its checks., type: str, returned: always, sample: pass}
    recommended:
      description: How to move it - live, live_copy_storage, offline, cold, none or already_there.
      type: str
      returned: always
      sample: live
    active: {description: Whether the domain runs., type: bool, returned: always}
    memory_mib: {description: Memory the destination must provide., type: int, returned: always, sample: 4096}
    checks:
      description: Each check - check, status, reason, blocks (V(live) or V(all)).
      type: list
      elements: dict
      returned: always
      sample: [{check: not_same_host, status: pass, reason: host UUIDs differ, blocks: all}]
    storage:
      description: Shared-storage findings per disk target - verdict, method, reason.
      type: dict
      returned: always
transport:
  description: How the moves would travel - tls, encrypted, transport, why, and refused (what to configure) or null.
  returned: always
  type: dict
verdict:
  description: Worst verdict over all domains.
  returned: always
  type: str
  sample: warn
elapsed_s:
  description: Seconds the checks took, connections included.
  returned: always
  type: float
  sample: 0.21
source:
  description: Source host facts (as M(vmmigration.libvirt.host_info) returns them, without domains).
  returned: always
  type: dict
destination:
  description: Destination host facts, or null when it could not be reached.
  returned: always
  type: dict
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.checks import FAIL, PASS, WARN, overall
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    CONNECTION_ARGSPEC,
    libvirt_session,
    require_libvirt,
    start_event_loop,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.check_run import check_domains
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.transport import (
    TRANSPORT_ARGSPEC,
    connection_transport,
    host_security,
    normalize_mode,
    plan_transport,
    redact_uri,
)


def main():
    argument_spec = dict(
        dest_uri=dict(type='str', required=True),
        domains=dict(type='list', elements='str', required=True),
        headroom_mib=dict(type='int', default=1024),
        planned_memory_mib=dict(type='int', default=0),
        allow_storage_copy=dict(type='bool', default=True),
        probe_storage=dict(type='bool', default=True),
        fail_on=dict(type='str', choices=['fail', 'warn', 'never'], default='fail'),
        dest_security=dict(type='dict'),
    )
    argument_spec.update(TRANSPORT_ARGSPEC)
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    require_libvirt(module)
    if not p['domains']:
        module.fail_json(msg='domains must name at least one domain')
    if p['headroom_mib'] < 0 or p['planned_memory_mib'] < 0:
        module.fail_json(msg='headroom_mib and planned_memory_mib must not be negative')
    try:
        normalize_mode(p['tls'])
    except ValueError as e:
        module.fail_json(msg=str(e))
    source = host_security() if connection_transport(p['uri']) == 'local' else None
    transport = plan_transport(p['tls'], p['allow_plaintext'], source, p['dest_security'],
                               src_label='the source %s' % redact_uri(p['uri']),
                               dest_label='the destination %s' % redact_uri(p['dest_uri']))
    started = time.monotonic()
    start_event_loop()   # keepalive: a libvirtd that stops answering ends the call, not the module
    with libvirt_session(module) as cache:
        src = cache.get(p['uri'])
        dst = cache.get(p['dest_uri'])
        src.host_uuid()  # the source must answer before anything else
        report = check_domains(src, dst, p['domains'], reserve_mib=p['headroom_mib'],
                               planned_mib=p['planned_memory_mib'], allow_storage_copy=p['allow_storage_copy'],
                               probe_storage=p['probe_storage'])
    for d in (d for d in report['domains'] if d['recommended'] != 'already_there'):
        d['checks'].append({'check': 'transport', 'status': FAIL if transport['refused'] else PASS,
                            'reason': transport['refused'] or transport['why'], 'blocks': 'live'})
        d['verdict'] = overall(d['checks'])
    worst = overall([{'status': d['verdict']} for d in report['domains']])
    result = dict(changed=False, verdict=worst, elapsed_s=round(time.monotonic() - started, 3), transport=transport,
                  **report)
    bad = [d for d in report['domains'] if d['verdict'] == FAIL or (p['fail_on'] == 'warn' and d['verdict'] == WARN)]
    if p['fail_on'] != 'never' and bad:
        reasons = ['%s: %s' % (d['name'], '; '.join(c['reason'] for c in d['checks'] if c['status'] != 'pass'))
                   for d in bad]
        module.fail_json(msg='migration check %s: %s' % (worst, ' | '.join(reasons)), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
