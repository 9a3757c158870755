# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The evacuation's report and progress as text and a timeline picture (pure functions).

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

import math
from html import escape


def _fmt(value, unit='', digits=1):
    if value is None:
        return '-'
    if isinstance(value, float):
        return ('%.' + str(digits) + 'f%s') % (value, unit)
    return '%s%s' % (value, unit)


def _mib(n):
    return None if n is None else round(n / 1048576.0, 1)


def _answered(r):
    """The ANSWERED cell: seconds from the VM running on the destination to its addresses answering."""
    a = r.get('answering')
    if not a:
        return '-'
    if not a.get('all_answered'):
        return 'silent'
    return _fmt(a.get('since_move_s'), ' s')


def table(results, left):
    """The report as aligned text lines: one per VM moved or tried, then the ones left."""
    verified = any(r.get('answering') for r in results)
    head = ('VM', 'TO', 'METHOD', 'STRATEGY', 'STREAM', 'STATE', 'START', 'TIME', 'DOWNTIME', 'MOVED') + (
        ('ANSWERED',) if verified else ())
    rows = [head]
    for r in results:
        rows.append((r['name'], r['destination'], r['method'], r.get('strategy') or '-', r.get('transport') or '-',
                     r['state'],
                     _fmt(r.get('start_s'), ' s'), _fmt(r.get('total_time_s'), ' s'),
                     _fmt(r.get('downtime_ms'), ' ms'), _fmt(_mib(r.get('bytes_transferred')), ' MiB'))
                    + ((_answered(r),) if verified else ()))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = ['  '.join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows] if results else []
    for r in results:
        if r.get('error'):
            lines.append('%s failed: %s' % (r['name'], r['error']))
        if r.get('instead_of'):
            lines.append('%s went to %s instead of %s (an alternate of the plan, after a refusal that changed nothing): %s'
                         % (r['name'], r['destination'], r['instead_of'], r.get('rerouted_because')))
        a = r.get('answering')
        if a and not a.get('all_answered'):
            silent = sorted(k for k, v in (a.get('addresses') or {}).items() if v is None)
            lines.append('%s moved, but %s did not answer%s' % (
                r['name'], ', '.join(silent) or 'its addresses', ': %s' % a['error'] if a.get('error') else ''))
    for x in left:
        extra = ' - %s' % x['result'] if x.get('result') else ''
        lines.append('%s not moved (%s): %s%s' % (x['name'], x['action'], x['reason'], extra))
    return lines


def progress_lines(status):
    """What the drain is doing now, one line per running VM plus a summary line."""
    if not status:
        return ['no evacuation status yet']
    lines = ['%s: %d of %d done, %d running, %d waiting, %.0f s elapsed (predicted %s s)' % (
        status.get('state'), len(status.get('done') or []), status.get('total') or 0,
        len(status.get('running') or []), len(status.get('pending') or []), status.get('elapsed_s') or 0,
        _fmt(status.get('predicted_total_s')))]
    for r in status.get('running') or []:
        done = ' %s%%' % _fmt(r.get('percent'), '', 0) if r.get('percent') is not None else ''
        lines.append('  moving %s -> %s (%s): %s%s, %s s' % (
            r['name'], r['destination'], r['method'], r.get('phase'), done, _fmt(r.get('elapsed_s'))))
    for r in status.get('done') or []:
        lines.append('  done %s -> %s: %s in %s, downtime %s%s' % (
            r['name'], r['destination'], r['state'], _fmt(r.get('total_time_s'), ' s'),
            _fmt(r.get('downtime_ms'), ' ms'), ' - %s' % r['error'] if r.get('error') else ''))
    return lines


