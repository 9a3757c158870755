#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: host_info
short_description: Facts of a libvirt hypervisor and its domains, for migration planning
version_added: 0.1.0
description:
  - Reads a hypervisor's facts through libvirt - hostname, host UUID, libvirt and hypervisor
    versions, the domain types it can run (V(kvm), V(qemu)), machine types, host CPU model and
    features, memory total and free, bridges, networks and storage pools.
  - For each domain (all, or those named in O(domains)) - state, memory, vCPUs, CPU definition,
    machine type, disks (type, source, format, cache mode, sizes), interfaces (MAC, bridge or
    network, model, known addresses) and every device that keeps it from live-migrating.
  - Read-only; changes nothing.
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.connection
  - vmmigration.libvirt.connection.retries
  - vmmigration.libvirt.attributes
  - vmmigration.libvirt.attributes.info_module
seealso:
  - module: vmmigration.libvirt.migration_check
  - module: vmmigration.libvirt.cpu_baseline
options:
  domains:
    description:
      - Names of the domains to describe. Each must exist, or the module fails naming those that do not.
      - Omitted or empty - every domain of the host, running or not.
    type: list
    elements: str
    default: []
  include_domains:
    description:
      - Set to V(false) for the host facts alone.
    type: bool
    default: true
  include_host:
    description:
      - Set to V(false) (with O(include_domains=false)) for RV(transport_security) alone - read from files, without
        asking libvirt anything (what the roles' pre-checks need, in a fraction of the time).
    type: bool
    default: true
  cert_warn_days:
    description:
      - RV(transport_security) warns about a certificate that expires within this many days.
    type: int
    default: 30
  peer_addresses:
    description:
      - Addresses (names or IPs) other hosts use to reach this one. RV(transport_security) warns when this host's
        server certificates (QEMU's migration, libvirtd) do not name one of them - the handshake would fail.
    type: list
    elements: str
    default: []
'''

EXAMPLES = r'''
- name: Facts of the hypervisor this play runs on
  vmmigration.libvirt.host_info:
  register: hv

- name: Show which domains cannot live-migrate, and why
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.blockers | map(attribute='reason') | join(', ') }}"
  loop: "{{ hv.domains | selectattr('blockers') }}"
  loop_control:
    label: "{{ item.name }}"

- name: One domain, from the controller, over TLS
  vmmigration.libvirt.host_info:
    uri: qemu+tls://hv2.example.com/system
    domains: [web01]
  delegate_to: localhost
