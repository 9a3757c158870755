# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """Transport security: the options every module that moves (or checks a move of) a guest shares."""

    DOCUMENTATION = r'''
options:
  tls:
    description:
      - Whether what crosses the network is encrypted - a live move's migration stream (the guest's memory, and
        the disks it copies) with QEMU's TLS, a cold move's disk copies by the libvirt connections they travel
        over (C(qemu+tls://) and C(qemu+ssh://) encrypt, C(qemu+tcp://) does not).
      - V(auto) - encrypted whenever both hosts are set up for it (QEMU's migration certificates in the
        directory qemu.conf names); when one is not, the move is refused before anything happens, naming what
        to configure, unless O(allow_plaintext=true).
      - V(required) - encrypted or nothing, even with O(allow_plaintext).
      - V(disabled) - never asks for TLS; needs O(allow_plaintext=true) for anything that would cross in the clear.
      - The values are words, never YAML booleans - V(true) or V(off) is refused, naming these three.
      - Check mode and RV(transport) say which it is.
    type: str
    choices: [auto, required, disabled]
    default: auto
  allow_plaintext:
    description:
      - Allow a guest's memory or disks to cross the network in the clear, when O(tls=auto) finds a host not
        set up for TLS or O(tls=disabled). Only for a trusted, dedicated migration network; set it per run or
        per inventory group (C(vmmigration_allow_plaintext) in the roles).
    type: bool
    default: false
'''
