# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters of the roles' calibrated predictions (docs: calibrate.yml, calibrated_plan.yml)."""

import time

from ansible.errors import AnsibleFilterError

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import calibration as CAL
from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as ROLLING


def calibrate(calibration, report, role_wall_s=None, default_rate=1000):
    """The calibration after one more drain."""
    if not isinstance(report, dict):
        raise AnsibleFilterError('calibrate expects the evacuate module result (got %r)' % (type(report).__name__,))
    return CAL.update(ROLLING.plain(calibration or {}), ROLLING.plain(report), role_wall_s=role_wall_s,
                      default_rate=default_rate, now=round(time.time(), 3))


def calibrated_plan(calibration, rate_mibps=1000, overhead_s=2.0, fixed_s=0.0, drains_alongside=None):
    """What a plan uses: calibrated values where measured (from samples of the drain's kind when given), else the
    ones given."""
    return CAL.plan_options(ROLLING.plain(calibration or {}), rate_mibps, overhead_s, fixed_s,
                            drains_alongside=None if drains_alongside in (None, '') else int(drains_alongside))


def calibration_merge(calibrations, default_rate=1000):
    """One calibration from the hosts' own."""
    if not isinstance(calibrations, list):
        raise AnsibleFilterError('calibration_merge expects a list of calibrations (got %r)' % (type(calibrations).__name__,))
    return CAL.merge([c for c in ROLLING.plain(calibrations) if isinstance(c, dict)], default_rate=default_rate,
                     now=round(time.time(), 3))


class FilterModule:  # pylint: disable=too-few-public-methods
    def filters(self):
        return {'calibrate': calibrate, 'calibrated_plan': calibrated_plan, 'calibration_merge': calibration_merge}
