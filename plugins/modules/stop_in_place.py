#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: stop_in_place
short_description: Shut VMs down on their own hypervisor before its maintenance, and start them again there after it
version_added: 0.1.0
description:
  - For the VMs a maintenance cannot move away (a local disk that may not be copied, a passthrough device, a CPU only
    their host runs) and those an operator chooses to stop rather than move. The rolling_maintenance role uses it
    for its stop-in-place policy (C(rolling_maintenance_unplaceable=stop_in_place),
    C(rolling_maintenance_stop_in_place_vms)).
  - O(state=stopped) presses every VM's ACPI power button at once, and again every 5 s (an early press can be lost),
    until each is off or O(shutdown_timeout_s) passed. A guest still running then is powered off only with
    O(force); without it, the VMs this task stopped are started again - the host is left as it was - and the task
    fails naming the guest.
  - A VM set to start with its host (libvirt's autostart) has that turned off while it is stopped in place - libvirt
    would start it as the host comes back from its maintenance, before its health gate and out of order - and the
    result says so (C(autostart)); O(restore_autostart) turns it on again once the VM is back.
  - O(state=running) starts the VMs one after another in the order of O(domains), each waited for until it runs
    and, when O(verify_addresses_by_vm) names addresses for it, until they answer an ICMP echo from this host. A VM
    that does not come back does not keep the others down - all are started - and the task then fails naming it.
  - Refused before anything changes - a VM not defined on the host, a transient VM (libvirt forgets it once it is
    stopped - it could never be started again), a VM named twice, and with O(refuse_others) any other VM still
    running on the host.
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
      - Checks every refusal and says which VMs would be stopped or started; changes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A VM already stopped (O(state=stopped)) or running (O(state=running)) is left as it is; a second run changes
        nothing.
seealso:
  - module: vmmigration.libvirt.rolling_record
  - module: vmmigration.libvirt.cold_migrate
options:
  domains:
    description: The VMs, by name, on this host (O(state=running) starts them in this order).
    type: list
    elements: str
    required: true
  state:
    description: V(stopped) shuts them down gracefully; V(running) starts them again.
    type: str
    choices: [stopped, running]
    required: true
  shutdown_timeout_s:
    description: Seconds each guest is given to shut down cleanly (O(state=stopped)).
    type: float
    default: 120
  force:
    description: Power off a guest still running after O(shutdown_timeout_s) (as pulling its plug) instead of failing.
    type: bool
    default: false
  refuse_others:
    description:
      - With O(state=stopped), refuse - before anything stops - while a VM not in O(domains) runs on the host (after a
        drain, only the VMs to stop in place should be left).
    type: bool
    default: false
  start_timeout_s:
    description:
      - Seconds each VM is given, from its start, to run and, with O(verify_addresses_by_vm), to answer (O(state=running)).
    type: float
    default: 300
  restore_autostart:
    description:
      - With O(state=running), the VMs whose autostart the stop turned off (their C(autostart) result) - turned on again
        once each is back (a VM that does not come back keeps it off).
    type: list
    elements: str
    default: []
  peers:
    description:
      - With O(state=running), the libvirt URIs of the other hypervisors that could run these VMs (the rolling_maintenance
        role gives the rest of its group). A VM running on one of them - a domain with its UUID, started there by hand
        or by another tool during the maintenance - is not started here (never two copies of one guest on one disk),
        and the task fails naming it. A peer that cannot be asked is said in the VM's C(unasked) and as a warning.
    type: list
    elements: str
    default: []
  verify_addresses_by_vm:
    description:
      - Addresses per VM (VM name - list of addresses) that must answer an ICMP echo from this host before the VM counts
        as back and the next one starts. Needs root on the host (raw sockets).
    type: dict
    default: {}
'''

EXAMPLES = r'''
- name: Before hv1's maintenance, stop the VMs that stay on it (nothing else may run there by now)
  vmmigration.libvirt.stop_in_place:
    domains: [db01, licence01]
    state: stopped
    refuse_others: true
  delegate_to: hv1
  become: true
  register: stopped

- name: After its health gate, start them again - the database first, each waited for until it answers
  vmmigration.libvirt.stop_in_place:
    domains: [db01, licence01]
    state: running
    verify_addresses_by_vm:
      db01: [192.0.2.21]
  delegate_to: hv1
  become: true
'''

RETURN = r'''
results:
  description: One entry per VM, in the order of O(domains).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The VM.
      type: str
      sample: db01
    state:
      description:
        - V(stopped), V(already_stopped), V(would_stop) (check mode), V(started_again) (stopped, then started again
          because another guest would not stop), V(did_not_stop) (that guest), V(not_stopped) (refused) for
          O(state=stopped);
          V(started), V(already_running), V(would_start), V(failed) for O(state=running).
      type: str
      sample: stopped
    autostart:
      description: Its autostart was on - turned off by the stop (O(state=stopped)), on again (O(state=running)).
      type: bool
      sample: true
    how:
      description: V(clean) (the guest shut itself down) or V(forced) (powered off after O(shutdown_timeout_s)).
      type: str
      sample: clean
    stopped_at:
      description: When the guest was seen off (seconds since the epoch, this host's clock).
      type: float
      sample: 1764896400.5
    shutdown_s:
      description: Seconds from the first press to the guest seen off.
      type: float
      sample: 4.5
    started_at:
      description: When its start was asked (seconds since the epoch).
      type: float
      sample: 1764896520.0
    running_at:
      description: When libvirt reported it running.
      type: float
      sample: 1764896520.4
    answered_at:
      description: When every address of O(verify_addresses_by_vm) had answered.
      type: float
      sample: 1764896531.2
    boot_s:
      description: Seconds from its start to running - to answering when addresses were given.
      type: float
      sample: 11.2
    unasked:
      description: The O(peers) that could not be asked whether they run it (URI - why).
      type: list
      elements: str
      sample: ['qemu+tls://hv3/system: cannot connect to libvirt at qemu+tls://hv3/system']
    error:
      description: Why it did not come back (V(failed)).
      type: str
      sample: runs, but 192.0.2.21 did not answer within 300 s of its start
'''

import ipaddress

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines import power as POWER
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.advertise import AdvertiseError, wait_reachable
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    CONNECTION_ARGSPEC,
    libvirt_session,
    require_libvirt,
    start_event_loop,
)


def probe(addresses, timeout_s):
    try:
        return wait_reachable(addresses, timeout_s)
    except AdvertiseError as e:
        raise POWER.PowerError(str(e))


def main():
    argument_spec = dict(
        domains=dict(type='list', elements='str', required=True),
        state=dict(type='str', choices=['stopped', 'running'], required=True),
        shutdown_timeout_s=dict(type='float', default=120),
        force=dict(type='bool', default=False),
        refuse_others=dict(type='bool', default=False),
        start_timeout_s=dict(type='float', default=300),
        verify_addresses_by_vm=dict(type='dict', default={}),
        peers=dict(type='list', elements='str', default=[]),
        restore_autostart=dict(type='list', elements='str', default=[]),
    )
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    bad = [name for name, addresses in p['verify_addresses_by_vm'].items() if not isinstance(addresses, list)]
    if bad:
        module.fail_json(msg='verify_addresses_by_vm: a list of addresses per VM (not for %s); nothing was changed'
                         % ', '.join(sorted(bad)))
    for name, addresses in sorted(p['verify_addresses_by_vm'].items()):
        for a in addresses:
            try:
                ipaddress.ip_address(str(a))
            except ValueError:
                module.fail_json(msg='verify_addresses_by_vm: %r of %s is not an IP address; nothing was changed'
                                 % (a, name))
    for name, value in (('shutdown_timeout_s', p['shutdown_timeout_s']), ('start_timeout_s', p['start_timeout_s'])):
        if value <= 0:
            module.fail_json(msg='%s must be more than 0 (got %s); nothing was changed' % (name, value))
    require_libvirt(module)
    start_event_loop()   # keepalive: a libvirtd that stops answering ends the call, not the module
    with libvirt_session(module, errors=(POWER.PowerError,)) as cache:
        client = cache.get(p['uri'])
        if p['state'] == 'stopped':
            results = POWER.stop(client, p['domains'], p['shutdown_timeout_s'], p['force'], module.check_mode,
                                 refuse_others=p['refuse_others'])
            changed = any(r['state'] in ('stopped', 'would_stop') for r in results)
        else:
            results = POWER.start(client, p['domains'], p['start_timeout_s'], p['verify_addresses_by_vm'],
                                  module.check_mode, probe=probe, peers=[cache.get(u) for u in p['peers']],
                                  restore_autostart=p['restore_autostart'])
            changed = any(r['state'] in ('started', 'would_start') for r in results)
            for r in results:
                if r.get('unasked'):
                    module.warn('%s: not asked whether it runs elsewhere - %s' % (r['name'], '; '.join(r['unasked'])))
    module.exit_json(changed=changed, results=results)


if __name__ == '__main__':
    main()
