#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: evacuation_status
short_description: Progress of a running drain - which VM is moving, how far along, what is done
version_added: 0.1.0
description:
  - Reads the O(vmmigration.libvirt.evacuate#module:status_file) of a drain, on the host running it,
    waiting up to O(wait_s) for it to change, and returns it with readable progress lines.
  - Tells whether the drain's process is still alive, so that a playbook run again after an interruption
    can wait for a drain still running instead of starting a second one.
  - Read-only.
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.attributes
  - vmmigration.libvirt.attributes.info_module
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
seealso:
  - module: vmmigration.libvirt.evacuate
options:
  status_file:
    description: The drain's status file.
    type: path
    required: true
  wait_s:
    description: Wait up to this many seconds for the status to change (a VM starts, ends or moves on 10%).
    type: float
    default: 0
  follow:
    description:
      - Keep reading until the drain ends, printing the progress lines on the controller whenever they
        change (done by the action plugin; each read waits up to O(wait_s), 10 s when not set).
    type: bool
    default: false
  follow_timeout_s:
    description: With O(follow), stop following after this many seconds.
    type: float
    default: 86400
  absent_timeout_s:
    description: With O(follow), stop when no status file appeared within this many seconds.
    type: float
    default: 120
'''

EXAMPLES = r'''
- name: Show how the drain goes
  vmmigration.libvirt.evacuation_status:
    status_file: /run/vmmigration-evacuate.json
    wait_s: 5
  register: progress

- name: Follow it to its end, printing progress on the controller
  vmmigration.libvirt.evacuation_status:
    status_file: /run/vmmigration-evacuate.json
    follow: true
'''

RETURN = r'''
state:
  description: V(running), V(finished), V(absent) (no status file) or V(dead) (the drain's process ended without finishing).
  returned: always
  type: str
status:
  description: The status file's content - running (with phase and percent), done, pending, left, elapsed_s.
  returned: when the file exists
  type: dict
lines:
  description: The progress as readable lines.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.drain_files import pid_alive, read_json
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration.report import progress_lines, progress_signature
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import wait_until


def main():
    module = AnsibleModule(argument_spec=dict(
        status_file=dict(type='path', required=True),
        wait_s=dict(type='float', default=0),
        follow=dict(type='bool', default=False),
        follow_timeout_s=dict(type='float', default=86400),
        absent_timeout_s=dict(type='float', default=120),
    ), supports_check_mode=True)
    p = module.params
    seen = {'status': read_json(p['status_file'])}
    first = progress_signature(seen['status'])

    def news():
        """True once the drain finished or its progress moved on since the first read."""
        if seen['status'] is not None and seen['status'].get('state') == 'finished':
            return True
        status = read_json(p['status_file'])
        changed = progress_signature(status) != first
        if changed or status is not None:
            seen['status'] = status
        return changed
    if p['wait_s'] > 0:
        wait_until(news, p['wait_s'], 0.25)
    status = seen['status']
    if status is None:
        module.exit_json(changed=False, state='absent', lines=['no evacuation status at %s' % p['status_file']])
    state = status.get('state')
    if state != 'finished' and not pid_alive(status.get('pid')):
        # the file's writer may have finished between the reads
        again = read_json(p['status_file'])
        status = again or status
        state = status.get('state') if status.get('state') == 'finished' else 'dead'
    module.exit_json(changed=False, state=state, status=status, lines=progress_lines(status))


if __name__ == '__main__':
    main()