def progress_signature(status):
    """What counts as a change worth showing: the state, VMs ending, VMs starting or moving on a phase or 10 %."""
    if not status:
        return None
    return (status.get('state'), tuple(d['name'] for d in status.get('done') or []),
            tuple((r['name'], r.get('phase'), int((r.get('percent') or 0) // 10)) for r in status.get('running') or []))


COLOURS = {'live': '#2b7bb9', 'live_copy_storage': '#7b52ab', 'offline': '#5a9e6f', 'cold': '#d08c2a'}


# a move's phases, in order, as the engine's result times them (live moves; a cold move is one bar)
PHASES = (('checks', ('checks_s', 'dirty_rate_wait_s', 'planning_s'), '#95a5a6'),
          ('copy', ('migration_s',), None),
          ('commit', ('commit_s',), '#2c3e50'))
AFTER_COLOUR = '#a9dfbf'   # connections, announce, verification: the rest of the move's slot


def axis_ticks(span_s, ticks=8):
    """[(seconds, label)] at exact multiples of one round step (1, 2 or 5 times a power of ten) from 0 to at least
    SPAN_S: evenly spaced and evenly labelled."""
    step = 1.0
    if span_s > 0:
        raw = span_s / float(ticks)
        power = 10.0 ** math.floor(math.log10(raw))
        step = next((m * power for m in (1, 2, 5) if m * power >= raw), 10 * power)
    out, i = [], 0
    while True:
        t = round(i * step, 6)
        out.append((t, ('%g' % t) + ' s'))
        if t >= span_s:
            return out
        i += 1


def segments(r):
    """A move's bar as [(start_s, end_s, colour, label)]: its checks, the copy - as long as the table's TIME (the
    engine's total_time_s, its migration's time) -, the commit, then the rest of its slot (connections, announce,
    verification) up to its end_s. A cold move, or one without phases, is its TIME then the rest."""
    start = r.get('start_s') or 0.0
    end = r.get('end_s') if r.get('end_s') is not None else start
    total = r.get('total_time_s')
    base = '#c0392b' if r.get('error') else COLOURS.get(r.get('method'), '#888888')
    if total is None:
        return [(start, max(end, start), base, r.get('state') or '?')]
    phases = r.get('phases') or {}
    out, t = [], start
    before = sum(phases.get(k) or 0.0 for k in PHASES[0][1])
    if before > 0.0005:
        out.append((t, t + before, PHASES[0][2], 'checks %.2f s' % before))
        t += before
    out.append((t, t + total, base, 'copy %.2f s' % total))
    t += total
    commit = phases.get('commit_s') or 0.0
    if commit > 0.0005:
        out.append((t, t + commit, PHASES[2][2], 'commit %.2f s' % commit))
        t += commit
    if end - t > 0.005:
        out.append((t, end, AFTER_COLOUR, 'connections, announce, verification %.2f s' % (end - t)))
    return out


# (a report fits the screen it is read on: a long title, legend or table line wraps, never runs off the edge)
PAGE_STYLE = '<style>pre{white-space:pre-wrap;overflow-wrap:anywhere}h1,p{overflow-wrap:anywhere}</style>'


def render_timeline(rows, span_s, title, legend_html, table_lines=(), width=900, left=200):
    """The collection's one timeline (drains and rolling maintenance alike, always rendered on the controller from
    the report's data): a self-contained HTML page with an SVG of ROWS [(label, bars [(start_s, end_s, fill, tip,
    opacity)], marks [(at_s, fill)])] on one linear time axis from 0 to at least SPAN_S seconds (evenly spaced,
    evenly labelled ticks over a light grid), LEGEND_HTML above it and TABLE_LINES below."""
    ticks = axis_ticks(span_s)
    span = ticks[-1][0] or 1.0
    right, row_h, top = 20, 24, 30
    scale = (width - left - right) / float(span)
    height = top + row_h * len(rows) + 10
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
             'font-size="12">' % (width, height)]
    for t, text in ticks:
        x = left + t * scale
        parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (x, top - 5, x, height - 5))
        parts.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (x, top - 10, escape(text)))
    for i, (label, bars, marks) in enumerate(rows):
        y = top + i * row_h
        parts.append('<text x="5" y="%d">%s</text>' % (y + 15, escape(label)))
        for s0, s1, fill, tip, opacity in bars:
            parts.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"%s><title>%s</title></rect>' % (
                left + s0 * scale, y + 3, max(1.0, (s1 - s0) * scale), row_h - 6, fill,
                '' if opacity >= 1 else ' fill-opacity="%.2f"' % opacity, escape(tip)))
        for at, fill in marks:
            parts.append('<rect x="%.1f" y="%d" width="2" height="%d" fill="%s"/>' % (
                left + at * scale - 1, y + 1, row_h - 2, fill))
    parts.append('</svg>')
    page = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>%s</title>' + PAGE_STYLE + '</head><body>'
            '<h1>%s</h1><p>%s</p>%s%s</body></html>\n')
    table = '<pre>%s</pre>' % escape('\n'.join(table_lines)) if table_lines else ''
    return page % (escape(title), escape(title), legend_html, ''.join(parts), table)


def timeline_html(results, title, width=900):
    """A drain's timeline (render_timeline): one row per migration, its phases (checks, copy coloured by method - red
    when it failed -, commit) over the time the table gives it, then the rest of its slot (announce, verification)
    in light green; the downtime as a black tick at the copy's end."""
    rows = []
    for r in results:
        label = '%s -> %s' % (r.get('name'), r.get('destination'))
        tip = '%s: %s, %s, %s s, downtime %s ms' % (label, r.get('method'), r.get('state'), r.get('total_time_s'),
                                                    r.get('downtime_ms'))
        bars, copy_end = [], None
        for s0, s1, colour, what in segments(r):
            bars.append((s0, s1, colour, '%s - %s' % (tip, what), 1.0))
            if what.startswith('copy'):
                copy_end = s1
        marks = [(copy_end, '#000000')] if r.get('downtime_ms') and copy_end is not None else []
        rows.append((label, bars, marks))
    legend = ' '.join('<span style="color:%s">&#9632; %s</span>' % (c, m) for m, c in sorted(COLOURS.items()))
    legend += (' <span style="color:#c0392b">&#9632; failed</span>; <span style="color:#95a5a6">&#9632; checks</span>, '
               '<span style="color:#2c3e50">&#9632; commit</span>, <span style="color:%s">&#9632; announce and '
               'verification</span>; black tick: downtime' % AFTER_COLOUR)
    span = max([r.get('end_s') or 0 for r in results] + [1.0])
    return render_timeline(rows, span, title, legend, width=width)


def plan_lines(plan, source=''):
    """The plan as readable lines: what moves where, how, when (predicted), and what stays, why."""
    moves, left = plan.get('moves') or [], plan.get('left') or {}
    lines = ['plan%s: %d to move, %d left, predicted %s s' % (
        ' for ' + source if source else '', len(moves), len(left), _fmt(plan.get('predicted_total_s')))]
    for m in moves:
        lines.append('  %s -> %s (%s, %s MiB%s): %s-%s s' % (
            m['name'], m['destination'], m['method'], m.get('memory_mib'),
            ', ' + m['transport'] if m.get('transport') else '', _fmt(m.get('start_s')), _fmt(m.get('end_s'))))
    for name, reason in sorted(left.items()):
        lines.append('  %s stays: %s' % (name, reason))
    return lines
