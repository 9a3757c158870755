#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: migration_job_info
short_description: Progress of a running migration - libvirt's job statistics and the migrate module's status file
version_added: 0.1.0
description:
  - Reads the job statistics of a domain on the source hypervisor (the migration job while one runs,
    else the last completed job) and, when O(status_file) is given, the progress file that
    M(vmmigration.libvirt.migrate) rewrites at every poll - its phase, percent done and latest decisions.
  - Use it to watch a migration started with C(async) / C(poll=0), or one started by anybody else.
  - Read-only.
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.connection
  - vmmigration.libvirt.connection.retries
  - vmmigration.libvirt.attributes
  - vmmigration.libvirt.attributes.info_module
seealso:
  - module: vmmigration.libvirt.migrate
options:
  domain:
    description: Name of the domain on the source.
    type: str
    required: true
    aliases: [name]
  status_file:
    description: The O(vmmigration.libvirt.migrate#module:status_file) of the migration, on the host running this module.
    type: path
'''

EXAMPLES = r'''
- name: Start a long migration in the background
  vmmigration.libvirt.migrate:
    domain: db01
    dest_uri: qemu+tls://hv2.example.com/system
    status_file: /run/vmmigration-db01.json
  async: 3600
  poll: 0
  register: job

- name: Watch it until it is done
  vmmigration.libvirt.migration_job_info:
    domain: db01
    status_file: /run/vmmigration-db01.json
  register: progress
  until: progress.status.phase | default('') == 'done' or not progress.active
  retries: 720
  delay: 5
'''

RETURN = r'''
active:
  description: Whether a migration job runs on the domain now.
  returned: always
  type: bool
percent:
  description: Share of the data sent so far, while a job runs.
  returned: always
  type: float
  sample: 62.5
job:
  description: The job statistics (time_elapsed_ms, data_total, data_remaining, memory_bps, memory_iteration, downtime_ms, ...).
  returned: always
  type: dict
completed:
  description: Whether RV(job) describes the last completed job rather than a running one.
  returned: always
  type: bool
status:
  description: The content of O(status_file), or null when it is missing or not given.
  returned: always
  type: dict
'''

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    CONNECTION_ARGSPEC,
    LibvirtClientError,
    libvirt_session,
    require_libvirt,
    start_event_loop,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.strategy import progress_percent, summarize


def read_status(path):
    if not path:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    argument_spec = dict(domain=dict(type='str', required=True, aliases=['name']), status_file=dict(type='path'))
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    require_libvirt(module)
    stats, completed = {}, False
    start_event_loop()   # keepalive: a libvirtd that stops answering ends the call, not the module
    with libvirt_session(module) as cache:
        client = cache.get(p['uri'])
        dom = client.lookup(p['domain'])
        if dom is not None:
            stats = client.call('cannot read the job of %s' % p['domain'], driver.job_stats, dom)
            if not driver.job_running(stats):
                completed = True
                try:
                    stats = driver.job_stats(dom, completed=True)
                except LibvirtClientError:
                    stats = {}
        elif not p['status_file']:
            raise LibvirtClientError('no domain named %s on %s' % (p['domain'], client.uri))
    active = bool(stats) and not completed
    module.exit_json(changed=False, active=active, completed=completed, job=summarize(stats),
                     percent=progress_percent(stats) if active else None, status=read_status(p['status_file']))


if __name__ == '__main__':
    main()
