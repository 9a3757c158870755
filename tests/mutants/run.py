"""The mutation gate: mutants of our own engines that the fault sweep must kill.

Each mutant is one small change that breaks a never-two-never-none rule (the source removed before the
destination is confirmed, a copy not verified, a post-copy destroyed, ...). For each, a temporary copy of
the collection gets the change and the sweep (tests/unit/plugins/module_utils/test_faults.py) runs on it;
the sweep must fail. A mutant whose text is not found in the code fails the gate too (it would otherwise
test nothing). Prints one line per mutant and `mutants killed N/N`; exits non-zero unless every mutant
is killed.

Usage: python tests/mutants/run.py [-j JOBS] [NAME ...]
"""
import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
SWEEP = 'tests/unit/plugins/module_utils/test_faults.py'
MU = 'plugins/module_utils/'
RUNRECORD = 'tests/unit/plugins/module_utils/test__runrecord.py'
ACTION = 'plugins/action/'
BACKGROUND = 'tests/unit/plugins/action/test_evacuate_action.py'
FIRST = ('test_a_full_disk_never_abandons_a_move', 'test_the_drain_never_exits_while_a_move_runs',
         'test_an_approved_shared_disk_is_proven_again_before_a_move',
         'test_a_disk_already_on_the_destination_is_never_overwritten',
         'test_post_copy_split_is_resumed_never_destroyed',
         'test_a_guest_its_owner_paused_is_not_resumed_by_a_recovered_move')

