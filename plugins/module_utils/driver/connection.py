# -*- coding: utf-8 -*-
# Copyright (c) vmmigration.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The libvirt connections of vmmigration.libvirt, over the typed driver (libvirt).

This module is private to the collection (leading underscore): its interface may change in any
release. It owns opening connections by URI (through the driver, the only code that knows the libvirt
binding), the shared connection options, retries for errors that are known to be transient (never for
invalid-operation errors), reading a guest's state back after a call whose outcome is not known, and the
task's session that turns the one error type (:class:`LibvirtClientError`) into a module failure.
"""

import contextlib
import random
import re
import socket
import time
import traceback
import xml.etree.ElementTree as ET

from ansible.module_utils.basic import missing_required_lib
from urllib.parse import urlparse

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import typed as driver
from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.typed import (  # noqa: F401 pylint: disable=unused-import
    LIBVIRT_IMPORT_ERROR,
    Driven,
    LibvirtClientError,
    is_transient,
    qemu_monitor_command,
    start_event_loop,
    unwrap,
    wrap_error,
)

INSTALL_HINT = (
    "the libvirt Python binding (libvirt-python) is not importable by the Python that runs this module "
    "on the host: install it there (Debian/Ubuntu: apt-get install python3-libvirt; or pip install "
    "libvirt-python with libvirt-dev and pkg-config present) or point ansible_python_interpreter at a "
    "Python that has it"
)

# Options every module that talks to libvirt accepts; documented once in the
# vmmigration.libvirt.connection doc fragment.
# how a module opens its connections (doc_fragments/connection.py RETRIES), and the URI of the one it talks to
RETRY_ARGSPEC = dict(
    connect_retries=dict(type='int', default=2),
    connect_retry_delay_s=dict(type='float', default=0.5),
)
CONNECTION_ARGSPEC = dict(uri=dict(type='str', default='qemu:///system'), **RETRY_ARGSPEC)


def redact_uri(uri):
    """A URI without a password: user:secret@ and password=/passwd= query values become ***."""
    if not uri or not isinstance(uri, str):
        return uri
    base, sep, query = uri.partition('?')
    scheme, colons, rest = base.partition('://') if '://' in base else ('', '', base)
    at = rest.rfind('@')        # the last @: a password may hold an unencoded @ or /
    if at > 0 and ':' in rest[:at]:
        rest = rest[:at].split(':', 1)[0] + ':***' + rest[at:]
    uri = scheme + colons + rest + sep + query
    return re.sub(r'((?:password|passwd|pass|secret|token)=)[^&;]*', r'\1***', uri, flags=re.I)


def backoff_delays(retries, delay, jitter=0.25, rand=random.random):
    """Delays before each retry: exponential from DELAY, each stretched by up to JITTER."""
    return [delay * (2 ** i) * (1 + jitter * rand()) for i in range(max(0, retries))]


class LibvirtClient:
    """One connection to one libvirt URI, opened lazily once and reused by every call."""

    def __init__(self, uri='qemu:///system', retries=2, retry_delay=0.5, sleep=time.sleep, keepalive=(5, 3)):
        if LIBVIRT_IMPORT_ERROR:
            raise LibvirtClientError(INSTALL_HINT)
        if not uri or not isinstance(uri, str) or '://' not in uri and uri not in ('test:///default',):
            raise LibvirtClientError("malformed libvirt URI %r: expected e.g. qemu:///system or "
                                     "qemu+tcp://host/system" % (redact_uri(uri) if isinstance(uri, str) else uri,))
        if retries < 0 or retry_delay < 0:
            raise LibvirtClientError('connect_retries and connect_retry_delay_s must not be negative')
        self._uri = uri                 # what libvirt opens
        self.uri = redact_uri(uri)      # what messages and results show: no password
        self.retries = retries
        self.retry_delay = retry_delay
        self._sleep = sleep
        self.keepalive = keepalive
        self._conn = None
        driver.silence_stderr()

    @property
    def conn(self):
        """The connection, driven: its calls and the objects they return raise LibvirtClientError."""
        if self._conn is None:
            self._conn = Driven(self._open(), self.uri)
        return self._conn

    def _open(self):
        last = None
        delays = backoff_delays(self.retries, self.retry_delay)
        for attempt in range(len(delays) + 1):
            try:
                return driver.open_connection(self._uri, self.keepalive)
            except driver.binding_errors() as e:
                last = wrap_error(e, 'cannot connect to libvirt at %s' % self.uri)
                if not last.transient or attempt == len(delays):
                    break
                self._sleep(delays[attempt])
        raise last

    def call(self, what, fn, *args, **kwargs):
        """Run one libvirt call; its failure becomes a LibvirtClientError saying WHAT failed."""
        try:
            return fn(*args, **kwargs)
        except (LibvirtClientError,) + driver.binding_errors() as e:
            raise wrap_error(e, what)

    def reset(self):
        """Forget a connection that failed (a dropped peer): the next call opens a new one."""
        self.close()

    def close(self):
        if self._conn is not None:
            driver.close_connection(self._conn.raw)
            self._conn = None

    # Small helpers shared by the modules -------------------------------------------------
    def capabilities(self):
        return ET.fromstring(self.call('cannot read capabilities of %s' % self.uri, self.conn.getCapabilities))

    def host_uuid(self):
        node = self.capabilities().find('./host/uuid')
        return node.text if node is not None else None

    def lookup(self, name):
        """The domain called NAME, or None when this host has no such domain."""
        return self._find(driver.lookup_name, name)

    def lookup_uuid(self, uuid):
        """The domain with UUID, or None when this host has no such domain."""
        return self._find(driver.lookup_uuid, uuid)

    def _find(self, fn, key):
        try:
            return fn(self.conn, key)
        except LibvirtClientError as e:
            raise wrap_error(e, 'cannot look up domain %s on %s' % (key, self.uri))


# Seconds a host is given to answer again after a failure, before where a guest runs is read back from it.
READBACK_S = 30.0
# What every "where the guest runs cannot be confirmed" message tells the operator.
UNKNOWN_SAID = 'do not start it on either host'


def domain_state(dom):
    """running, paused, shutoff, ...; 'gone' when the host no longer has the domain, 'unknown' when the
    host cannot be asked (a lost connection)."""
    try:
        state = dom.state()[0]
    except LibvirtClientError as e:
        return 'gone' if driver.is_error(e, 'no_domain') else 'unknown'
    return driver.state_name(state)


def resumed_after_a_failed_migration(dom):
    """True when DOM runs because its libvirt resumed it after a failed migration that had stopped it for the
    switch-over, False when it runs (or stands) for any other reason, None when it cannot be asked."""
    try:
        state, reason = dom.state()[:2]
    except LibvirtClientError:
        return None
    return driver.resumed_after_failed_migration(state, reason)


LIBVIRT_PORTS = {'tcp': 16509, 'tls': 16514, 'ssh': 22, 'libssh': 22, 'libssh2': 22}


def libvirtd_address(uri):
    """(host, port) of the libvirtd a remote URI reaches; None for a local URI or an unknown transport."""
    parsed = urlparse(uri or '')
    if not parsed.hostname:
        return None
    port = parsed.port or LIBVIRT_PORTS.get(parsed.scheme.partition('+')[2])
    return (parsed.hostname, port) if port else None


def reachable(address, timeout=3.0):
    """Whether a TCP connection to ADDRESS opens within TIMEOUT seconds. Asked before a new libvirt connection
    to a host that may be cut off: libvirt's own connect waits for TCP's retries (about two minutes) when the
    host's packets are dropped."""
    try:
        socket.create_connection(address, timeout).close()
        return True
    except (OSError, socket.error):
        return False


