#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: controller_files
short_description: Write the roles' records (plans, reports, timelines) on the controller, in one task
version_added: 0.1.0
description:
  - Writes files into a directory on the Ansible controller, each atomically (a reader sees the old file or the new
    one), making the directory when it is missing. Runs on the controller alone - it needs no connection to the host
    it runs for, and runs no module anywhere.
  - The roles of this collection keep their plans, drain reports, timelines and run records with it; one task writes
    them all (a copy delegated to localhost runs a module per file).
  - A file whose content is already the same is not written again (C(changed) tells whether any differed).
author:
  - vmmigration.libvirt developers (@vmmigration)
extends_documentation_fragment:
  - vmmigration.libvirt.attributes
attributes:
  check_mode:
    support: full
    details:
      - Writes nothing; C(changed) says whether it would have. Set C(check_mode=false) on the task to keep records in
        check mode too (the roles keep the plan that way).
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  dir:
    description: Directory on the controller for the files (made with O(dir_mode) when missing).
    type: path
    required: true
  files:
    description: The files to write.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The file's name inside O(dir) (a plain name, no directory).
        type: str
        required: true
      content:
        description: Its text, as it is.
        type: raw
      json:
        description: Data to write as JSON instead (indented, keys sorted - as C(to_nice_json) writes it - with a final newline).
        type: raw
  mode:
    description: The files' permissions.
    type: str
    default: '0600'
  dir_mode:
    description: Permissions of the directory when it is made.
    type: str
    default: '0700'
notes:
  - An action plugin - it runs on the controller. M(ansible.builtin.copy) delegated to localhost does the same for one
    file, with a module run on the controller.
seealso:
  - module: ansible.builtin.copy
'''

EXAMPLES = r'''
- name: Save a drain's report on the controller, in two forms
  vmmigration.libvirt.controller_files:
    dir: "/var/tmp/vmmigration-reports/{{ inventory_hostname }}"
    files:
      - {name: report.json, json: "{{ result }}"}
      - {name: report.txt, content: "{{ result.report.table | join('\n') }}\n"}
'''

RETURN = r'''
paths:
  description: The files' paths on the controller.
  returned: always
  type: list
  elements: str
'''
