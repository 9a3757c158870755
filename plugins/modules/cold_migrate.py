#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: cold_migrate
short_description: Move a domain to another hypervisor with a shutdown - disks, NVRAM, TPM state and definition
version_added: 0.1.0
description:
  - Shuts the domain down (ACPI, pressed again every few seconds, within O(shutdown_timeout_s); powered
    off only with O(force=true)), copies every disk that is not proven shared to the destination through
    libvirt volume streams (sparse-aware, verified by SHA-256 over the logical content), copies its NVRAM
    and emulated TPM state when present and not shared, defines it on the destination (disk and NVRAM
    paths rewritten when O(dest_pool) puts them elsewhere), starts it there if it was running, and only
    then removes it - and the copied disks, unless O(keep_source_disks=true) - from the source.
  - A stopped domain whose storage is shared is simply redefined on the destination (an offline move).
  - Before anything changes, the free space of each destination directory (its storage pool) must hold
    the copies (the bytes the source files occupy, plus a 16 MiB margin), and O(work_dir) the largest
    of them; otherwise the module fails and nothing is touched.
  - Every copy has a deadline (O(copy_timeout_s)); a peer libvirtd that stops answering is dropped by
    libvirt's keepalive after about 20 s. Either way the copy is aborted and the move rolled back.
  - Any failure before the commit point removes what was created on the destination and restarts the
    guest on the source if it was running.
  - No trust between the hypervisors is needed - everything goes through the two libvirt connections.
    Copies pass through a sparse temporary file in O(work_dir) on the host that runs the module.
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.connection
  - vmmigration.libvirt.connection.retries
  - vmmigration.libvirt.transport
  - vmmigration.libvirt.attributes
  - vmmigration.libvirt.verify
attributes:
  check_mode:
    support: full
    details:
      - Runs the checks and returns what would be shut down, copied and where.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A domain gone from the source and defined on the destination is V(already_there).
seealso:
  - module: vmmigration.libvirt.migrate
  - module: vmmigration.libvirt.migration_check
  - module: vmmigration.libvirt.shared_storage
options:
  domain:
    description: Name of the domain on the source.
    type: str
    required: true
    aliases: [name]
  dest_uri:
    description: libvirt URI of the destination, as reached from where the module runs.
    type: str
    required: true
  dest_pool:
    description:
      - Storage pool on the destination that receives the copied disks. Default - the same directory as
        on the source (the directory is created when missing).
    type: str
  shutdown_timeout_s:
    description: Seconds to wait for a clean shutdown.
    type: float
    default: 120
  force:
    description: Power the guest off when it does not shut down cleanly in time. Otherwise the module fails and the guest keeps running.
    type: bool
    default: false
  start:
    description: V(auto) - start on the destination if it was running; V(always); V(never).
    type: str
    choices: [auto, always, never]
    default: auto
  keep_source_disks:
    description: Keep the copied disks on the source after the move.
    type: bool
    default: false
  verify:
    description: Read each copied disk back from the destination and compare its SHA-256.
    type: bool
    default: true
  headroom_mib:
    description:
      - Memory in MiB to keep free on the destination beyond the guest's (checked only when the guest will be
        started) - the same name and default as in every module and role of the collection.
    type: int
    default: 1024
  work_dir:
    description: Directory for the sparse temporary copy, on the host that runs the module.
    type: path
    default: /var/tmp
  copy_timeout_s:
    description:
      - Deadline, in seconds, of each file's copy (read from the source, write to the destination, read
        back to verify). A copy still running then is aborted and the move rolled back.
      - Default - 1800, or 1 s per 10 MiB the file occupies when that is longer.
    type: float
'''

EXAMPLES = r'''
- name: Move app01 (local disk, UEFI) to hv3, powering it off if it ignores ACPI for two minutes
  vmmigration.libvirt.cold_migrate:
    domain: app01
    dest_uri: qemu+tls://hv3.example.com/system
    force: true
  register: moved

