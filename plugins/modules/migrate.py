#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
---
module: migrate
short_description: Live-migrate a running domain to another hypervisor, and make sure it finishes
version_added: 0.1.0
description:
  - Live-migrates one running domain from the source hypervisor (O(uri)) to a destination
    (O(dest_uri)), peer-to-peer by default (the source libvirtd talks to the destination).
  - Before anything changes it runs every check of M(vmmigration.libvirt.migration_check) and
    proves shared storage (M(vmmigration.libvirt.shared_storage)); any failing check stops it.
    Disks not proven shared are copied during the migration (O(copy_storage)); libvirt's
    unsafe-migration override is passed only for file disks proven shared.
  - "B(Completion strategy): before starting, the guest's dirty rate is measured and pre-copy
    convergence predicted (lambda = dirty rate / bandwidth). O(completion=auto) picks pre-copy when
    it converges, one pre-copy pass then post-copy (hybrid) when it does not and O(allow_postcopy)
    is set, and auto-converge otherwise. While running, job statistics are polled several times a
    second; the allowed downtime is raised in steps up to O(max_downtime_ms); when the migration
    stalls at the largest downtime or passes its deadline (O(tuning.timeout_per_gib_s) per GiB of RAM),
    O(final_action) is taken - switch to post-copy, throttle (auto-converge), pause the guest to
    finish, or abort. The allowed downtime starts at 10 ms. Auto-converge starts with the vCPU throttle
    at which the measured dirty rate fits in an eighth of the link (at least QEMU's own 20 %, at most
    95 %) and steps finely near the top (1 % from 90 %, 5 % from 70 %), instead of QEMU's 20 % + 10 %
    a pass, which on a busy guest lets the deadline pass, or reaches 99 %, where the guest stops for a
    second at a time (returned in RV(plan), key V(auto_converge)). A guest paused to finish is allowed
    the downtime to send what is left at once."
  - "B(Never lose a VM): any failure before the switch-over leaves the guest running on the source
    exactly as it was and removes what was left on the destination. Post-copy is used only when
    O(allow_postcopy=true) - if the network fails during post-copy the guest is lost - and is never
    aborted; a post-copy whose link stops moving data is interrupted and resumed (libvirt's
    post-copy resume) when the link is back, or reported plainly.
    The source definition is removed only after the destination is confirmed running."
  - Idempotent - a domain already running on the destination and gone from the source (or only
    defined, inactive, on the source) is reported V(already_there), unchanged.
  - Check mode runs the checks and returns the plan with its predicted time and downtime.
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
      - Runs the checks and the dirty-rate measurement and returns the plan; nothing moves.
  diff_mode:
    support: none
  idempotent:
    support: full
seealso:
  - module: vmmigration.libvirt.migration_check
  - module: vmmigration.libvirt.migration_job_info
  - module: vmmigration.libvirt.cold_migrate
  - module: vmmigration.libvirt.shared_storage
