#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: cpu_baseline
short_description: The CPU every host of a group can provide, which VMs are within it, and set VMs to it
version_added: 0.1.0
description:
  - For a group of hypervisors of mixed CPU generations (what vSphere calls EVC, oVirt a cluster CPU type) - reads
    each host's domain capabilities (the CPU it offers guests), and has libvirt compute the baseline, the CPU model and
    features every host of the group can run (libvirt's hypervisor CPU baseline, migratable features only).
  - Reports per VM (every domain defined on the hosts, or O(domains)) whether its CPU is within the baseline; for those
    that are not, the features beyond it and the hosts that can run the VM - a VM only the newest hosts can run is
    stranded there (a drain of such a host has nowhere to put it). A running VM is judged by the CPU it runs with
    (libvirt has expanded a host-model CPU there); C(host-passthrough) and C(maximum) VMs see their host's own CPU.
  - With O(set_baseline), sets those VMs' persistent CPU definition to the baseline (custom model, the baseline's
    vendor and features; topology and NUMA kept). It takes effect at the VM's next cold boot (a running VM keeps its
    CPU until then); check mode and diff mode show the change of the C(<cpu>) element; a VM already set changes nothing.
  - All hosts must be of one CPU vendor (no model runs on both Intel and AMD); the module fails naming each otherwise.
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.connection.retries
  - vmmigration.libvirt.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The C(<cpu>) element of each VM set to the baseline, before and after.
  idempotent:
    support: full
