# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """The verification step every move ends with (the per-VM pipeline of the migrate modules and the drain)."""

    DOCUMENTATION = r'''
options:
  verify_addresses:
    description:
      - IPv4/IPv6 addresses of the VM to verify once it runs on the destination - the last step of the per-VM
        pipeline the drain (M(vmmigration.libvirt.evacuate)) runs for every VM as well. This host sends ICMP echo to
        them until each answered or O(verify_timeout_s) passed; RV(answering) says when. Needs root on this host
        (raw ICMP sockets). Addresses that stay silent fail the module; the VM has moved all the same (nothing is undone).
    type: list
    elements: str
    default: []
  verify_timeout_s:
    description: Seconds the addresses have to answer after the move.
    type: float
    default: 10
'''