# name: (file, [(text in our code, what it becomes)], the rule it breaks[, the tests that must kill it - the sweep
# when not given])
MUTANTS = {
    'source-removed-before-destination-confirmed': (MU + 'engines/live_commit.py', [
        ("        wait_until(up, 15, 0.1, self.engine.clock, self.engine.sleep)\n        there, dst_state = seen['dom'], seen['state']\n",
         "        there, dst_state = None, 'running'\n")],
        'the live commit removes the source definition without confirming that the destination runs the guest'),
    'copy-verification-skipped': (MU + 'engines/cold_copy.py', [
        ("        if self.o['verify']:\n            check, _length = download(new",
         "        if False:\n            check, _length = download(new")],
        'a cold copy is not read back and compared'),
    'postcopy-destroyed-not-resumed': (MU + 'engines/live_commit.py', [
        ("            self.engine.result['state'] = 'postcopy_failed'\n            recovered, how = self.engine.postcopy.recover(dom)",
         "            self.engine.result['state'] = 'postcopy_failed'\n            dom.destroy()\n"
         "            recovered, how = False, 'destroyed'")],
        'a failed post-copy is destroyed on the source instead of resumed'),
    'postcopy-aborted-not-resumed': (MU + 'engines/live_commit.py', [
        ("            self.engine.result['state'] = 'postcopy_failed'\n            recovered, how = self.engine.postcopy.recover(dom)",
         "            self.engine.result['state'] = 'postcopy_failed'\n            driver.abort_job(dom)\n"
         "            recovered, how = False, 'aborted'")],
        'a failed post-copy is aborted instead of resumed'),
    'source-resumed-without-asking-destination': (MU + 'engines/live_commit.py', [
        ("        if dst_state == 'running' or (dst_state == 'paused' and src_state in ('shutoff', 'gone')):",
         "        if False:"),
        ("        if dst_state == 'unknown' and src_state != 'running' or src_state == 'unknown' and dst_state != 'gone':",
         "        if False:")],
        'a live rollback resumes a paused source whatever the destination runs'),
    'source-disk-deleted-before-verification': (MU + 'engines/cold_copy.py', [
        ("            upload(new, self.dst.conn, fd, deadline)\n",
         "            upload(new, self.dst.conn, fd, deadline)\n            vol.delete(0)\n")],
        'the source disk goes as soon as its copy is sent, before it is verified'),
    'existing-destination-disk-overwritten': (MU + 'engines/cold_copy.py', [
        ("        problems = self.already_there(files)\n",
         "        problems = []\n"),
        ("        if self._volume(dst_pool, dst_base) is not None:\n            raise ColdMigrationError('the destination",
         "        if False:\n            raise ColdMigrationError('the destination")],
        'a file already at the destination path is overwritten'),
    'lost-reply-taken-as-failure': (MU + 'engines/live_commit.py', [
        ("        there, dst_state = self._read_back(self.engine.dst, uuid, dst_errors)",
         "        there, dst_state = None, 'gone'")],
        'a failed migration call is taken as "not on the destination" without reading the destination back'),
    'drain-exits-with-moves-running': (MU + 'engines/drain.py', [
        ("            if not wait_until(ended, MOVE_OVERRUN_LIMIT_S, 5.0, self.clock, self.sleep):",
         "            if True:")],
        'the drain returns at its own limit while a move still runs'),
    'drain-ends-while-a-vm-is-verified': (MU + 'engines/drain.py', [
        ("                if not self.running and (flags['stop'] or not pending):",
         "                if not self.slots.holding() and (flags['stop'] or not pending):")],
        'the drain ends once every VM reached its destination, while one is still announced and verified: its '
        'result (and whether it answers) is lost', 'tests/unit/plugins/module_utils/test__pipeline.py'),
    'prepared-move-migrates-without-a-slot': (MU + 'engines/drain.py', [
        ("            if move.get('slot') == 'ahead':\n                move['slot'] = 'ready'\n",
         "            if move.get('slot') == 'ahead':\n                move['slot'] = 'held'\n")],
        'a move checked and planned ahead of its slot migrates at once: more migrations than the limits allow',
        'tests/unit/plugins/module_utils/test__evacuation.py'),
    'stopped-drain-starts-a-prepared-move': (MU + 'engines/drain.py', [
        ("                    move['slot'] = 'refused'\n                    return 'refused'\n",
         "                    return True\n")],
        'a move prepared ahead migrates although the drain stopped (stop_on_failure, its deadline) before its slot',
        'tests/unit/plugins/module_utils/test__evacuation.py'),
    'refused-move-reported-failed': (MU + 'engines/drain.py', [
        ("        if refused:\n            line['state'] = 'not_started'\n", "")],
        'a move prepared ahead that the drain\'s stop kept from its slot is reported as a failed move, not as not started',
        SWEEP + '::test_a_drain_stopped_at_its_deadline_starts_no_move_prepared_ahead'),
    'refused-move-dropped': (MU + 'engines/drain.py', [
        ("                # (listed with the moves the stop kept from starting)\n                self.pending.append(move)\n",
         "                pass\n")],
        'a move prepared ahead that the drain\'s stop kept from its slot is in neither the results nor the moves left',
        SWEEP + '::test_a_drain_stopped_at_its_deadline_starts_no_move_prepared_ahead'),
    'proofs-share-a-transient-pool': (MU + 'driver/storage_proof.py', [
        ("    with _PROOF:\n        return _probe_directory(", "    if True:\n        return _probe_directory(")],
        'two proofs of one shared directory at once (a drain checks moves ahead of their slots) share a transient pool '
        'one of them destroys: the other says the disk is not shared',
        SWEEP + '::test_shared_storage_proven_by_several_moves_at_once'),
    'return-ignores-moves-arriving': (MU + 'engines/drain.py', [
        ("                where['arriving_mib'] = self.slots.arriving_mib(move)\n", "                where['arriving_mib'] = 0\n")],
        'a move checked while another is still arriving at its destination does not count it: two VMs come home into '
        'room for one',
        SWEEP + '::test_a_return_counts_the_moves_still_arriving_home'),
    'return-forgets-the-memory-it-moves': (MU + 'engines/drain_files.py', [
        ("'memory_mib': start.get('memory_mib') or 0}", "'memory_mib': 0}")],
        'the return journey does not know the memory of the VMs it brings back (the drain\'s journal kept none): its '
        'moves count nothing for each other',
        SWEEP + '::test_a_return_counts_the_moves_still_arriving_home'),
    'migration-starts-before-its-slot': (MU + 'engines/live.py', [
        ("        await_slot(self, self.phase('planning_s', mark))\n", "        self.phase('planning_s', mark)\n")],
        'a live move checked ahead migrates without waiting for its slot (the engine never asks the drain)',
        SWEEP + '::test_a_move_prepared_ahead_changes_nothing_before_its_slot'),
    'verified-vm-keeps-its-slot': (MU + 'engines/drain.py', [
        ("return [m for n, m in d.running.items() if n not in d.finishing and m.get('slot') in (None, 'held')]",
         "return [m for n, m in d.running.items() if m.get('slot') in (None, 'held')]")],
        'a VM being announced and verified holds its migration slot: the next move waits for a step that uses no '
        'link', 'tests/unit/plugins/module_utils/test__pipeline.py'),
    # (two guards: the arrival, and the engine's result kept on a later error - each covers the other, so this one
    # drops both in the drain; engine-result-dropped-after-the-move drops the second alone where it is made)
    'arrived-vm-tried-elsewhere': (MU + 'engines/drain.py', [
        ("                 and not arrived else None)", "                 else None)"),
        ("            result = getattr(e, 'result', None)\n",
         "            result = getattr(e, 'result', None) if isinstance(e, LibvirtClientError) else None\n")],
        'a VM that already runs on its destination is sent to an alternate when a later step fails unexpectedly: '
        'its source is gone, and the report says it failed', 'tests/unit/plugins/module_utils/test__cluster.py'),
    'engine-result-dropped-after-the-move': (MU + 'engines/pipeline.py', [
        ("        if getattr(e, 'result', None) is None:\n            e.result = result\n        raise",
         "        raise")],
        'a failure after the engine moved the VM, before the drain heard it arrived, loses what the engine did: the '
        'VM is taken for untouched and sent to an alternate', 'tests/unit/plugins/module_utils/test__cluster.py'),
    'unconfirmed-rollback-said-rolled-back': (MU + 'engines/live_commit.py', [
        ("'rolled_back_unconfirmed' if may_run_there else 'rolled_back')", "'rolled_back')")],
        'a guest resumed on its source after the switch-over had begun, its destination unread, is reported rolled back '
        '(as if the destination held nothing of it), though that host may run it too',
        'tests/unit/plugins/module_utils/test__cluster.py::test_a_vm_whose_link_goes_at_the_switch_over_is_never_sent_elsewhere'),
    'unreadable-mark-said-rolled-back': (MU + 'engines/live_commit.py', [
        ("failed; check with virsh list --all there before anything else' % why), True\n",
         "failed; check with virsh list --all there before anything else' % why), False\n")],
        'a guest paused by the move to finish, or whose mark cannot be read, its destination unread, is reported rolled '
        'back, though the switch-over may have happened there',
        SWEEP + '::test_an_unreadable_destination_is_said_to_maybe_run_the_guest_unless_the_source_never_stopped_it'),
    'in-flight-reroute-after-the-switch-over': (MU + 'engines/live_commit.py', [
        ("not state['paused'] and marked is False:", "not state['paused'] and marked is not None:")],
        'a move whose destination went at the switch-over (libvirt resumed the source it had stopped) is taken for '
        'one that sent nothing complete, and the VM is tried elsewhere while the destination may run it',
        'tests/unit/plugins/module_utils/test__cluster.py'),
    'in-flight-never-rerouted': (MU + 'engines/live_commit.py', [
        ("        if not state['postcopy'] and not state['paused'] and", "        if False and not state['paused'] and")],
        'a VM in flight when its destination\'s link goes before the switch-over stays on its source, the drain '
        'incomplete, though an alternate could take it', 'tests/unit/plugins/module_utils/test__cluster.py'),
    'missing-answer-taken-as-nothing': (MU + 'decide/cluster.py', [
        ("            if any(left_for(asked, r).values()):\n                continue\n",
         "            if False:\n                continue\n")],
        'a host that was left a question (a CPU definition, a disk directory, a storage server) and did not answer is '
        'planned as if it had answered nothing, instead of refused', 'tests/unit/plugins/module_utils/test__cluster.py'),
    'cpu-answered-in-the-read-dropped': (MU + 'decide/cluster.py', [
        ("        out[h] = dict(a, cpus=dict(r.get('cpu_answers') or {}, **(a.get('cpus') or {})))",
         "        out[h] = a")],
        'the CPU definitions a host answered in its read (and was not asked again) are lost: its "no" is not '
        'heard, or every destination looks unasked', 'tests/unit/plugins/module_utils/test__cluster.py'),
    'step-drains-predicted-as-alone': (MU + 'orchestration/rolling.py', [
        ("unplaceable, stop_start_s, learned_by[n], role_overheads, alongside=True)",
         "unplaceable, stop_start_s, learned_by[n], role_overheads, alongside=False)")],
        'the drains of a step of several hosts are predicted with the role cost measured alone (the lab measured '
        '5 s beside another drain, 3 s alone)', 'tests/unit/plugins/module_utils/test__rolling.py'),
    'one-role-overhead-for-every-phase': (MU + 'decide/calibration.py', [
        ("        return (ph is None or x.get('phase') == ph or (not strict and x.get('phase') is None)) and",
         "        return (ph is None or True) and")],
        'a return is predicted with the role cost of the drains (and a drain with the returns\')',
        'tests/unit/plugins/module_utils/test__calibration.py'),
    'status-write-error-escapes': (MU + 'engines/live.py', [
        ("    except OSError as e:\n        return 'cannot write the status file",
         "    except ValueError as e:\n        return 'cannot write the status file")],
        'an OS error writing a progress file escapes the move'),
    'approved-shared-storage-not-reproven': (MU + 'engines/live.py', [
        ("            changed = reprove_shared(src, dst, relevant_disks(facts_disks), o['approved'].get('storage') or {})",
         "            changed = []")],
        'a disk an approved plan said was shared is not proven again before the move relies on it'),
    'cold-source-restarted-when-destination-unknown': (MU + 'engines/cold_commit.py', [
        ("            there, state = read_back(self.dst, uuid, errors, self.clock, self.sleep)\n"
         "            if state == 'running':\n                self.defined = there",
         "            there, state = None, 'shutoff'\n"
         "            if state == 'running':\n                self.defined = there"),
        ("                self.step('rollback', 'cannot ask the destination whether it has the guest: %s'\n"
         "                          % (errors[-1] if errors else 'no answer'))\n                return False",
         "                self.step('rollback', 'cannot ask the destination whether it has the guest: %s'\n"
         "                          % (errors[-1] if errors else 'no answer'))")],
        'a failed cold start is taken as a failure without reading the destination back, and the rollback '
        'restarts the source although the destination may run the guest (a lost start reply: two hosts)'),
    'owner-paused-guest-resumed-by-recovered-move': (MU + 'engines/live_commit.py', [
        ("        self.commit(dom, uuid, dict(state, paused=state['paused'] or self.engine.started_running), {})",
         "        self.commit(dom, uuid, dict(state, paused=True), {})")],
        'a move committed after its reply was lost resumes a guest its owner had paused'),
    'driver-takes-no-answer-for-no-domain': (MU + 'driver/typed.py', [
        ("        if is_error(e, kind):\n            return None\n        raise",
         "        return None")],
        'the typed driver answers "no such domain" when the host did not answer at all (a lookup that failed on '
        'a lost connection), so a read-back takes an unreachable destination for one without the guest'),
    'nvram-left-behind': (MU + 'engines/cold_copy.py', [
        ("            if not shared:\n                files.append({'kind': 'nvram'",
         "            if False:\n                files.append({'kind': 'nvram'")],
        'a cold move leaves the UEFI NVRAM behind: the guest boots on the destination without its own variables'),
    'shutdown-said-without-waiting': (MU + 'engines/power.py', [
        ("            if not dom.isActive():\n                done[n] = {'how': 'clean'",
         "            if True:\n                done[n] = {'how': 'clean'")],
        'the shutdown policy (one for cold moves, the drain and stop in place) reports a VM shut down without waiting '
        'for it to stop'),
    'unseen-marker-taken-as-shared': (MU + 'driver/storage_proof.py', [
        ("        except LibvirtClientError:\n            return 'not_shared', ('same path, different storage",
         "        except LibvirtClientError:\n            return 'shared', ('same path, different storage")],
        'the precheck takes a storage marker the destination cannot see for proof of shared storage: the disk '
        'is not copied and the guest starts on the destination without it'),
    'cold-rollback-guesses-the-source-state': (MU + 'engines/cold_commit.py', [
        ("            source = 'running' if self.restarted or not was_running else self._source_state(uuid)",
         "            source = 'running' if self.restarted or not was_running else 'shutoff'")],
        'after a cold rollback the source is not read back: a guest restarted there is reported "could not be '
        'started again" when a later read failed'),
    'closed-connection-not-reopened': (MU + 'driver/typed.py', [
        ("transient=is_transient(code) or connection_gone(text),", "transient=is_transient(code),")],
        'a connection libvirt closed (keepalive, or any call after) is not taken as transient: a read-back keeps '
        'asking the dead connection and ends "unknown" although the host answers again (found in the lab)'),
    'paused-destination-left-after-lost-pause-reply': (MU + 'engines/live_commit.py', [
        ("        if dst_state == 'paused' and (state['paused'] or state.get('final_taken') == 'pause'):",
         "        if dst_state == 'paused' and state['paused']:")],
        'a pause whose reply was lost leaves the guest paused on the destination'),
    # (the rolling maintenance's run identity: killed by its own tests, not the sweep)
    'new-run-over-an-unfinished-run': (MU + 'orchestration/run_record.py', [
        ("    if unfinished:\n        raise RecordError('run %s is not finished", "    if False:\n        raise RecordError('")],
        'a new run starts while one is unfinished: the hosts it left half done and the VMs away are forgotten',
        RUNRECORD),
    'every-run-the-same-id': (MU + 'orchestration/run_record.py', [
        ("    new_id = run_id or new_run_id(group, now)", "    new_id = run_id or 'rolling'")],
        'every new run gets the same id: next month\'s window finds it finished and does nothing, green', RUNRECORD),
    'resume-with-nothing-to-resume-starts-a-run': (MU + 'orchestration/run_record.py', [
        ("        if not unfinished:\n            done = sorted(", "        if False:\n            done = sorted(")],
        'a job asked to resume, with nothing to resume, starts a new run: maintenance nobody asked for', RUNRECORD),
    'new-attempt-forgets-the-vms-away': (MU + 'orchestration/run_record.py', [
        ("    r.update(error=None, failed_phase=None, predicted=dict(predicted or {}))",
         "    r.update(error=None, failed_phase=None, predicted=dict(predicted or {}), drained=[])")],
        'a resumed host forgets the VMs its earlier attempt sent away: they are never brought back', RUNRECORD),
    'background-drain-failure-dropped': (ACTION + 'evacuate.py', [
        ("        drained = dict((k, v) for k, v in job.items() if k not in ASYNC_KEYS)",
         "        drained = dict((k, v) for k, v in job.items() if k not in ASYNC_KEYS + ('failed', 'msg'))")],
        'a drain that failed in the background is reported as a success', BACKGROUND),
    'background-result-read-before-the-drain-ended': (ACTION + 'evacuate.py', [
        ("        if not job.get('finished'):\n            return dict(result, failed=True, ansible_job_id=jid, msg='the drain in",
         "        if False:\n            return dict(result, failed=True, ansible_job_id=jid, msg='the drain in")],
        'the task ends when the status says finished, before the drain\'s own result is there: no moves reported, '
        'no failure', BACKGROUND),
    'plaintext-without-allow-plaintext': (MU + 'decide/transport.py', [
        ("        if not allow_plaintext:\n            out['refused'] = (\"tls=disabled would send",
         "        if False:\n            out['refused'] = (\"tls=disabled would send")],
        'tls=disabled sends a guest\'s memory in the clear although allow_plaintext was not given',
        'tests/unit/plugins/module_utils/test__security.py'),
    'drain-headroom-not-every-moves': (MU + 'engines/drain.py', [
        ("                opts['hard_timeout_s'] = p['per_vm_timeout_s']\n"
         "                # (one headroom per drain: its plan's, and each move's own memory check - a return's too)\n"
         "                opts['headroom_mib'] = p.get('headroom_mib', opts['headroom_mib'])\n",
         "                opts['hard_timeout_s'] = p['per_vm_timeout_s']\n")],
        'a drain\'s live moves check the destination\'s memory against the module default, not the drain\'s headroom: '
        'a move the plan refused room for runs, or one it approved is refused',
        'tests/unit/plugins/module_utils/test__pipeline.py'),
    'renamed-option-passed-through': ('plugins/plugin_utils/renamed.py', [
        ("            problems.append('%s was renamed: give %s' % (old, new))", "            pass")],
        'an option given by its old name reaches the module (refused there without its new name, or silently '
        'ignored inside migrate_options)',
        'tests/unit/plugins/plugin_utils/test_renamed.py::test_an_old_name_is_named_with_its_new_one'),
    # stop in place (monthly patching): a VM is stopped only on purpose, and never left stopped unsaid
    'stop-in-place-with-others-running': (MU + 'engines/power.py', [
        ("        if others:\n            why.append(", "        if False:\n            why.append(")],
        'VMs are stopped for a maintenance while a VM the drain should have moved still runs there (it goes down '
        'with the host)', 'tests/unit/plugins/module_utils/test__power.py'),
    'stuck-guest-leaves-the-others-stopped': (MU + 'engines/power.py', [
        ("                client.call('cannot start %s again' % n, doms[n].create)\n                back.append(n)",
         "                back.append(n)")],
        'a guest that will not shut down fails the step with the others it stopped left down - none of them '
        'recorded as stopped', 'tests/unit/plugins/module_utils/test__power.py'),
    'vm-not-back-passes-silently': (MU + 'engines/power.py', [
        ("    if failed:\n        raise PowerError('did not come back", "    if False:\n        raise PowerError('did not come back")],
        'a VM that did not start again (or does not answer) passes as back: the step ends with it down',
        'tests/unit/plugins/module_utils/test__power.py'),
    'stopped-vm-forgotten-by-the-record': (MU + 'orchestration/run_record.py', [
        ("        if _back(r, s) is None and s.get('name') not in out:", "        if False:")],
        'a VM stopped in place and not started again is not in the record\'s list to start: a resumed run leaves it '
        'down', 'tests/unit/plugins/module_utils/test__rolling_patching.py'),
    'excluded-vm-moved-by-an-approved-plan': ('plugins/module_utils/engines/drain_plan.py', [
        ("    plan = without_excluded(plan, [n for n in p.get('exclude_domains') or [] if (source_doms.get(n) or (0, 0))[1]])\n",
         "")],
        'a VM to stop in place is moved by the drain of an approved plan (and the stop then refuses, or finds it gone)',
        'tests/unit/plugins/module_utils/test__evacuation.py'),
    'start-while-running-elsewhere': (MU + 'engines/power.py', [
        ("            if elsewhere:\n                r.update(state='failed', error='not started here",
         "            if False:\n                r.update(state='failed', error='not started here")],
        'a VM stopped in place is started again on its host while another host of the group runs it (two copies of '
        'one guest on one disk)', 'tests/unit/plugins/module_utils/test__power.py'),
    'stop-not-recorded-before-it-is-asked': (MU + 'orchestration/run_record.py', [
        ("                                                   for n in names or []]",
         "                                                   for n in ()]")],
        'a stop cut short (a lost connection, a lost controller) leaves a VM down that no record names: a resumed run '
        'does not start it', 'tests/unit/plugins/module_utils/test__rolling_patching.py'),
    'unmovable-vm-stopped-without-the-policy': (MU + 'orchestration/rolling.py', [
        ("        elif unplaceable == 'stop_in_place':", "        elif True:")],
        'a VM that cannot move is stopped in place although the operator chose refuse or skip',
        'tests/unit/plugins/module_utils/test__rolling_patching.py'),
    'cluster-plan-sends-to-a-host-out-with-it': (MU + 'decide/cluster.py', [
        ("        dests = [d for d in receivers if d not in outs]\n", "        dests = list(receivers)\n")],
        'the drains of one step send VMs to each other: a VM lands on a host under maintenance',
        'tests/unit/plugins/module_utils/test__cluster.py'),
    'cluster-plan-ignores-collisions': (MU + 'decide/cluster.py', [
        ("        clash = self.clashes(vm, dest_set)\n", "        clash = {}\n")],
        'a VM is planned onto a host that has a domain of its name or UUID (a second definition of one guest)',
        'tests/unit/plugins/module_utils/test__cluster.py'),
    'cluster-plan-forgets-what-a-step-placed': (MU + 'decide/cluster.py', [
        ("        free[dst] -= mib\n", "")],
        'the drains of one step each count a destination\'s memory as if the others put nothing there: together they '
        'overbook it', 'tests/unit/plugins/module_utils/test__cluster.py'),
    'cluster-plan-ignores-the-cpu-answer': (MU + 'decide/cluster.py', [
        ("                cpu_err, compared = (ans or None), True\n", "                cpu_err, compared = None, True\n")],
        'a VM is planned onto a host whose libvirt said it cannot run its CPU', 'tests/unit/plugins/module_utils/test__cluster.py'),
    'alternate-taken-unchecked': (MU + 'engines/drain_plan.py', [
        ("        alt = next((a for a in m.get('alternates') or [] if why_not(m, a['destination']) is None), None)\n",
         "        alt = next(iter(m.get('alternates') or []), None)\n")],
        'a VM whose destination was lost goes to an alternate that cannot take it now (unreachable, full, a name taken)',
        'tests/unit/plugins/module_utils/test__cluster.py'),
    'alternate-forgets-what-it-took': (MU + 'engines/drain_plan.py', [
        ("        taken[m['destination']] = taken.get(m['destination'], 0) + (m.get('memory_mib') or 0)\n", "")],
        'the moves kept at a destination (planned or rerouted there) are not counted: together they overbook it',
        'tests/unit/plugins/module_utils/test__cluster.py'),
    'step-drain-takes-the-whole-inbound-limit': (MU + 'engines/drain.py', [
        ("        limits = dict(p, inbound_limits=(plan or {}).get('inbound_limits') or {})\n", "        limits = p\n")],
        'a drain of a step runs as many moves into a shared destination as the whole limit allows: with the others '
        'of its step, more than the limit at once', 'tests/unit/plugins/module_utils/test__evacuation.py'),
    'any-failed-move-tried-elsewhere': (MU + 'engines/drain.py', [
        ("    if result.get('changed') is not False:\n        return False\n"
         "    if result.get('state') not in ((None, 'rolled_back') if method != 'cold' else (None,)):\n        return False\n",
         "")],
        'a move that failed after it changed something (a copy left, a source paused, a post-copy) is tried again '
        'on an alternate: the guest could end up defined or running on two hosts'),
    'refused-move-rerouted-to-a-full-host': (MU + 'engines/drain.py', [
        ("        if need > now['free_mib']:\n            continue\n", "")],
        'a VM a destination refused during the drain goes to an alternate without the memory for it (beside the '
        'headroom and the moves still going there)', 'tests/unit/plugins/module_utils/test__cluster.py'),
    'batch-auto-unplanned': (MU + 'orchestration/batch.py', [
        ("        joint = [s for s in steps if len(s) > 1]\n", "        joint = []\n")],
        'batch auto takes out as many hosts as the memory outside them holds, without planning their drains: a step '
        'whose drains overrun a destination\'s inbound slots, split anti-affinity or leave VMs behind is chosen',
        'tests/unit/plugins/module_utils/test__cluster.py'),
    'old-qemu-gets-switchover-bandwidth': (MU + 'decide/features.py', [
        ("    if have >= need:\n        return None\n    return '%s needs QEMU",
         "    if True:\n        return None\n    return '%s needs QEMU")],
        'a switch-over bandwidth is asked of a QEMU older than 8.2 instead of refused before anything moves',
        'tests/unit/plugins/module_utils/test__compat.py'),
}