options:
  hosts:
    description:
      - The group's hosts, each with its C(name) and the C(uri) to reach its libvirt. The baseline is computed on the
        first host's libvirt; each host's and VM's CPU is expanded on its own host's.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The host's name in the results.
        type: str
        required: true
      uri:
        description: Its libvirt URI.
        type: str
        required: true
  domains:
    description: Only these VMs (by name, on whichever host defines them). Default - every domain defined on the hosts.
    type: list
    elements: str
  set_baseline:
    description: Set these VMs' persistent CPU definition to the baseline (effective at their next cold boot).
    type: list
    elements: str
    default: []
  virt_type:
    description:
      - The hypervisor type whose CPUs to compare (V(kvm) on real hosts). Default - the type the VMs judged run as,
        when they all share one (QEMU's emulator offers other CPU features than KVM); else what libvirt offers by
        default on the first host (kvm where the host can run it, else qemu).
    type: str
    choices: [kvm, qemu]
  migratable:
    description: Leave out the features that cannot migrate (libvirt's migratable baseline).
    type: bool
    default: true
seealso:
  - module: vmmigration.libvirt.migration_check
  - module: vmmigration.libvirt.evacuation_plan
'''

EXAMPLES = r'''
- name: The hypervisors, each with its libvirt URI
  ansible.builtin.set_fact:
    cpu_hosts: "{{ cpu_hosts | default([]) + [{'name': item, 'uri': 'qemu+tls://' ~ hostvars[item].ansible_host ~ '/system'}] }}"
  loop: "{{ groups['hypervisors'] }}"
  run_once: true

- name: The CPU the cluster can run, and which VMs would be stranded on the newest hosts
  vmmigration.libvirt.cpu_baseline:
    hosts: "{{ cpu_hosts }}"
  register: cpu
  run_once: true

- name: Two VMs set to the baseline (from their next cold boot), the change shown
  vmmigration.libvirt.cpu_baseline:
    hosts: "{{ cpu_hosts }}"
    set_baseline: [web01, db01]
  diff: true
  run_once: true
'''

RETURN = r'''
baseline:
  description:
    - The CPU every host can run - C(model), C(vendor), C(features) (the full set behind it), C(extra) (features named on
      top of the model), C(disabled), C(dropped) (features some host has that the baselining libvirt does not know -
      none of them in the baseline), C(not_provided) (features the baseline's model names that a host's hypervisor
      cannot provide, with the hosts - disabled in the baseline, so that every host runs it), C(xml) (libvirt's
      baseline before that check).
  returned: always
  type: dict
  sample: {model: Haswell-noTSX, vendor: Intel, extra: [abm, f16c], disabled: [], dropped: []}
hosts:
  description: Per host - C(model) and C(vendor) it offers guests, C(features) (how many), C(beyond_baseline) (its features the baseline lacks).
  returned: always
  type: dict
domains:
  description:
    - One entry per VM - C(name), C(host), C(active), C(mode) (custom, host-model, host-passthrough, maximum, or null for
      the hypervisor's default), C(model), C(fits) (within the baseline), C(missing) (features beyond it),
      C(can_run_on) (hosts that can run it), C(stranded) (fewer hosts than the group), C(why), and C(set) (set to the
      baseline by this run, or would be in check mode).
  returned: always
  type: list
  elements: dict
stranded:
  description: Names of the VMs that not every host of the group can run.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import cpu as C
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    RETRY_ARGSPEC,
    LibvirtClientError,
    libvirt_session,
    require_libvirt,
    start_event_loop,
)


def caller(client, host):
    """CALL(xmls, flags) for cpu: libvirt's hypervisor CPU baseline on CLIENT for HOST's hypervisor (its emulator,
    arch, machine, type), or the plain CPU-map baseline where the driver has no hypervisor baseline."""
    def call(xmls, flags):
        try:
            return client.call('cannot baseline the CPUs on %s' % host['name'], client.conn.baselineHypervisorCPU,
                               host['emulator'], host['arch'], host['machine'], host['virttype'], xmls, flags)
        except LibvirtClientError as e:
            if not driver.is_error(e, 'no_support'):
                raise
        return client.call('cannot baseline the CPUs on %s' % host['name'], client.conn.baselineCPU, xmls,
                           flags & ~C.MIGRATABLE)
    return call


def comparer(client, host):
    """COMPARE(xml) for cpu.runnable_everywhere: libvirt's hypervisor CPU comparison on HOST, failing when its
    hypervisor cannot run the guest CPU (a driver without the comparison accepts it unchecked)."""
    def compare(xml):
        try:
            client.call('%s cannot run the baseline CPU' % host['name'], client.conn.compareHypervisorCPU,
                        host['emulator'], host['arch'], host['machine'], host['virttype'], xml,
                        C.COMPARE_FAIL_INCOMPATIBLE)
        except LibvirtClientError as e:
            if not driver.is_error(e, 'no_support'):
                raise
    return compare


def main():
    argument_spec = dict(
        hosts=dict(type='list', elements='dict', required=True,
                   options=dict(name=dict(type='str', required=True), uri=dict(type='str', required=True))),
        domains=dict(type='list', elements='str'),
        set_baseline=dict(type='list', elements='str', default=[]),
        virt_type=dict(type='str', choices=['kvm', 'qemu']),
        migratable=dict(type='bool', default=True),
    )
    argument_spec.update(RETRY_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    require_libvirt(module)
    names = [h['name'] for h in p['hosts']]
    if not names or len(set(names)) != len(names):
        module.fail_json(msg='hosts: give each host once, by a distinct name (got %s)' % ', '.join(names))
    result = {'changed': False, 'baseline': None, 'hosts': {}, 'domains': [], 'stranded': []}
    diff = {'before': '', 'after': ''}
    start_event_loop()   # keepalive: a libvirtd that stops answering ends the call, not the module
    with libvirt_session(module, errors=(C.CpuError,)) as cache:
        clients = dict((h['name'], cache.get(h['uri'])) for h in p['hosts'])
        # the VMs to judge, each by the definition that runs (the live one for a running VM)
        listing, seen = [], set()
        for n in names:
            c = clients[n]
            for dom in c.call('cannot list the domains of %s' % n, c.conn.listAllDomains, 0):
                name = dom.name()
                if (p['domains'] and name not in p['domains']) or name in seen:
                    continue
                seen.add(name)
                active = bool(dom.isActive())
                listing.append((n, dom, name, active, driver.definition(dom, inactive=not active)))
        virt_type = p['virt_type'] or C.domain_type([x[4] for x in listing])
        offers = {}
        for h in p['hosts']:
            c = clients[h['name']]
            caps = c.call('cannot read the domain capabilities of %s' % h['name'], c.conn.getDomainCapabilities,
                          None, None, None, virt_type, 0)
            offers[h['name']] = C.host_cpu(caps, h['name'])
        first = offers[names[0]]
        base = C.baseline(caller(clients[names[0]], first), [offers[n] for n in names],
                          migratable=p['migratable'])
        # every host's hypervisor must accept it as a guest CPU (an emulator can lack a feature its model names)
        base = C.runnable_everywhere(base, dict((n, comparer(clients[n], offers[n])) for n in names))
        result['baseline'] = base
        feats = {}
        for n in names:
            feats[n] = C.host_features(caller(clients[n], offers[n]), offers[n])
            result['hosts'][n] = {'model': offers[n]['model'], 'vendor': offers[n]['vendor'], 'features': len(feats[n]),
                                  'beyond_baseline': sorted(feats[n] - set(base['features']))}
        to_set = []
        for n, dom, name, active, xml in listing:
            c = clients[n]
            cpu = C.vm_cpu(xml)
            need = None
            if cpu['mode'] in ('custom', 'host-model') and cpu['model']:
                need, _dropped = C.expand(caller(c, offers[n]), offers[n]['arch'],
                                          cpu['vendor'] or offers[n]['vendor'], cpu['model'], cpu['required'],
                                          cpu['disabled'])
            elif cpu['mode'] == 'host-model':
                # defined host-model, not running: it gets the CPU of the host it boots on
                cpu = dict(cpu, mode='host-passthrough')
            verdict = C.fit(cpu, need, base, feats, where=n)
            entry = dict(name=name, host=n, active=active, mode=cpu['mode'], model=cpu['model'], set=False,
                         **verdict)
            result['domains'].append(entry)
            if name in p['set_baseline']:
                to_set.append((entry, c, dom))
        missing = sorted(set(p['set_baseline']) - seen) + sorted(set(p['domains'] or []) - seen)
        if missing:
            # (before anything is changed)
            module.fail_json(msg='no domain of that name on the hosts: %s' % ', '.join(sorted(set(missing))), **result)
        for entry, c, dom in to_set:
            xml = driver.definition(dom, inactive=True, secure=True)
            if C.same_cpu(C.vm_cpu(xml), base):
                continue
            new_xml, old, new = C.with_baseline_cpu(xml, base)
            entry['set'] = True
            result['changed'] = True
            diff['before'] += '%s on %s:\n%s\n' % (entry['name'], entry['host'], old or '(no <cpu> element)')
            diff['after'] += '%s on %s:\n%s\n' % (entry['name'], entry['host'], new)
            if not module.check_mode:
                c.call('cannot define %s with the baseline CPU on %s' % (entry['name'], entry['host']),
                       c.conn.defineXML, new_xml)
    result['stranded'] = sorted(d['name'] for d in result['domains'] if d['stranded'])
    if module._diff and result['changed']:
        result['diff'] = diff
    module.exit_json(**result)


if __name__ == '__main__':
    main()
