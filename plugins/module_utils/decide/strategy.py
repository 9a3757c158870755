# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Live-migration decisions as small pure functions (the OpenStack Nova migration.py idea).

Numbers in, decision out; the polling loop that applies them lives in engines/live.py. Units: bytes,
bytes per second, seconds, milliseconds for downtime.

Physics (pre-copy): with RAM V, transfer rate R and dirty rate D, lambda = D / R. Round k sends
V * lambda**k; QEMU stops the guest and sends the rest once it fits in R * downtime. With
lambda >= 1 pre-copy never converges; post-copy always finishes (each page once) but a network
failure during post-copy loses the guest; auto-converge throttles the guest's vCPUs until it fits.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

MIB = 1024 * 1024
GIB = 1024 * MIB

STRATEGIES = ('precopy', 'postcopy', 'hybrid', 'converge')
FINAL_ACTIONS = ('postcopy', 'converge', 'pause', 'abort')


def predict_precopy(ram, rate, dirty, downtime_ms, max_rounds=50, switchover_rate=None):
    """Predict a pre-copy migration: does it converge, in how many rounds, how long, what downtime.
    SWITCHOVER_RATE: what the last pass (sent uncapped) may count on, when it is not RATE."""
    if not rate or rate <= 0:
        return {'converges': None, 'rounds': None, 'total_s': None, 'downtime_ms': None, 'bytes': None,
                'lambda': None, 'reason': 'transfer rate unknown'}
    lam = max(0.0, float(dirty or 0) / rate)
    final_rate = float(switchover_rate) if switchover_rate else float(rate)
    budget = final_rate * downtime_ms / 1000.0
    sent, remaining = 0.0, float(ram)
    for rounds in range(max_rounds + 1):
        if remaining <= budget:
            total = sent + remaining
            return {'converges': True, 'rounds': rounds, 'total_s': round(sent / rate + remaining / final_rate, 3),
                    'downtime_ms': round(remaining / final_rate * 1000.0, 1), 'bytes': int(total),
                    'lambda': round(lam, 4), 'reason': 'remaining memory fits the downtime after %d rounds' % rounds}
        sent += remaining
        remaining = remaining * lam
        if lam >= 1.0:
            break
    return {'converges': False, 'rounds': None, 'total_s': None, 'downtime_ms': None, 'bytes': None,
            'lambda': round(lam, 4),
            'reason': 'dirty rate %.1f MiB/s against %.1f MiB/s (lambda %.2f): pre-copy cannot finish within %d ms'
                      % (float(dirty or 0) / MIB, float(rate) / MIB, lam, downtime_ms)}


def predict_postcopy(ram, rate, first_pass=True):
    """Post-copy after one pre-copy pass sends about the RAM twice at worst; without it, once."""
    if not rate or rate <= 0:
        return {'total_s': None}
    return {'total_s': round((2.0 if first_pass else 1.0) * ram / rate, 3)}


def choose_plan(prediction, completion='auto', allow_postcopy=False, final_action='auto', deadline_s=None):
    """The strategy to start with, what to do when it stalls, and why.

    completion: auto | precopy | postcopy | hybrid | converge. final_action: auto | postcopy |
    converge | pause | abort ('auto': post-copy when allowed, else auto-converge).
    """
    if completion in ('postcopy', 'hybrid') and not allow_postcopy:
        raise ValueError('completion=%s needs allow_postcopy=true: if the network fails during post-copy '
                         'the guest is lost' % completion)
    if final_action == 'postcopy' and not allow_postcopy:
        raise ValueError('final_action=postcopy needs allow_postcopy=true')
    final = final_action
    if final == 'auto':
        final = 'postcopy' if allow_postcopy else 'converge'
    converges = prediction.get('converges')
    fits = converges and (deadline_s is None or prediction.get('total_s') is None
                          or prediction['total_s'] <= deadline_s)
    if completion == 'auto':
        if converges is None:
            strategy, why = 'precopy', 'dirty rate or bandwidth unknown: pre-copy, decide on progress'
        elif fits:
            strategy, why = 'precopy', 'predicted to converge: %s' % prediction.get('reason')
        elif allow_postcopy:
            strategy, why = 'hybrid', 'predicted not to converge (%s): one pre-copy pass, then post-copy' % (
                prediction.get('reason', 'no reason given'))
        else:
            strategy, why = 'converge', 'predicted not to converge (%s) and post-copy not allowed: auto-converge' % (
                prediction.get('reason', 'no reason given'))
    else:
        strategy, why = completion, 'chosen by the operator'
    flags = {
        'postcopy': bool(allow_postcopy) and (strategy in ('postcopy', 'hybrid') or final == 'postcopy'),
        'auto_converge': strategy == 'converge' or final == 'converge',
    }
    return {'strategy': strategy, 'final_action': final, 'flags': flags, 'reason': why, 'prediction': prediction}