'''

RETURN = r'''
transport_security:
  description:
    - Whether this host is set up for TLS, read from libvirt's files on the host the module runs on (V(null)
      when O(uri) names another host) - C(migration_tls) (QEMU's migration - ready, cert_dir, missing files,
      verify_peer, force, certificates), C(libvirt_tls) (the daemon that listens for remote connections - listening
      on 16514, ready, missing, certificates, C(daemons) V(monolithic) (libvirtd) or V(modular) (virtproxyd, told
      by virtqemud's socket), C(conf) the file its settings were read from), C(migration_host), and the C(problems) (an expired or unreadable certificate) and
      C(warnings) (one that expires within O(cert_warn_days)) they show.
    - Each certificate - subject_cn, issuer_cn, names (subjectAltName DNS names and addresses), expires,
      days_left, path.
    - Give it to M(vmmigration.libvirt.migrate) as O(vmmigration.libvirt.migrate#module:dest_security).
  returned: always
  type: dict
  sample:
    migration_tls: {ready: true, cert_dir: /etc/pki/qemu, missing: [], verify_peer: true, force: false}
    libvirt_tls: {listening: true, ready: true, missing: [], daemons: monolithic, conf: /etc/libvirt/libvirtd.conf}
    problems: []
    warnings: ['this host libvirtd server certificate /etc/pki/libvirt/servercert.pem expires in 12 days (2027-01-02T10:00:00Z)']
host:
  description: The hypervisor's facts.
  returned: unless O(include_host=false) and O(include_domains=false)
  type: dict
  contains:
    hostname: {description: Host name libvirt reports., type: str, returned: always, sample: hv1}
    uri: {description: The URI the facts were read through., type: str, returned: always, sample: qemu:///system}
    uuid:
      description: The host UUID libvirt uses to tell hosts apart (migration refuses equal UUIDs).
      type: str
      returned: always
      sample: 4280eb16-4781-55d0-8b47-05a610cd1c1b
    driver: {description: libvirt driver name., type: str, returned: always, sample: QEMU}
    libvirt_version: {description: libvirt version., type: str, returned: always, sample: 9.0.0}
    hypervisor_version: {description: Hypervisor (QEMU) version., type: str, returned: always, sample: 7.2.0}
    domain_types:
      description: Domain types the host can run.
      type: list
      elements: str
      returned: always
      sample: [kvm, qemu]
    machine_types:
      description: Machine types per guest architecture.
      type: dict
      returned: always
      sample: {x86_64: [pc, pc-i440fx-7.2, q35]}
    cpu_arch: {description: Host CPU architecture., type: str, returned: always, sample: x86_64}
    cpu_model: {description: Host CPU model as libvirt names it., type: str, returned: always, sample: Skylake-Client-IBRS}
    cpu_vendor: {description: Host CPU vendor., type: str, returned: always, sample: Intel}
    cpu_features:
      description: Host CPU features beyond the model.
      type: list
      elements: str
      returned: always
    cpus: {description: Logical CPUs., type: int, returned: always, sample: 16}
    memory_total: {description: Host memory in bytes., type: int, returned: always, sample: 68719476736}
    memory_free: {description: Free host memory in bytes., type: int, returned: always, sample: 34359738368}
    bridges:
      description: Linux bridges on the host.
      type: list
      elements: str
      returned: always
      sample: [br0, br1]
    networks:
      description: libvirt networks with their bridge and state.
      type: list
      elements: dict
      returned: always
    storage_pools:
      description: Storage pools - name, type, active, path, capacity, allocation, available (bytes).
      type: list
      elements: dict
      returned: always
domains:
  description: One entry per domain; empty when O(include_domains=false).
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Domain name., type: str, returned: always, sample: web01}
    uuid: {description: Domain UUID., type: str, returned: always}
    domain_type: {description: V(kvm) or V(qemu) (treated alike)., type: str, returned: always, sample: kvm}
    state: {description: Domain state., type: str, returned: always, sample: running}
    persistent: {description: Whether the domain has a persistent definition., type: bool, returned: always}
    active: {description: Whether the domain runs., type: bool, returned: always}
    memory_kib: {description: Maximum memory in KiB., type: int, returned: always, sample: 4194304}
    vcpus: {description: vCPUs., type: int, returned: always, sample: 2}
    machine: {description: Machine type., type: str, returned: always, sample: pc-q35-7.2}
    cpu:
      description: CPU definition - mode, match, model, fallback, vendor and features.
      type: dict
      returned: always
    disks:
      description: Disks - type, device, target, source, protocol, hosts, format, cache, capacity, allocation, physical.
      type: list
      elements: dict
      returned: always
    interfaces:
      description: Interfaces - type, mac, bridge, network, model, addresses.
      type: list
      elements: dict
      returned: always
    blockers:
      description: Devices that keep the domain from live-migrating, each with a reason.
      type: list
      elements: dict
      returned: always
      sample: [{device: hostdev, reason: host device passthrough (pci) is bound to this host}]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    CONNECTION_ARGSPEC,
    libvirt_session,
    require_libvirt,
    start_event_loop,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.facts import gather
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.transport import connection_transport, host_security


def main():
    argument_spec = dict(
        domains=dict(type='list', elements='str', default=[]),
        include_domains=dict(type='bool', default=True),
        include_host=dict(type='bool', default=True),
        cert_warn_days=dict(type='int', default=30),
        peer_addresses=dict(type='list', elements='str', default=[]),
    )
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    facts = {'domains': []}
    if p['include_host'] or p['include_domains'] or p['domains']:
        require_libvirt(module)
        start_event_loop()   # keepalive: a libvirtd that stops answering ends the call, not the module
        with libvirt_session(module) as cache:
            facts = gather(cache.get(p['uri']), domains=p['domains'], include_domains=p['include_domains'])
    local = connection_transport(module.params['uri']) == 'local'
    facts['transport_security'] = host_security(warn_days=module.params['cert_warn_days'],
                                                peer_addresses=module.params['peer_addresses']) if local else None
    for warning in (facts['transport_security'] or {}).get('warnings', []):
        module.warn(warning)
    module.exit_json(changed=False, **facts)


if __name__ == '__main__':
    main()
