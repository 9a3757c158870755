# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which libvirt each feature of the collection needs, as a table, and the one check that refuses a
requested feature a host's libvirt (or its Python binding) cannot do - instead of dropping a flag.

The collection supports libvirt >= 8.0 (MIN_LIBVIRT) on every hypervisor; features newer than that
are listed here with the release that brought them (the ``Since:`` of libvirt's own headers). In a
migration both libvirt daemons take part, so both are checked.

This module is private to vmmigration.libvirt (leading underscore): its interface may change in
any release.
"""

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.typed import LibvirtClientError

MIN_LIBVIRT = (8, 0, 0)

# name: (minimum libvirt, what the operator asked for, what the libvirt-python binding must have, in the
# driver's words: 'flag:' a migration flag, 'param:' a migration parameter, 'call:' anything else)
FEATURES = {
    'tls': ((3, 2, 0), 'TLS migration (tls=auto or required)', ('flag:tls',)),
    'postcopy_bandwidth': ((5, 1, 0), 'a post-copy bandwidth cap (postcopy_bandwidth_mibps)',
                           ('param:bandwidth_postcopy',)),
    'parallel_connections': ((5, 2, 0), 'parallel migration connections (parallel_connections)',
                             ('flag:parallel', 'param:parallel_connections')),
    'postcopy_resume': ((8, 5, 0), 'resuming a failed post-copy migration', ('flag:postcopy_resume',)),
    'postcopy_interrupt': ((8, 5, 0), 'interrupting a post-copy migration whose link died (to resume it later)',
                           ('call:abort_postcopy',)),
    'compression_zlib': ((9, 4, 0), 'compression=zlib (compressed parallel migration)',
                         ('param:compression_zlib_level',)),
    'compression_zstd': ((9, 4, 0), 'compression=zstd (compressed parallel migration)',
                         ('param:compression_zstd_level',)),
    'switchover_bandwidth': ((11, 1, 0), 'a switch-over bandwidth (switchover_bandwidth_mibps)',
                             ('param:bandwidth_avail_switchover',)),
}
# Features that also need a QEMU of at least this version (the hypervisor's, on the source: QEMU there
# decides when to switch over): name -> (major, minor, micro).
QEMU_FEATURES = {
    'switchover_bandwidth': (8, 2, 0),      # QEMU's avail-switchover-bandwidth
}


def version_tuple(version):
    """(major, minor, micro) from libvirt's integer (major * 1,000,000 + minor * 1,000 + micro), an
    'A.B.C' string or a tuple."""
    if isinstance(version, (tuple, list)):
        return tuple(int(x) for x in (list(version) + [0, 0, 0])[:3])
    if isinstance(version, str):
        return version_tuple([int(x) for x in version.split('.')])
    version = int(version)
    return (version // 1000000, version // 1000 % 1000, version % 1000)


def version_text(version):
    """'A.B', or 'A.B.C' when the micro release is not 0."""
    t = version_tuple(version)
    return '%d.%d' % t[:2] if not t[2] else '%d.%d.%d' % t


def feature_problem(name, libvirt_version, host='this host'):
    """Why HOST's libvirt (LIBVIRT_VERSION, any form version_tuple reads) cannot do feature NAME, or None."""
    need, what = FEATURES[name][:2]
    have = version_tuple(libvirt_version)
    if have >= need:
        return None
    return '%s needs libvirt >= %s (%s has %s)' % (what, version_text(need), host, version_text(have))


def qemu_problem(name, hypervisor_version, host='this host'):
    """Why HOST's QEMU (HYPERVISOR_VERSION, any form version_tuple reads) cannot do feature NAME, or None."""
    need = QEMU_FEATURES.get(name)
    if need is None or hypervisor_version is None:
        return None
    have = version_tuple(hypervisor_version)
    if have >= need:
        return None
    return '%s needs QEMU >= %s (%s has %s)' % (FEATURES[name][1], version_text(need), host, version_text(have))


def binding_problem(name, module):
    """Why the libvirt-python MODULE imported here cannot ask for feature NAME, or None."""
    need, what, words = FEATURES[name]
    lacking = [n for n in driver.binding_names(words) if not hasattr(module, n)]
    if not lacking:
        return None
    return ('%s needs libvirt-python >= %s (the binding on this host lacks %s)'
            % (what, version_text(need), ', '.join(lacking)))


def require_feature(name, libvirt_version, host='this host'):
    """Raise LibvirtClientError naming the version needed when HOST's libvirt cannot do feature NAME."""
    problem = feature_problem(name, libvirt_version, host)
    if problem:
        raise LibvirtClientError(problem)


def require_binding(name, module):
    """Raise LibvirtClientError when the libvirt-python MODULE lacks what feature NAME needs."""
    problem = binding_problem(name, module)
    if problem:
        raise LibvirtClientError(problem)


def migration_features(opts):
    """The features of FEATURES a live migration with options OPTS (the migrate module's) asks for."""
    wanted = []
    if opts.get('tls'):
        wanted.append('tls')
    if opts.get('postcopy_bandwidth_mibps'):
        wanted.append('postcopy_bandwidth')
    if opts.get('parallel_connections'):
        wanted.append('parallel_connections')
    if opts.get('switchover_bandwidth_mibps'):
        wanted.append('switchover_bandwidth')
    method = (opts.get('compression') or '').strip().lower()
    if 'compression_%s' % method in FEATURES:
        wanted.append('compression_%s' % method)
    return wanted