def read_back(client, uuid, errors, clock=time.monotonic, sleep=time.sleep, seconds=READBACK_S):
    """(domain, state) of the domain UUID on CLIENT's host, read back after a call whose outcome is not known
    (it failed, or its reply was lost): a lost connection is opened anew until the host answers, for SECONDS
    at most (a new connection only once the host's libvirtd port answers, so that no attempt blocks for
    long). The state is 'gone' when the host answers that it has no such domain, 'unknown' when it never
    answered (ERRORS, a list, gets why)."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver.wait import wait_until  # pylint: disable=import-outside-toplevel
    seen = {'dom': None, 'state': 'unknown'}
    address = libvirtd_address(getattr(client, '_uri', None))

    def answered():
        if address and getattr(client, '_conn', None) is None and not reachable(address):
            errors.append('the libvirtd of %s does not answer on port %d' % (address[0], address[1]))
            return False
        try:
            found = client.lookup_uuid(uuid)
        except LibvirtClientError as e:
            errors.append(e.msg)
            if e.transient and hasattr(client, 'reset'):
                client.reset()
            return False
        state = domain_state(found) if found is not None else 'gone'
        if state == 'unknown':
            errors.append('the state of %s on %s cannot be read' % (uuid, getattr(client, 'uri', 'the host')))
            if hasattr(client, 'reset'):
                client.reset()
            return False
        seen.update(dom=found, state=state)
        return True
    wait_until(answered, seconds, 1.0, clock, sleep)
    return seen['dom'], seen['state']


class ClientCache:
    """Connections opened once per URI per task, and closed together."""

    def __init__(self, retries=2, retry_delay=0.5):
        self.retries = retries
        self.retry_delay = retry_delay
        self._clients = {}

    def get(self, uri):
        if uri not in self._clients:
            self._clients[uri] = LibvirtClient(uri, retries=self.retries, retry_delay=self.retry_delay)
        return self._clients[uri]

    def close(self):
        for c in self._clients.values():
            c.close()
        self._clients = {}


def require_libvirt(module):
    """Fail MODULE with an install hint, before anything else, when libvirt-python is missing."""
    if LIBVIRT_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib('libvirt-python') + '; ' + INSTALL_HINT,
                         exception=LIBVIRT_IMPORT_ERROR)


@contextlib.contextmanager
def libvirt_session(module, errors=()):
    """The connections of one task: yields a ClientCache built from the shared connection options,
    turns a LibvirtClientError (or one of ERRORS) into fail_json - with the error's .result, if any -
    in one place, and closes every connection at the end."""
    cache = ClientCache(module.params['connect_retries'], module.params['connect_retry_delay_s'])
    caught = (LibvirtClientError,) + tuple(errors)  # named: older pylint misreads a sum in the except clause
    try:
        yield cache
    except caught as e:
        module.fail_json(msg=getattr(e, 'msg', None) or str(e), **getattr(e, 'result', {}))
    except OSError as e:
        module.fail_json(msg='%s%s' % (e.strerror or e, ': %s' % e.filename if e.filename else ''),
                         **getattr(e, 'result', {}))
    except Exception as e:  # pylint: disable=broad-except
        # a defect of ours: a clear message, the traceback only with -vvv, never a raw module crash
        module.fail_json(msg='unexpected error in vmmigration.libvirt (please report it): %s: %s'
                         % (type(e).__name__, e), exception=traceback.format_exc())
    finally:
        cache.close()