- name: Copied files and their checksums
  ansible.builtin.debug:
    msg: "{{ moved.copied | map(attribute='dest') | list }}"
'''

RETURN = r'''
running_on_destination_at:
  description: Epoch time at which the guest was started on the destination.
  type: float
  returned: when a running guest moved
  sample: 1795000000.123
answering:
  description:
    - With O(verify_addresses) - C(addresses) (each address to the seconds from the start of the probe to its first
      reply, or null), C(all_answered), C(since_move_s) (from the VM running on the destination to the last first
      reply) and C(error) (why the probe could not run).
  returned: when the VM moved and O(verify_addresses) was given
  type: dict
  sample: {addresses: {198.51.100.7: 0.012}, all_answered: true, since_move_s: 0.412, error: null}
transport:
  description: How the disk copies travel - encrypted, transport (V(tls), V(ssh), V(plaintext) or V(none)) and why.
  returned: when the move was planned
  type: dict
  sample: {encrypted: true, transport: tls, why: disk copies travel over tls libvirt connections}
state:
  description: V(migrated), V(already_there) or V(planned) (check mode).
  returned: always
  type: str
  sample: migrated
plan:
  description:
    - Whether it shuts down and starts, the files to copy (V(files) - kind, source and destination paths,
      allocation in bytes) and the shared disks.
    - V(space) - per place (destination directory, O(work_dir)) the bytes the copies need (V(needs)) and
      the bytes free there (V(free)), read before anything changes.
  returned: unless already there
  type: dict
copied:
  description: Each copied file - kind (disk, nvram, tpm), source, dest, bytes, sha256, verified, seconds.
  returned: when migrated
  type: list
  elements: dict
removed_from_source:
  description: Copied disks removed from the source.
  returned: when migrated
  type: list
  elements: str
steps:
  description: What was done, with times in seconds from the start.
  returned: when anything was done
  type: list
  elements: dict
total_time_s:
  description: Seconds from the start to the commit and cleanup.
  returned: when migrated
  type: float
bytes_copied:
  description: Logical bytes copied.
  returned: when migrated
  type: int
checks:
  description: The pre-migration checks (only those that rule out any move stop a cold migration).
  returned: unless already there
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    CONNECTION_ARGSPEC,
    libvirt_session,
    require_libvirt,
    start_event_loop,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.cold import COLD_ARGSPEC
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.pipeline import (
    VERIFY_ARGSPEC,
    move_vm,
    silent_message,
    verify_problems,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.transport import normalize_mode


def main():
    argument_spec = dict(domain=dict(type='str', required=True, aliases=['name']), dest_uri=dict(type='str', required=True))
    argument_spec.update(COLD_ARGSPEC)
    argument_spec.update(VERIFY_ARGSPEC)
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    require_libvirt(module)
    if p['shutdown_timeout_s'] <= 0:
        module.fail_json(msg='shutdown_timeout_s must be greater than 0 (got %s)' % p['shutdown_timeout_s'])
    if p['headroom_mib'] < 0:
        module.fail_json(msg='headroom_mib must not be negative')
    if p['copy_timeout_s'] is not None and p['copy_timeout_s'] <= 0:
        module.fail_json(msg='copy_timeout_s must be greater than 0 (got %s)' % p['copy_timeout_s'])
    try:
        normalize_mode(p['tls'])
    except ValueError as e:
        module.fail_json(msg=str(e))
    if verify_problems(p):
        module.fail_json(msg='; '.join(verify_problems(p)))
    start_event_loop()   # keepalive: a destination that stops answering ends the copy, not the wait
    with libvirt_session(module) as cache:
        src = cache.get(p['uri'])
        dst = cache.get(p['dest_uri'])
        src.host_uuid()
        # the per-VM pipeline the drain runs for each VM: move, verify
        result = move_vm(src, dst, p['domain'], 'cold', p, check_mode=module.check_mode,
                         addresses=p['verify_addresses'], verify_timeout_s=p['verify_timeout_s'])
    silent = silent_message(result)
    if silent:
        module.fail_json(msg=silent, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