options:
  domain:
    description: Name of the running domain on the source.
    type: str
    required: true
    aliases: [name]
  dest_uri:
    description:
      - libvirt URI of the destination. With O(p2p=true) (default) the B(source libvirtd) opens it, so
        it must be reachable from the source host (for example V(qemu+tls://hv2/system) or
        V(qemu+tls://hv2/system)); otherwise the module opens it. Only URIs of libvirt's QEMU driver
        (C(qemu), C(qemu+tcp), C(qemu+tls), C(qemu+ssh), ...) are taken; anything else is refused before
        anything happens.
    type: str
    required: true
  migration_uri:
    description:
      - Where the migration stream goes (for example V(tcp://10.0.0.2) for a dedicated migration
        network). C(tcp://HOST[:PORT]), C(rdma://HOST[:PORT]) or C(unix:///PATH); anything else is
        refused before anything happens. Default - chosen by libvirt from the destination's configuration.
    type: str
  p2p:
    description: Peer-to-peer migration (the source libvirtd drives it). With V(false), the module connects to both.
    type: bool
    default: true
  persistent:
    description: Define the domain persistently on the destination.
    type: bool
    default: true
  undefine_source:
    description: Remove the source definition once the destination is confirmed running (NVRAM is kept).
    type: bool
    default: true
  bandwidth_mibps:
    description: Bandwidth cap for the migration stream in MiB/s. Default - no cap.
    type: int
  postcopy_bandwidth_mibps:
    description:
      - Bandwidth cap for the post-copy phase in MiB/s (libvirt's post-copy bandwidth). Default - no cap, as
        in libvirt - post-copy sends the rest as fast as the link allows, since the guest waits for every page
        it touches that has not arrived yet.
    type: int
  expected_bandwidth_mibps:
    description:
      - Link speed in MiB/s used to predict convergence when no O(bandwidth_mibps) cap is set.
        Without either, the plan is decided on progress alone.
      - With a O(bandwidth_mibps) cap below it, also the bandwidth the switch-over counts on (see
        O(switchover_bandwidth_mibps)) where libvirt and QEMU can be told; the plan says whether it was.
    type: int
  switchover_bandwidth_mibps:
    description:
      - The bandwidth in MiB/s QEMU may count on for the switch-over (libvirt's C(bandwidth.avail.switchover)).
        QEMU sends the last pass without the O(bandwidth_mibps) cap, but decides when to pause the guest from
        the rate it measured under the cap, so with a cap well below the link it waits for a remainder that
        fits the cap's rate and a busy guest needs more passes (and more throttling) than the link requires.
      - The guest pauses for about what is left divided by this rate; a figure above what the link really
        carries makes that pause longer than O(max_downtime_ms).
      - Needs libvirt 11.1 or later on both hosts and QEMU 8.2 or later on the source; refused before anything
        moves on an older one. Default - O(expected_bandwidth_mibps) when it is above the cap and the hosts
        can be told, else QEMU's own measure.
    type: int
  max_downtime_ms:
    description: Largest pause of the guest allowed at switch-over; the allowed downtime ramps up to it.
    type: int
    default: 300
  parallel_connections:
    description: Parallel migration connections (multifd), 1 to 255. Default - one.
    type: int
  compression:
    description:
      - Compression method for the migration stream. Every supported libvirt knows V(xbzrle) and V(mt)
        (QEMU deprecated V(mt) in 8.2 and has since removed it); V(zlib) and V(zstd) (with
        O(parallel_connections)) need libvirt 9.4 on both hosts, and are refused before anything moves
        when either is older. Default - none.
    type: str
  announce:
    description:
      - Once the VM runs on the destination, have QEMU announce its NICs again there (QMP announce-self through
        libvirt); RV(announced) says whether it worked. QEMU announces once by itself when the VM resumes; this
        repeats it for switches that learn late. The same default as M(vmmigration.libvirt.evacuate)'s O(vmmigration.libvirt.evacuate#module:announce).
      - libvirt marks a domain sent a monitor command as tainted (C(custom-monitor) in its log); set V(false) to avoid it.
    type: bool
    default: true
  dest_security:
    description:
      - The destination's RV(vmmigration.libvirt.host_info#module:transport_security), gathered on the destination
        (the roles do). With it, O(tls=auto) knows before anything happens whether the destination is set up
        for TLS; without it, TLS is asked for and libvirt checks the destination's certificates when the move starts.
    type: dict
  copy_storage:
    description:
      - What to do with disks not proven shared. V(auto) and V(all) copy them in full during the migration
        (the destination pool must cover their directory), V(incremental) copies only what differs from a
        backing image the destination already has, V(none) refuses to migrate if any disk is not proven shared.
    type: str
    choices: [auto, all, incremental, none]
    default: auto
  completion:
    description:
      - V(auto) - choose from the prediction (see above). V(precopy), V(hybrid) (one pre-copy pass then
        post-copy), V(postcopy) (switch as soon as the first pass is done) and V(converge) (auto-converge
        from the start) force a strategy. V(hybrid) and V(postcopy) need O(allow_postcopy=true).
    type: str
    choices: [auto, precopy, hybrid, postcopy, converge]
    default: auto
  allow_postcopy:
    description:
      - Allow post-copy. If the network fails during post-copy the guest is lost; it always finishes otherwise.
      - Recovering a post-copy whose link failed (O(tuning.postcopy_recovery_attempts)) needs libvirt 8.5 on both hosts;
        with an older one the module warns when it plans a migration that may switch to post-copy.
    type: bool
    default: false
  final_action:
    description:
      - What to do when pre-copy stalls at the largest allowed downtime or passes its deadline.
        V(auto) - V(postcopy) when allowed, else V(converge). V(converge) relies on auto-converge
        (enabled from the start) and pauses the guest if the deadline passes anyway. V(pause) suspends
        the guest so the rest is copied (a longer pause, never a lost guest). V(abort) gives up and
        leaves the guest on the source.
    type: str
    choices: [auto, postcopy, converge, pause, abort]
    default: auto
  hard_timeout_s:
    description: Abort a pre-copy migration still running after this many seconds (never a post-copy one). Default - none.
    type: float
  headroom_mib:
    description:
      - Memory in MiB to keep free on the destination beyond the guest's, for the memory check - the same name
        and default as in every module and role of the collection.
    type: int
    default: 1024
  tuning:
    description:
      - How the engine drives convergence and watches the move - defaults nobody needs to touch, measured on the
        lab and kept for the rare guest or link that needs another value. Each key has the default shown; give
        only the ones to change.
    type: dict
    default: {}
    suboptions:
      downtime_steps:
        description: Steps of the downtime ramp.
        type: int
        default: 5
      downtime_step_delay_s:
        description: Seconds between downtime steps. Default - O(tuning.downtime_step_delay_s_per_gib) times the RAM in GiB.
        type: float
      downtime_step_delay_s_per_gib:
        description: Seconds between downtime steps per GiB of guest RAM (at least 0.5 s).
        type: float
        default: 8.0
      timeout_per_gib_s:
        description: Completion deadline in seconds per GiB of guest RAM, before the final action.
        type: float
        default: 150
      min_timeout_s:
        description: The completion deadline is never shorter than this.
        type: float
        default: 30
      stall_iterations:
        description:
          - Pre-copy has stalled when the dirty memory of this many passes in a row has not shrunk (by 5%)
            below the best earlier pass.
        type: int
        default: 2
      dead_link_s:
        description:
          - No byte transferred for this many seconds means the migration link is dead - the migration is
            aborted while the source still holds the whole guest (never switched to post-copy or paused).
        type: float
        default: 5
      poll_interval_s:
        description: Seconds between job statistics reads.
        type: float
        default: 0.25
      dirty_rate_sample_s:
        description:
          - Seconds over which QEMU measures the guest's dirty rate before the move starts (while the checks run);
            V(0) skips the measurement.
          - Taken only when the link speed is known (O(bandwidth_mibps) or O(expected_bandwidth_mibps)) - without it
            the dirty rate decides nothing, and RV(dirty_rate_mibps) is the rate the migration itself measured.
        type: int
        default: 1
      postcopy_recovery_attempts:
        description:
          - How often to try resuming a failed post-copy migration (libvirt 8.5 or newer) before giving up, waiting
            2, 4, 8 and then 15 s between attempts (about 90 s with the default), which gives a link that comes back
            the time to do so. A post-copy whose link stops moving data for O(tuning.dead_link_s) is interrupted
            (libvirt's post-copy abort, which pauses it; it is never aborted) and then resumed this way.
          - A guest left paused by a post-copy that could not be resumed is resumed by running the module again
            with the same destination.
        type: int
        default: 8
  status_file:
    description:
      - A file on the host running the module that is rewritten with the migration's progress (JSON) at
        every poll, so a long migration can be watched while it runs (also see
        M(vmmigration.libvirt.migration_job_info)). Its C(phase) is C(starting), C(migrating), C(postcopy),
        C(postcopy_recovery) (with the attempt) or C(done). Its directory must exist.
    type: path
'''

EXAMPLES = r'''
- name: Live-migrate web01 to hv2, letting the module pick the strategy
  vmmigration.libvirt.migrate:
    domain: web01
    dest_uri: qemu+tls://hv2.example.com/system
    max_downtime_ms: 300
  register: moved

- name: A busy database over a capped link, allowing post-copy, watched while it runs
  vmmigration.libvirt.migrate:
    domain: db01
    dest_uri: qemu+tls://hv3.example.com/system
    migration_uri: tcp://10.10.0.3
    bandwidth_mibps: 1000
    allow_postcopy: true
    status_file: /run/vmmigration-db01.json
  async: 3600
  poll: 0
  register: job

- name: Show what happened
  ansible.builtin.debug:
    msg: "{{ moved.plan.strategy }}: {{ moved.total_time_s }} s, downtime {{ moved.downtime_ms }} ms"
'''

RETURN = r'''
answering:
  description:
    - With O(verify_addresses) - C(addresses) (each address to the seconds from the start of the probe to its first
      reply, or null), C(all_answered), C(since_move_s) (from the VM running on the destination to the last first
      reply) and C(error) (why the probe could not run).
  returned: when the VM moved and O(verify_addresses) was given
  type: dict
  sample: {addresses: {198.51.100.7: 0.012}, all_answered: true, since_move_s: 0.412, error: null}
announced:
  description: With O(announce) - V(true), or why QEMU's announce-self failed (the VM moved all the same).
  returned: when the VM moved and O(announce) was set
  type: raw
state:
  description:
    - V(migrated), V(migrated_after_recovery) (a post-copy failed and was resumed; see RV(recovered_from)),
      V(already_there) or V(planned) (check mode).
    - When the module fails - V(rolled_back) (the guest runs on the source as before; the error says so when a
      half-migrated copy could not be removed from the destination), V(rolled_back_unconfirmed) (the guest runs on
      the source again, but the destination could not be read and may run it too - the source had stopped the guest
      for the switch-over, or whether it had cannot be told; if the destination finished and its reply was lost, it
      runs the guest - check it there with C(virsh list --all) before anything else), V(postcopy_failed) (the guest
      is paused, split between the hosts, until a resume succeeds), V(postcopy_running) (a post-copy still running
      past every bound - never aborted; libvirt finishes it), V(destination_unknown) (the source ended the job but
      the destination cannot be reached to confirm it runs there; the source definition is kept),
      V(destination_not_running), C(source_) and the guest's state on the source (for example V(source_paused))
      when a failed move left it not running there and the destination does not run it, or V(unknown) (where the
      guest runs could not be read back on one side - nothing was resumed or removed; check both hosts before
      starting it).
    - V(migrated) with the module failed - the guest runs on the destination, but the source cleanup failed; the
      error says what the source keeps.
  returned: always
  type: str
  sample: migrated
recovered_from:
  description: The error that interrupted a post-copy migration that was then resumed.
  returned: when a post-copy migration failed and was resumed in the same run
  type: str
plan:
  description:
    - The chosen strategy, final action, flags, reason, prediction, measured dirty rate, deadline.
    - V(auto_converge) - with auto-converge, the first vCPU throttle and its step, in percent.
    - V(switchover_bandwidth_mibps) - what QEMU counts on for the switch-over (null - its own measure), and
      V(switchover_bandwidth_why).
  returned: when the domain was not already there
  type: dict
  sample:
    strategy: hybrid
    final_action: postcopy
    reason: "predicted not to converge (...): one pre-copy pass, then post-copy"
    dirty_rate_mibps: 72.0
    predicted_total_s: 16.0
decisions:
  description: Every decision of the monitor loop with its time (seconds from the start).
  returned: when a migration ran
  type: list
  elements: dict
  sample: [{t: 0.0, action: start, reason: "flags live,peer2peer", argument: precopy}]
total_time_s: {description: Wall time of the migration job., type: float, returned: when a migration ran, sample: 3.2}
phases:
  description:
    - Where the module's time went, in seconds - C(checks_s) (the checks and the storage proof, while QEMU measures
      the dirty rate), C(dirty_rate_wait_s) (what was left of that measurement), C(planning_s), C(slot_wait_s)
      (in a drain, a move checked and planned ahead of its migration slot waiting for it), C(migration_s) (the
      job) and C(commit_s) (the destination confirmed running).
  type: dict
  returned: when a migration was planned or ran
  sample: {checks_s: 0.41, dirty_rate_wait_s: 0.62, planning_s: 0.0, migration_s: 2.1, commit_s: 0.05}
running_on_destination_at:
  description: Epoch time at which the destination was confirmed running the guest (the migration's end).
  type: float
  returned: when a migration ran
  sample: 1795000000.123
downtime_ms: {description: The guest's pause at switch-over as libvirt measured it., type: int, returned: when a migration ran}
bytes_transferred: {description: Bytes sent., type: int, returned: when a migration ran}
iterations: {description: Pre-copy iterations., type: int, returned: when a migration ran}
postcopy: {description: Whether the migration switched to post-copy., type: bool, returned: when a migration ran}
postcopy_requests: {description: Pages the destination requested during post-copy., type: int, returned: when a migration ran}
paused: {description: Whether the guest was paused to finish., type: bool, returned: when a migration ran}
bandwidth_mibps: {description: Average memory transfer rate., type: float, returned: when a migration ran}
dirty_rate_mibps:
  description: The guest's dirty rate - measured before the move when the link speed is known, else the one the migration measured.
  type: float
  returned: when a migration ran
stats:
  description: libvirt's completed job statistics.
  returned: when a migration ran
  type: dict
storage:
  description: Disks shared, disks copied, and the disks the unsafe override was passed for.
  returned: when the domain was not already there
  type: dict
checks:
  description: The pre-migration checks (as M(vmmigration.libvirt.migration_check) returns them).
  returned: when the domain was not already there
  type: list
  elements: dict
source:
  description: Source host (uri, hostname, uuid).
  returned: always
  type: dict
transport:
  description:
    - How the guest's memory travels - tls (V(true) when libvirt was asked for TLS), encrypted (V(null) while
      libvirt has still to check the destination), transport (V(tls) or V(plaintext)) and why.
  returned: when the domain was found on the source
  type: dict
  sample: {tls: true, encrypted: true, transport: tls, why: both hosts are set up for TLS migration}
destination:
  description: Destination host (uri, hostname, uuid).
  returned: when it was reached
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.connection import (
    CONNECTION_ARGSPEC,
    libvirt_session,
    require_libvirt,
    start_event_loop,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.live import (
    migration_argspec,
    validate,
)
from ansible_collections.vmmigration.libvirt.plugins.module_utils.engines.pipeline import (
    VERIFY_ARGSPEC,
    move_vm,
    silent_message,
    verify_problems,
)


def main():
    argument_spec = dict(domain=dict(type='str', required=True, aliases=['name']), dest_uri=dict(type='str', required=True),
                         dest_security=dict(type='dict'), announce=dict(type='bool', default=True))
    argument_spec.update(VERIFY_ARGSPEC)
    argument_spec.update(migration_argspec())
    argument_spec.update(CONNECTION_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    require_libvirt(module)
    problems = validate(p) + verify_problems(p)
    if problems:
        module.fail_json(msg='; '.join(problems))
    start_event_loop()
    with libvirt_session(module) as cache:
        src = cache.get(p['uri'])
        dst = cache.get(p['dest_uri'])
        src.host_uuid()
        # the per-VM pipeline the drain runs for each VM: move, announce, verify
        result = move_vm(src, dst, p['domain'], 'live', p, check_mode=module.check_mode,
                         hosts_security={'dest': p['dest_security']} if p['dest_security'] else None,
                         announce_self=p['announce'], addresses=p['verify_addresses'],
                         verify_timeout_s=p['verify_timeout_s'])
    if result.get('state') == 'migrated_after_recovery':
        module.warn('the post-copy migration of %s failed (%s) and was resumed: it runs on the destination'
                    % (p['domain'], result.get('recovered_from', 'an earlier run')))
    silent = silent_message(result)
    if silent:
        module.fail_json(msg=silent, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