AUTO_CONVERGE_FLOOR = 20      # percent: QEMU's own first throttle
AUTO_CONVERGE_CEILING = 95    # percent: the highest first throttle (the vCPU sleeps 190 ms in every 200)
AUTO_CONVERGE_STEP = 10       # percent per pass, QEMU's own
# the step by the first throttle (see auto_converge_throttle): (from this first throttle up, this step)
AUTO_CONVERGE_STEPS = ((90, 1), (70, 5))
AUTO_CONVERGE_SHARE = 8.0     # the first throttle makes the sampled dirty rate fit 1/8 of the link


def auto_converge_throttle(rate, dirty):
    """Auto-converge's first vCPU throttle and its step, in percent, for a link of RATE and a guest
    dirtying DIRTY (bytes/s; None: unknown).

    QEMU's throttle runs a vCPU 10 ms, then sleeps it 10 ms x p / (1 - p): 10 ms at 50 %, 90 ms at 90 %,
    190 ms at 95 %, 990 ms at 99 % - a pause the guest's clients see. QEMU's own 20 % then 10 % a pass
    take many passes to bite on a guest that dirties memory several times faster than the link. QEMU
    raises the throttle again only while the guest dirties more than half of what was sent, and a dirty
    rate sampled over a second counts a page once however often it is rewritten, so it undershoots a guest
    that rewrites its working set several times a second (in the lab by 4 x: 124 MiB/s sampled, about
    500 written): start where the sampled rate, throttled, fits in an eighth of the link (half of it, over
    4), at most 95 %; and step finely near the top (from 90 %: 1 %, 96 % sleeps 240 ms, 97 % 323 ms; from
    70 %: 5 %), not straight to 99 %."""
    if not rate or not dirty or dirty * (1 - AUTO_CONVERGE_FLOOR / 100.0) <= rate / AUTO_CONVERGE_SHARE:
        return {'initial': AUTO_CONVERGE_FLOOR, 'increment': AUTO_CONVERGE_STEP}
    needed = int(-(-100 * (1 - rate / (AUTO_CONVERGE_SHARE * dirty)) // 1))
    initial = min(AUTO_CONVERGE_CEILING, max(AUTO_CONVERGE_FLOOR, needed))
    step = [s for at, s in AUTO_CONVERGE_STEPS if initial >= at]
    return {'initial': initial, 'increment': step[0] if step else AUTO_CONVERGE_STEP}


def switchover_bandwidth(explicit, cap, link, problems=lambda: []):
    """(MiB/s QEMU may count on for the switch-over, or None; why). QEMU sends the last pass without the
    bandwidth cap, yet decides when to pause the guest from the rate it measured under the cap: with a CAP
    below the link's known speed (LINK) it waits for a remainder that fits the cap's rate, passes longer
    than needed - so the switch-over counts on the link, unless PROBLEMS() (asked only then) say the hosts
    cannot be told (libvirt 11.1, QEMU 8.2). An EXPLICIT value (switchover_bandwidth_mibps) was checked with
    the features."""
    if explicit:
        return int(explicit), 'switchover_bandwidth_mibps'
    if not cap or not link or link <= cap:
        return None, 'no bandwidth cap below the link speed: QEMU measures the rate itself'
    problems = problems()
    if problems:
        return None, 'the link speed is not given to QEMU for the switch-over: %s' % '; '.join(problems)
    return int(link), ('the switch-over is sent uncapped: QEMU counts on the link speed (expected_bandwidth_mibps), '
                       'not on the %d MiB/s cap' % cap)


# The first allowed downtime of the ramp, ms. QEMU pauses the guest once what is left fits this at the measured
# rate: an idle or lightly used guest is left with little after its first passes, and then pauses for what its
# devices and the two libvirtds' hand-over take, not for memory. Measured in the lab (idle 256 MiB guest, TLS,
# 6 moves each): the guest paused -> resumed on the destination 42 ms with 50, 19 ms with 10; a busy guest
# reaches the larger steps of the ramp within seconds.
DOWNTIME_START_MS = 10
# The downtime allowed once the engine paused the guest to finish (final_action pause, or auto-converge past its
# deadline): the guest is stopped already, so QEMU may as well send what is left in its switch-over, which is not
# held to the bandwidth cap. In the lab a guest rewriting 128 MiB, paused past its completion deadline under a
# 32 MiB/s cap, stayed paused 3.9 s while QEMU sent what was left pass after pass at the cap.
PAUSED_DOWNTIME_MS = 10000


def downtime_steps(max_downtime_ms, steps, step_delay_s, start_ms=None):
    """Nova's ramp: (seconds from start, allowed downtime ms), from START_MS (default max/steps) to max."""
    steps = max(1, int(steps))
    base = float(start_ms) if start_ms is not None else float(max_downtime_ms) / steps
    base = min(base, float(max_downtime_ms))
    inc = (float(max_downtime_ms) - base) / steps
    return [(round(step_delay_s * i, 3), int(round(base + inc * i))) for i in range(steps + 1)]


def downtime_for(elapsed_s, ramp):
    """The allowed downtime at ELAPSED_S on RAMP."""
    current = ramp[0][1]
    for at, value in ramp:
        if elapsed_s >= at:
            current = value
    return current


def iteration_peaks(history):
    """The dirty memory at the start of each pre-copy pass after the first (the largest remaining seen in it)."""
    peaks = {}
    for h in history:
        if h[1] and h[1] >= 2 and h[2] is not None:
            peaks[h[1]] = max(peaks.get(h[1], 0), h[2])
    return [peaks[k] for k in sorted(peaks)]


def is_stalled(history, iterations=2, min_progress=0.05):
    """True when the dirty memory of the last ITERATIONS passes has not shrunk by MIN_PROGRESS below
    the best pass before them: pre-copy is treading water.

    HISTORY: [(elapsed_s, iteration, remaining_bytes, processed_bytes), ...] oldest first.
    """
    peaks = iteration_peaks(history)
    if len(peaks) < iterations + 1:
        return False
    return min(peaks[-iterations:]) > min(peaks[:-iterations]) * (1.0 - min_progress)


def link_dead(history, window_s=4.0, start_grace_s=60.0):
    """True when no byte was transferred over the last WINDOW_S seconds after bytes had flowed: the link,
    not the guest, is the problem, and post-copy or pausing would only make it worse. Before the first byte
    the stream is still being set up (the destination QEMU starting, the TLS handshake - seconds on a busy
    host), which is no dead link: only START_GRACE_S without any byte counts as one."""
    if not history or history[-1][0] < window_s:
        return False
    now, processed = history[-1][0], history[-1][3]
    before = [h[3] for h in history if h[0] <= now - window_s]
    if not before or processed is None or before[-1] is None:
        return False
    if not any(h[3] for h in history):
        return now >= start_grace_s
    return processed <= before[-1] and before[-1] > 0


def completion_deadline(ram, per_gib_s, minimum_s=30.0):
    """Seconds a migration may take before the final action, by RAM size (Nova 800 s/GiB, KubeVirt 150)."""
    return max(float(minimum_s), per_gib_s * float(ram) / GIB)


def decide(state, cfg):
    """The next step of the monitor loop.

    STATE: elapsed_s, iteration, history, downtime_ms (current), postcopy (switched?),
    final_taken (name of the final action already applied, or None), paused.
    CFG: plan (from choose_plan), ramp (downtime_steps), deadline_s, hard_timeout_s, stall_iterations,
    stall_window_s (seconds without a transferred byte that mean a dead link).
    Returns (action, argument, reason); action is one of wait, set_downtime, postcopy, pause, abort,
    postcopy_pause (interrupt a post-copy whose link died, to resume it later; STATE postcopy_interrupted
    says it was done).
    """
    plan = cfg['plan']
    elapsed = state['elapsed_s']
    if state.get('postcopy'):
        if not state.get('postcopy_interrupted') and link_dead(state.get('history') or [],
                                                               cfg.get('stall_window_s', 4.0),
                                                               cfg.get('start_grace_s', 60.0)):
            return ('postcopy_pause', None, 'no data transferred for %.0f s in post-copy: the link looks dead; '
                    'interrupting post-copy so that it can be resumed once the link is back (a post-copy '
                    'migration is never aborted)' % cfg.get('stall_window_s', 4.0))
        return ('wait', None, 'post-copy running: it always finishes and is never aborted')
    if state.get('final_taken') == 'abort':
        return ('wait', None, 'abort requested: waiting for libvirt to end the job')
    if link_dead(state.get('history') or [], cfg.get('stall_window_s', 4.0), cfg.get('start_grace_s', 60.0)):
        return ('abort', None, 'no data transferred for %.0f s: the migration link looks dead; aborting while '
                'the source still holds the whole guest' % cfg.get('stall_window_s', 4.0))
    if plan['strategy'] in ('postcopy', 'hybrid') and (state.get('iteration') or 0) >= 2:
        return ('postcopy', None, 'first pre-copy pass done: switching to post-copy as planned (%s)'
                % plan['strategy'])
    target = downtime_for(elapsed, cfg['ramp'])
    if target > (state.get('downtime_ms') or 0):
        return ('set_downtime', target, 'downtime ramp: allow %d ms at %.1f s' % (target, elapsed))
    stalled = is_stalled(state.get('history') or [], iterations=cfg.get('stall_iterations', 2))
    ramp_done = target >= cfg['ramp'][-1][1]
    overdue = elapsed >= cfg['deadline_s']
    if cfg.get('hard_timeout_s') and elapsed >= cfg['hard_timeout_s']:
        return ('abort', None, 'hard timeout %.0f s reached' % cfg['hard_timeout_s'])
    if state.get('final_taken'):
        return ('wait', None, 'final action %s already taken' % state['final_taken'])
    if (stalled and ramp_done) or overdue:
        why = ('no progress over %d passes at the largest allowed downtime' % cfg.get('stall_iterations', 2)
               if stalled and ramp_done else 'completion deadline %.0f s passed' % cfg['deadline_s'])
        final = plan['final_action']
        if final == 'converge':
            # auto-converge was enabled at start and throttles by itself; pausing is the fallback
            # once the deadline passes as well.
            if overdue:
                return ('pause', None, '%s: auto-converge did not finish in time, pausing the guest to finish' % why)
            return ('wait', None, '%s: auto-converge is throttling the guest' % why)
        return (final, None, why)
    return ('wait', None, 'making progress')


def summarize(stats):
    """Job statistics (libvirt's typed parameters) as the collection reports them."""
    def g(key):
        return stats.get(key)
    return {
        'time_elapsed_ms': g('time_elapsed'),
        'downtime_ms': g('downtime'),
        'setup_time_ms': g('setup_time'),
        'data_total': g('data_total'),
        'data_processed': g('data_processed'),
        'data_remaining': g('data_remaining'),
        'memory_total': g('memory_total'),
        'memory_processed': g('memory_processed'),
        'memory_remaining': g('memory_remaining'),
        'memory_bps': g('memory_bps'),
        'memory_dirty_rate_pages': g('memory_dirty_rate'),
        'memory_page_size': g('memory_page_size'),
        'memory_iteration': g('memory_iteration'),
        'memory_postcopy_requests': g('memory_postcopy_requests'),
        'disk_total': g('disk_total'),
        'disk_processed': g('disk_processed'),
        'auto_converge_throttle': g('auto_converge_throttle'),
    }


def progress_percent(stats):
    total = stats.get('data_total') or 0
    if not total:
        return None
    done = total - (stats.get('data_remaining') or 0)
    return round(100.0 * max(0, done) / total, 1)
