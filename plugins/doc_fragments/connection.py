# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """The connection options every libvirt module of the collection shares."""

    # the URI of the one libvirt the module talks to (the modules extend RETRIES too)
    DOCUMENTATION = r'''
options:
  uri:
    description:
      - The libvirt connection URI of the hypervisor this module talks to.
      - Modules normally run on the hypervisor itself with the default V(qemu:///system); a remote
        URI such as V(qemu+tls://host/system) or V(qemu+ssh://root@host/system) lets them run from
        the controller instead.
    type: str
    default: qemu:///system
'''

    # how every module of the collection opens its libvirt connections
    RETRIES = r'''
options:
  connect_retries:
    description:
      - How many times to retry opening the connection after a transient failure (connection
        refused or reset, timeouts). Errors that are not transient are never retried.
    type: int
    default: 2
  connect_retry_delay_s:
    description:
      - Seconds before the first retry; each further retry waits twice as long, with jitter.
    type: float
    default: 0.5
requirements:
  - libvirt-python on the host that runs the module (Debian/Ubuntu package C(python3-libvirt)).
notes:
  - Every libvirt failure is reported as one readable message, never as a traceback.
  - Connections are opened once per URI per task and reused.
'''
