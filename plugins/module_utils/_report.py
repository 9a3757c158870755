# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The evacuation's report and progress as text and a timeline picture (pure functions).

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

try:
    from html import escape
except ImportError:  # pragma: no cover
    from cgi import escape  # pylint: disable=deprecated-module


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


def timeline_html(results, title, width=900):
    """A self-contained HTML page with an SVG timeline: one bar per migration over the drain's time,
    coloured by method, red when it failed, with the downtime as a black tick at its end."""
    end = max([r.get('end_s') or 0 for r in results] + [1.0])
    scale = (width - 220) / float(end)
    row_h = 24
    height = row_h * len(results) + 50
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
             'font-size="12">' % (width, height)]
    for i, r in enumerate(results):
        y = 10 + i * row_h
        x0 = 200 + (r.get('start_s') or 0) * scale
        w = max(2.0, ((r.get('end_s') or 0) - (r.get('start_s') or 0)) * scale)
        colour = '#c0392b' if r.get('error') else COLOURS.get(r['method'], '#888888')
        label = '%s -> %s' % (r['name'], r['destination'])
        tip = '%s: %s, %s, %s s, downtime %s ms' % (label, r['method'], r['state'], r.get('total_time_s'),
                                                    r.get('downtime_ms'))
        parts.append('<text x="5" y="%d">%s</text>' % (y + 15, escape(label)))
        parts.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>'
                     % (x0, y + 2, w, row_h - 6, colour, escape(tip)))
        if r.get('downtime_ms'):
            parts.append('<rect x="%.1f" y="%d" width="2" height="%d" fill="#000000"/>' % (x0 + w - 2, y, row_h - 2))
    axis_y = 10 + len(results) * row_h + 10
    parts.append('<line x1="200" y1="%d" x2="%d" y2="%d" stroke="#000000"/>' % (axis_y, width - 20, axis_y))
    for k in range(6):
        t = end * k / 5.0
        parts.append('<text x="%.1f" y="%d">%.0f s</text>' % (200 + t * scale, axis_y + 15, t))
    parts.append('</svg>')
    legend = ' '.join('<span style="color:%s">&#9632; %s</span>' % (c, m) for m, c in sorted(COLOURS.items()))
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>%s</title></head><body>'
            '<h1>%s</h1><p>%s <span style="color:#c0392b">&#9632; failed</span>; black tick: downtime</p>%s'
            '</body></html>\n' % (escape(title), escape(title), legend, ''.join(parts)))


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
