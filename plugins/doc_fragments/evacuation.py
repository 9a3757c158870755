# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later


class ModuleDocFragment:  # pylint: disable=too-few-public-methods
    """The evacuation plan's options (evacuation_plan and evacuate)."""

    DOCUMENTATION = r'''
options:
  destinations:
    description: Candidate destinations - a name (inventory host) and the libvirt URI reaching it from where the module runs.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the destination.
        type: str
        required: true
      uri:
        description: libvirt URI of the destination.
        type: str
        required: true
      security:
        description:
          - The destination's RV(vmmigration.libvirt.host_info#module:transport_security), gathered on it (the
            roles do). With it, a live move's O(vmmigration.libvirt.migrate#module:tls=auto) knows before
            anything moves whether the destination is set up for TLS; every move that would send a guest's
            memory in the clear without O(vmmigration.libvirt.migrate#module:allow_plaintext) is refused
            before the drain starts.
        type: dict
  domains:
    description: Domains to move. Default - every active domain of the source.
    type: list
    elements: str
  exclude_domains:
    description:
      - Domains this drain leaves on the source, running, whatever they could do (listed among the VMs left, with
        that reason; the drain then ends V(incomplete) while they run). The rolling_maintenance role passes the VMs it
        stops in place. Names that do not run on the source are ignored.
    type: list
    elements: str
    default: []
  prefer_destinations:
    description:
      - Destinations tried first; the others take only the VMs that fit on none of these (the rolling_maintenance
        role's wave passes the hosts it maintained already, so a VM moves once per run). Empty - every destination
        alike (the roomiest first). Names that are not destinations are ignored.
    type: list
    elements: str
    default: []
  non_live_policy:
    description:
      - What to do with VMs that cannot live-migrate anywhere but could move cold - V(skip) leaves them running
        where they are (listed, with the reason), V(cold) plans a cold move for them (shut down, disks copied,
        started on the destination), V(shutdown) shuts them down where they are (the drain does; a plan lists them).
      - The same option, with the same choices, in M(vmmigration.libvirt.evacuation_plan) and
        M(vmmigration.libvirt.evacuate), and C(non_live_policy) in the roles.
    type: str
    choices: [skip, shutdown, cold]
    default: skip
  headroom_mib:
    description:
      - Memory in MiB to keep free on every destination beyond the guests it receives.
      - A move checked on its own (a return journey, or a drain without an approved O(plan)) also counts the memory
        of the drain's moves still arriving at its destination, which that host's free memory does not show yet.
    type: int
    default: 1024
  anti_affinity:
    description: Groups of VMs that must not share a host - a mapping of group name to VM names.
    type: dict
    default: {}
  pinned:
    description: Operator-chosen destinations - a mapping of VM name to destination name.
    type: dict
    default: {}
  rate_mibps:
    description:
      - Expected transfer rate of one migration, for the time prediction (a move of M MiB is predicted to take
        O(overhead_s) + M / O(rate_mibps) seconds). The roles take it from their calibration file once a drain
        has been measured.
    type: int
    default: 1000
  overhead_s:
    description: Seconds each migration costs beyond copying its memory (connections, checks, switch-over, cleanup), for the time prediction.
    type: float
    default: 2.0
  fixed_s:
    description: Seconds a drain costs beyond its migrations (its start, the verification at its end), added to the predicted total.
    type: float
    default: 0.0
  move_times:
    description:
      - Seconds each VM's migration took when last measured (VM name to seconds), for the time prediction and the
        order (longest first). A VM listed is predicted to take that long instead of O(overhead_s) + its memory /
        O(rate_mibps) - a VM that rewrites its memory fast takes longer than its size says. The roles take it from
        their calibration file (the median of each VM's last measured moves).
    type: dict
    default: {}
  max_outbound:
    description:
      - Migrations out of the source at once.
      - As many live moves more are checked and planned (their dirty rate sampled, when the link's speed is known)
        while those migrate, each waiting for a slot before anything changes; when the drain stops, those still
        waiting are not started and are reported so (one already given its slot goes on, as any started move).
    type: int
    default: 2
  max_inbound:
    description: Migrations into one destination at once.
    type: int
    default: 2
  max_total:
    description: Migrations at once overall.
    type: int
    default: 4
'''
