#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: cluster_facts
short_description: One hypervisor's part of a cluster plan - its facts read once, and its answers to the group's questions
version_added: 0.1.0
description:
  - The fact read a cluster plan is computed from on the controller (the V(vmmigration.libvirt.cluster_plan) filter),
    one run per hypervisor and per phase, in parallel over the group - never a host connecting to every other one.
  - O(phase=read) - the host's facts (memory, domain and machine types, versions, bridges, networks), every domain's
    facts (memory, CPU, disks, interfaces, what keeps it from live-migrating), the CPU definition each one would ask a
    destination for (by id, each distinct definition once), and a marker volume of a random size written in each
    directory that holds a disk, for the other hosts to look for.
  - With O(state_dir), O(phase=read) also returns the host's records of rolling maintenance runs and what its drains
    measured (as M(vmmigration.libvirt.rolling_record) reads them), so a run is read from each host in one module run.
    A record that cannot be read fails the read before anything is written.
  - O(phase=answer) - after every host of the group was read - this host's answers to the group's distinct questions
    (the P(vmmigration.libvirt.cluster_plan#filter) input C(questions)) - whether it can run each CPU definition
    (libvirt's hypervisor CPU comparison), which markers it sees in each directory (same path, same storage?), and
    whether it reaches each network storage server.
  - O(phase=clean) - removes the markers this host wrote (O(markers), the read's RV(markers)).
  - Changes nothing but its own markers, which O(phase=clean) removes; the same in check mode.
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.connection
  - vmmigration.libvirt.connection.retries
  - vmmigration.libvirt.attributes
  - vmmigration.libvirt.attributes.info_module
seealso:
  - module: vmmigration.libvirt.host_info
  - module: vmmigration.libvirt.evacuation_plan
options:
  phase:
    description:
      - V(read), V(answer) or V(clean), in that order over the whole group (each phase on every host before the
        next).
    type: str
    choices: [read, answer, clean]
    default: read
  questions:
    description:
      - With O(phase=answer) - the group's questions, as the V(vmmigration.libvirt.cluster_questions) filter makes
        them from the reads - C(cpus) (id to C(arch), C(machine), C(domain_type), C(xml)), C(dirs) (directories) and
        C(servers) (key to C(protocol) and C(hosts)).
    type: dict
    default: {}
  markers:
    description:
      - With O(phase=clean) - the markers to remove, directory to C(name) (the read's RV(markers)).
    type: dict
    default: {}
  peer_addresses:
    description:
      - With O(phase=read) - addresses other hosts use to reach this one; RV(transport_security) warns when this
        host's server certificates do not name one of them.
    type: list
    elements: str
    default: []
  state_dir:
    description:
      - With O(phase=read) - the directory on the host that keeps its run records (the
        M(vmmigration.libvirt.rolling_record) O(vmmigration.libvirt.rolling_record#module:state_dir)); RV(records) and
        RV(calibration) are read from it. Not given - neither is returned.
    type: path
  cert_warn_days:
    description:
      - RV(transport_security) warns about a certificate that expires within this many days.
    type: int
    default: 30
'''

EXAMPLES = r'''
- name: Read every hypervisor once
  vmmigration.libvirt.cluster_facts:
  register: read

- name: Answer the group's questions (every host read by now)
  vmmigration.libvirt.cluster_facts:
    phase: answer
    questions: "{{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, 'read')))
                   | vmmigration.libvirt.cluster_questions }}"
  register: answers

- name: Remove this host's markers
  vmmigration.libvirt.cluster_facts:
    phase: clean
    markers: "{{ read.markers }}"
'''

RETURN = r'''
version:
  description: The format of this answer (the controller refuses a format it does not know, naming the host).
  returned: always
  type: int
  sample: 1
host:
  description: With O(phase=read) - the host's facts, as M(vmmigration.libvirt.host_info) returns them.
  returned: success
  type: dict
domains:
  description:
    - With O(phase=read) - every domain's facts, as M(vmmigration.libvirt.host_info) returns them, and
      C(cpu_question) (the id of the CPU definition it asks a destination for, V(null) when there is none to compare);
      each file or volume disk names its C(dir), each network disk its C(server).
  returned: success
  type: list
  elements: dict
cpu_questions:
  description: With O(phase=read) - id to the CPU definition (C(arch), C(machine), C(domain_type), C(xml)).
  returned: success
  type: dict
cpu_answers:
  description:
    - With O(phase=read) - id of each CPU definition in RV(cpu_questions) to this host's answer, C(null) when it runs
      it, else libvirt's reason; those are not asked of this host again in O(phase=answer).
  returned: success
  type: dict
markers:
  description:
    - With O(phase=read) - directory to the marker written there (C(name), C(size) in bytes), or C(error) when none
      could be written.
  returned: success
  type: dict
  sample: {/var/lib/libvirt/images: {name: vmm-probe-0f3c.marker, size: 1048576}}
transport_security:
  description: With O(phase=read) - as M(vmmigration.libvirt.host_info) returns it.
  returned: success
  type: dict
cpus:
  description: With O(phase=answer) - per CPU id, V(null) when this host can run it, else libvirt's reason.
  returned: success
  type: dict
dirs:
  description:
    - With O(phase=answer) - per directory, C(seen) (marker name to size in bytes, every marker there) or C(error)
      (not usable here).
  returned: success
  type: dict
servers:
  description: With O(phase=answer) - per storage server key, C(error) when this host does not reach it.
  returned: success
  type: dict
removed:
  description: With O(phase=clean) - the markers removed.
  returned: success
  type: list
  elements: str
kept:
  description: With O(phase=clean) - the markers that could not be removed, each with why (also said as a warning).
  returned: success
  type: list
  elements: str
records:
  description: With O(phase=read) and O(state_dir) - this host's records of the runs, oldest first.
  returned: success and O(state_dir) given
  type: list
  elements: dict
calibration:
  description:
    - With O(phase=read) and O(state_dir) - what this host's drains measured (V({}) when nothing yet, or when it does
      not read - then said as a warning).
  returned: success and O(state_dir) given
  type: dict
elapsed_s:
  description: Seconds the phase took.
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
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration.cluster_read import answer, clean, read
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import run_record as R
from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide.transport import (
    connection_transport,
    host_security,
)


def main():
    argument_spec = dict(
        phase=dict(type='str', choices=['read', 'answer', 'clean'], default='read'),
        questions=dict(type='dict', default={}),
        markers=dict(type='dict', default={}),
        peer_addresses=dict(type='list', elements='str', default=[]),
        cert_warn_days=dict(type='int', default=30),
        state_dir=dict(type='path'),
    )
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    require_libvirt(module)
    started = time.monotonic()
    runs = {}
    if p['phase'] == 'read' and p['state_dir']:
        # (first: a record that does not read fails the read before any marker is written)
        try:
            runs['records'] = R.load_all(p['state_dir'])
        except R.RecordError as e:
            module.fail_json(msg=str(e))
        runs['calibration'], warning = R.load_calibration(p['state_dir'])
        if warning:
            module.warn(warning)
    start_event_loop()   # keepalive: a libvirtd that stops answering ends the call, not the module
    with libvirt_session(module) as cache:
        client = cache.get(p['uri'])
        if p['phase'] == 'read':
            out = read(client)
            local = connection_transport(p['uri']) == 'local'
            out['transport_security'] = host_security(warn_days=p['cert_warn_days'],
                                                      peer_addresses=p['peer_addresses']) if local else None
            for warning in (out['transport_security'] or {}).get('warnings', []):
                module.warn(warning)
            out.update(runs)
        elif p['phase'] == 'answer':
            out = answer(client, p['questions'])
        else:
            out = clean(client, p['markers'])
            for kept in out['kept']:
                module.warn('a marker of the cluster plan could not be removed - %s' % kept)
    out['elapsed_s'] = round(time.monotonic() - started, 3)
    module.exit_json(changed=False, **out)


if __name__ == '__main__':
    main()