def copy_tree(dest):
    """The collection as ansible_collections/vmmigration/libvirt under DEST (plugins and the unit tests)."""
    root = os.path.join(dest, 'ansible_collections', 'vmmigration', 'libvirt')
    os.makedirs(root)
    for part in ('plugins', 'tests/unit', 'meta', 'galaxy.yml'):
        src = os.path.join(TOP, part)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(root, part), ignore=shutil.ignore_patterns('__pycache__'))
        elif os.path.exists(src):
            os.makedirs(os.path.dirname(os.path.join(root, part)), exist_ok=True)
            shutil.copy(src, os.path.join(root, part))
    return root


def apply(root, path, edits):
    full = os.path.join(root, path)
    with open(full) as f:
        text = f.read()
    for old, new in edits:
        if text.count(old) != 1:
            return 'its text is found %d times in %s (must be once): the mutant is stale' % (text.count(old), path)
        text = text.replace(old, new)
    with open(full, 'w') as f:
        f.write(text)
    return None


def run_one(name):
    path, edits, _rule = MUTANTS.get(name, (None, [], None))[:3]
    tests = MUTANTS[name][3] if name and len(MUTANTS[name]) > 3 else None
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix='vmm-mutant-')
    try:
        root = copy_tree(tmp)
        stale = apply(root, path, edits) if path else None
        if stale:
            return name, 'stale', stale, time.time() - t0
        # the pointed tests first, then the whole sweep (with -x a killed mutant stops at its first failure)
        for order in ([[tests]] if tests else ([SWEEP + '::' + t for t in FIRST], [SWEEP])):
            proc = subprocess.run([sys.executable, '-m', 'pytest', '-x', '-q', '-s', '-p', 'no:cacheprovider'] + order,
                                  cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  universal_newlines=True, check=False, timeout=1200)
            if proc.returncode != 0:
                break
        failed = [ln for ln in proc.stdout.splitlines() if ln.startswith('FAILED')]
        if proc.returncode == 1 and failed:
            return name, 'killed', failed[0][len('FAILED '):].split(' - ')[0], time.time() - t0
        tail = '\n'.join(proc.stdout.splitlines()[-5:])
        if proc.returncode == 0:
            # (what the sweep covered, for the control's report)
            tail = '\n'.join(ln for ln in proc.stdout.splitlines() if ln.startswith('fault injection'))
        return name, 'survived' if proc.returncode == 0 else 'error', tail, time.time() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('-j', '--jobs', type=int, default=2)
    ap.add_argument('names', nargs='*')
    args = ap.parse_args()
    names = args.names or sorted(MUTANTS)
    unknown = [n for n in names if n not in MUTANTS]
    if unknown:
        ap.error('no such mutant: %s' % ', '.join(unknown))
    # the control: the same copy without a mutant must pass the sweep, or every "kill" below means nothing
    _name, verdict, detail, seconds = run_one(None)
    print('%-48s %-8s %5.0f s' % ('(control: no mutant)', 'passed' if verdict == 'survived' else verdict, seconds))
    if verdict == 'survived':
        print(detail)
    sys.stdout.flush()
    if verdict != 'survived':
        print('    the unchanged copy fails the sweep:\n    %s\nmutants killed 0/%d (no control)'
              % (detail.replace('\n', '\n    '), len(names)))
        return 1
    killed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for name, verdict, detail, seconds in pool.map(run_one, names):
            killed += verdict == 'killed'
            shown = detail.split('::')[-1] if verdict == 'killed' else ''
            print('%-48s %-8s %5.0f s  %s' % (name, verdict, seconds, shown))
            if verdict != 'killed':
                print('    rule: %s\n    %s' % (MUTANTS[name][2], detail.replace('\n', '\n    ')))
            sys.stdout.flush()
    print('mutants killed %d/%d' % (killed, len(names)))
    return 0 if killed == len(names) else 1


if __name__ == '__main__':
    sys.exit(main())
