#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: shared_storage
short_description: Prove, per disk, that a destination hypervisor sees the same storage
version_added: 0.1.0
description:
  - For each disk of a domain on the source (O(uri)), decides whether the destination (O(dest_uri))
    sees the B(same) storage, not a file that merely has the same path.
  - File-backed disks - a uniquely named marker volume of a random size is written next to the disk
    on the source through libvirt, then looked for, with its size, in the same directory on the
    destination through libvirt. Seen - V(shared). Not there, or the directory is missing -
    V(not_shared). Nothing but libvirt is needed on either side.
  - Network disks (NBD, RBD, iSCSI, Gluster, ...) - libvirt treats them as shared; the module
    confirms the storage server answers on its address from where the module runs. Run it on the
    destination (C(delegate_to)) to prove the destination reaches it.
  - Block devices cannot be proven by a marker - V(unknown).
  - The marker and any transient storage pool are always removed, also when the module fails.
  - A migration may pass libvirt's unsafe-migration override only for disks this module proved
    V(shared).
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
      - The probe runs in check mode too; it leaves nothing behind.
  diff_mode:
    support: none
  idempotent:
    support: full
seealso:
  - module: vmmigration.libvirt.migrate
  - module: vmmigration.libvirt.migration_check
options:
  dest_uri:
    description: libvirt URI of the destination hypervisor.
    type: str
    required: true
  domain:
    description: Name of the domain whose disks are probed, on the source.
    type: str
    required: true
    aliases: [name]
'''

EXAMPLES = r'''
- name: Prove web01's disks are shared with hv2
  vmmigration.libvirt.shared_storage:
    domain: web01
    dest_uri: qemu+tls://hv2.example.com/system
  register: storage

- name: Refuse to go on when a disk is not shared
  ansible.builtin.assert:
    that: storage.all_shared
    fail_msg: "{{ storage.disks | rejectattr('verdict', 'eq', 'shared') | map(attribute='reason') | list }}"
'''

RETURN = r'''
disks:
  description: One finding per disk that carries data.
  returned: always
  type: list
  elements: dict
  contains:
    target:
      description: Disk target.
      type: str
      returned: always
      sample: vda
    type:
      description: libvirt disk type.
      type: str
      returned: always
      sample: file
    source:
      description: File path, or the export name of a network disk.
      type: str
      returned: always
    protocol:
      description: Network protocol, for network disks.
      type: str
      returned: always
      sample: nbd
    verdict:
      description: V(shared), V(not_shared) or V(unknown).
      type: str
      returned: always
      sample: shared
    method:
      description: How it was decided - V(marker), V(network), V(volume) or V(none).
      type: str
      returned: always
    reason:
      description: Why.
      type: str
      returned: always
all_shared:
  description: Whether every disk was proven shared.
  returned: always
  type: bool
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.checks import relevant_disks
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    CONNECTION_ARGSPEC,
    LibvirtClientError,
    libvirt_session,
    require_libvirt,
    start_event_loop,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.facts import domain_facts
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.storage_proof import probe_disks


def main():
    argument_spec = dict(
        dest_uri=dict(type='str', required=True),
        domain=dict(type='str', required=True, aliases=['name']),
    )
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    require_libvirt(module)
    start_event_loop()   # keepalive: a libvirtd that stops answering ends the call, not the module
    with libvirt_session(module) as cache:
        src = cache.get(p['uri'])
        dst = cache.get(p['dest_uri'])
        dom = src.lookup(p['domain'])
        if dom is None:
            raise LibvirtClientError('no domain named %s on %s' % (p['domain'], src.uri))
        if src.host_uuid() == dst.host_uuid():
            raise LibvirtClientError('the destination %s is the source host (same host UUID)' % dst.uri)
        disks = relevant_disks(domain_facts(src, dom)['disks'])
        findings = probe_disks(src, dst, disks)
    out = [findings[d['target']] for d in disks if d['target'] in findings]
    module.exit_json(changed=False, disks=out, all_shared=all(f['verdict'] == 'shared' for f in out))


if __name__ == '__main__':
    main()
