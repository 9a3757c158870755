"""A fake libvirt for the engines' unit tests: a small model of hosts (which QEMU runs which guest, which
definitions exist, disk files and their bytes, storage shared between hosts) behind subclasses of the
binding's own classes (so the collection's driver, connection.Driven, wraps them like the real ones and turns
their libvirtError into LibvirtClientError) - with a fault that can hit any call.

A call site is a place in our code: the fake method's name and the two innermost frames of
plugins/module_utils that led to it (so dom.info and vol.info, or the copy's download and the
verification's download, are different sites). Every call goes through World.hit(obj, method): it is
logged and counted per (host, site), and fails when it is the occurrence the test chose
(World.fault = (host, site, nth, mode), or several in World.faults). The fault kinds of the real world:
  error      the call fails before it takes effect (libvirt's "operation failed");
  drop       the call fails before its effect and the host's connection is gone for good;
  flap       as drop, but the host answers a new connection FLAP_S seconds later (a dead connection
             object stays dead, as libvirt's does);
  hang       the call blocks until libvirt's keepalive ends it (30 s of the fake clock), then as drop;
  lost       the call TAKES EFFECT and its reply is lost: the caller sees a reset connection, the host
             answers a new connection FLAP_S seconds later;
  lost_drop  as lost, and the host never answers again;
and, where they mean something:
  crash      'incoming' (the destination's Finish): the guest arrives, then its QEMU dies there;
  corrupt    a stream that sends data: the bytes land altered (a bad disk, a bad link).
A lost reply on 'incoming' is libvirt's own PERFORM3_DONE recovery: the destination runs the guest, the
source is left paused ("a third party needs to check") and the migration call fails.

World.events records what changed on which host, in order, each with a snapshot of where the domain is
just after the change; World.violations collects what the model itself saw go wrong (a guest started
from a disk whose bytes are not its own, a post-copy aborted or destroyed).
"""
import os
import sys
import threading
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlparse

from collections.abc import MutableMapping

import libvirt

from ansible_collections.vmmigration.libvirt.plugins.module_utils.driver import connection as C

RUNNING, PAUSED, SHUTOFF = libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_SHUTOFF
POSTCOPY_FAILED = getattr(libvirt, 'VIR_DOMAIN_PAUSED_POSTCOPY_FAILED', 13)
PAUSED_MIGRATION = getattr(libvirt, 'VIR_DOMAIN_PAUSED_MIGRATION', 2)
MIGRATION_CANCELED = getattr(libvirt, 'VIR_DOMAIN_RUNNING_MIGRATION_CANCELED', 6)
CRASHED = getattr(libvirt, 'VIR_DOMAIN_SHUTOFF_CRASHED', 3)
MIB = 1024 * 1024
FLAP_S = 20.0
FOREVER = float('inf')

GENERIC_MODES = ('error', 'drop', 'flap', 'hang', 'lost', 'lost_drop')


def modes_for(site):
    """The fault kinds that mean something at SITE."""
    method = site.split('@', 1)[0]
    if method == 'incoming':
        return ('error', 'lost', 'crash')
    if method.endswith(':postcopy') or method.endswith(':resumed'):
        return ('error', 'drop')
    if method == 'stream.sparseSendAll':
        return GENERIC_MODES + ('corrupt',)
    return GENERIC_MODES


def lv_error(msg, code):
    e = libvirt.libvirtError(msg)
    e.err = (code, 0, msg, 2, None, None, None, 0, 0)
    return e


def reset_error():
    return lv_error('Cannot recv data: Connection reset by peer', libvirt.VIR_ERR_SYSTEM_ERROR)


_OURS = os.path.dirname(os.path.dirname(C.__file__)) + os.sep   # module_utils/: every layer


def call_site(depth=2):
    """Where in our code (not the driver) the call came from: the two innermost frames."""
    f = sys._getframe(depth)  # pylint: disable=protected-access
    frames = []
    while f is not None and len(frames) < 2:
        name = f.f_code.co_filename
        if _OURS in name and not name.endswith(('connection.py', 'driver/typed.py')):
            frames.append('%s:%d' % (os.path.basename(name), f.f_lineno))
        f = f.f_back
    return '<'.join(frames) or 'test'


class Injected(Exception):
    pass


class Dom:
    """One domain's state on one host."""

    def __init__(self, name, uuid, xml, state=RUNNING, persistent=True, reason=1, autostart=False):
        self.name, self.uuid, self.xml = name, uuid, xml
        self.state, self.reason, self.persistent = state, reason, persistent
        self.autostart = autostart

    @property
    def active(self):
        return self.state != SHUTOFF


class Files(MutableMapping):
    """One host's view of the files: a path under one of the world's shared directories is one file for
    every host (NFS, a cluster filesystem); anything else is the host's own."""

    def __init__(self, world, host):
        self.w, self.h = world, host

    def key(self, path):
        shared = any(path.startswith(d.rstrip('/') + '/') for d in self.w.shared_dirs)
        return ('shared', path) if shared else (self.h, path)

    def __getitem__(self, path):
        return self.w.store[self.key(path)]

    def __setitem__(self, path, data):
        self.w.store[self.key(path)] = data

    def __delitem__(self, path):
        del self.w.store[self.key(path)]

    def __iter__(self):
        return iter(sorted(p for (owner, p) in list(self.w.store) if owner in (self.h, 'shared')
                           and self.key(p) == (owner, p)))

    def __len__(self):
        return len(list(iter(self)))


class Host:
    def __init__(self, world, name):
        self.name = name
        self.uuid = '00000000-0000-0000-0000-0000000000%02d' % int(name[1:])
        self.doms = {}
        self.files = Files(world, name)   # path -> bytes
        self.pools = {}       # name -> target path (active pools)


class World:
    def __init__(self, clock, hosts=('h1', 'h2', 'h3')):
        self.clock = clock
        self.store = {}           # (host or 'shared', path) -> bytes
        self.capacity = {}        # the same keys -> the capacity a volume was created with
        self.allocation = {}      # path -> bytes a volume reports as allocated (else its length)
        self.shared_dirs = set()
        self.truth = {}           # disk path -> the guest's own bytes (what it may run from)
        self.hosts = dict((h, Host(self, h)) for h in hosts)
        self.lock = threading.RLock()
        self.log, self.counts = [], {}
        self.fault, self.fired = None, None
        self.faults = []          # more than one: (host, site, nth, mode) each
        self.dropped = set()      # hosts whose connection was ever lost
        self.down_until = {}      # host -> fake time until which it refuses new connections
        self.gen = dict((h, 0) for h in hosts)   # a connection of an older generation is dead
        self.pending = {}         # thread -> [(kind, host, until)] effects of a fault due after the call
        self.events = []          # (what, host, name, {host: state of name just after})
        self.violations = []
        self.jobs = {}            # domain name -> running job
        self.polls_to_finish = 2  # jobStats polls before a migration completes (None: never, until paused)
        self.job_step_s = 1.0     # fake seconds a job runs between two polls
        self.downtimes = []       # every downtime the engine allowed (migrateSetMaxDowntime), for the tests
        self.migrate_params = {}  # the typed parameters of the last migrateToURI3, for the tests
        self.stream_step_s = 0.0  # fake seconds a stream takes per chunk
        self.ignore_shutdown = False  # a guest that does not react to ACPI
        self.ignore_shutdown_of = set()  # the names of the guests that do not (one guest, among others that do)

    # -- the fault hook -------------------------------------------------------------------------
    def site(self, method):
        return '%s@%s' % (method, call_site(3))

    def hit(self, obj, method):
        """One call of METHOD on OBJ (a fake object of a host, or a host's name for a step inside libvirt)."""
        site = self.site(method)
        host = obj if isinstance(obj, str) else obj.h
        with self.lock:
            if method == 'open':
                if self.clock.now < self.down_until.get(host, -1):
                    raise lv_error('unable to connect to server at %s:16514: Connection refused' % host,
                                   libvirt.VIR_ERR_SYSTEM_ERROR)
            elif not isinstance(obj, str) and obj.c.gen != self.gen[host]:
                # (as libvirt's client: a connection once closed - reset, or ended by keepalive - answers every
                # later call with an internal error, not a connection error)
                raise lv_error('internal error: client socket is closed', libvirt.VIR_ERR_INTERNAL_ERROR)
            # (a call that fails anyway - a dead connection, a host that refuses - is no place for a fault)
            key = (host, site)
            n = self.counts[key] = self.counts.get(key, 0) + 1
            self.log.append((host, site, n))
            for f in ([self.fault] if self.fault else []) + self.faults:
                if f[:3] != (host, site, n):
                    continue
                self.fired = (self.fired or []) + [f]
                mode = f[3]
                if mode == 'error':
                    raise lv_error('injected failure of %s on %s' % (method, host), libvirt.VIR_ERR_OPERATION_FAILED)
                if mode in ('lost', 'lost_drop', 'crash', 'corrupt'):
                    until = self.clock.now + FLAP_S if mode == 'lost' else FOREVER
                    self.pending.setdefault(threading.get_ident(), []).append((mode, host, until))
                    return
                if mode == 'hang':
                    self.clock.now += 30      # until libvirt's keepalive gives up on the peer
                    self.drop(host, FOREVER)
                    raise lv_error('internal error: connection closed due to keepalive timeout',
                                   libvirt.VIR_ERR_INTERNAL_ERROR)
                self.drop(host, self.clock.now + FLAP_S if mode == 'flap' else FOREVER)
                raise reset_error()

    def drop(self, host, until):
        """HOST's connections die; it refuses new ones until UNTIL (fake time)."""
        with self.lock:
            self.dropped.add(host)
            self.gen[host] += 1
            self.down_until[host] = until

    def take(self, kind, host=None):
        """The pending effect KIND (on HOST) of a fault this thread hit (and forget it), or None."""
        with self.lock:
            mine = self.pending.get(threading.get_ident(), [])
            for p in mine:
                if (p[0] == kind or (kind == 'lost' and p[0] == 'lost_drop')) and host in (None, p[1]):
                    mine.remove(p)
                    return p
        return None

    def after_call(self):
        """A reply lost after its call took effect: the caller's connection is reset."""
        lost = self.take('lost')
        if lost is not None:
            self.drop(lost[1], lost[2])
            raise reset_error()

    def event(self, what, host, name):
        after = self.where(name)
        self.events.append((what, host, name, after))
        running = sorted(h for h, st in after.items() if st == RUNNING)
        if len(running) > 1:
            self.violations.append('%s ran on %s at once (after %s on %s)' % (name, ' and '.join(running), what, host))

    # -- what the invariants look at ---------------------------------------------------------------
    def copies_of(self, path):
        """{host: whether its file at PATH holds the guest's own bytes} (after a change)."""
        return dict((h, self.hosts[h].files.get(path) == self.truth.get(path)) for h in self.hosts
                    if path in self.hosts[h].files)

    def where(self, name):
        """{host: state} of every host that defines or runs NAME."""
        return dict((h, d.doms[name].state) for h, d in self.hosts.items() if name in d.doms)

    def running(self, name):
        return sorted(h for h, st in self.where(name).items() if st == RUNNING)

    def check_disks(self, host, dom):
        """A guest that starts (or arrives) on HOST runs from its disks there - and its NVRAM and TPM state:
        each must hold its own bytes."""
        for path in disk_paths(dom.xml) + nvram_paths(dom.xml) + tpm_paths(self, dom.uuid):
            want = self.truth.get(path)
            have = self.hosts[host].files.get(path)
            if want is not None and have != want:
                self.violations.append('%s started on %s from %s, which does not hold its disk (%s)' % (
                    dom.name, host, path, 'missing' if have is None else '%d other bytes' % len(have)))


SWTPM = '/var/lib/libvirt/swtpm'


def nvram_paths(xml):
    return [n.text for n in ET.fromstring(xml).findall('./os/nvram') if n.text]


def tpm_paths(world, uuid):
    """The guest's TPM state files (libvirt keeps them per domain UUID): those the world knows its bytes of."""
    return sorted(p for p in world.truth if p.startswith('%s/%s/' % (SWTPM, uuid)))


def disk_paths(xml):
    return [s.get('file') for s in ET.fromstring(xml).findall('./devices/disk/source') if s.get('file')]


def faulty(cls):
    """Wrap every public method of a fake class: a lost reply is lost after the call took effect."""
    for name, fn in list(vars(cls).items()):
        if name.startswith('_') or not callable(fn) or name in ('name',):
            continue

        def wrap(fn=fn):
            def call(self, *args, **kwargs):
                try:
                    result = fn(self, *args, **kwargs)
                except libvirt.libvirtError:
                    self.w.after_call()
                    raise
                self.w.after_call()
                return result
            call.__name__ = fn.__name__
            return call
        setattr(cls, name, wrap())
    return cls


def domain_xml(name, uuid, disk_path, memory_mib=512):
    return ("<domain type='kvm'><name>%s</name><uuid>%s</uuid><memory unit='KiB'>%d</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc-q35-9.2'>hvm</type></os><devices>"
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/>"
            "<source file='%s'/><target dev='vda' bus='virtio'/></disk></devices></domain>"
            % (name, uuid, memory_mib * 1024, disk_path))


# -- the binding's objects ------------------------------------------------------------------------

@faulty
class FakeConn(libvirt.virConnect):
    def __init__(self, world, host):  # pylint: disable=super-init-not-called
        self._o = None
        self.w, self.h, self.c = world, host, self
        world.hit(host, 'open')
        self.gen = world.gen[host]
        world.after_call()

    def _host(self):
        return self.w.hosts[self.h]

    def close(self):
        return 0

    def setKeepAlive(self, interval, count):  # pylint: disable=invalid-name,unused-argument
        return 0

    def getLibVersion(self):  # pylint: disable=invalid-name
        self.w.hit(self, 'getLibVersion')
        return 11003000

    def getHostname(self):  # pylint: disable=invalid-name
        self.w.hit(self, 'getHostname')
        return self.h

    def getFreeMemory(self):  # pylint: disable=invalid-name
        self.w.hit(self, 'getFreeMemory')
        return 8192 * MIB

    def getCapabilities(self):  # pylint: disable=invalid-name
        self.w.hit(self, 'getCapabilities')
        return ("<capabilities><host><uuid>%s</uuid><cpu><arch>x86_64</arch><model>Skylake-Client-IBRS</model>"
                "<vendor>Intel</vendor></cpu></host><guest><os_type>hvm</os_type><arch name='x86_64'>"
                "<machine canonical='pc-q35-9.2'>q35</machine><domain type='qemu'/><domain type='kvm'/></arch>"
                "</guest></capabilities>" % self._host().uuid)

    # the host facts the prechecks read
    def getInfo(self):  # pylint: disable=invalid-name
        self.w.hit(self, 'getInfo')
        return ['x86_64', 16384, 8, 2000, 1, 1, 4, 2]

    def getType(self):  # pylint: disable=invalid-name
        self.w.hit(self, 'getType')
        return 'QEMU'

    def getVersion(self):  # pylint: disable=invalid-name
        self.w.hit(self, 'getVersion')
        return 10000000

    def listAllInterfaces(self, flags=0):  # pylint: disable=invalid-name,unused-argument
        self.w.hit(self, 'listAllInterfaces')
        return []

    def listAllNetworks(self, flags=0):  # pylint: disable=invalid-name,unused-argument
        self.w.hit(self, 'listAllNetworks')
        return []

    def compareHypervisorCPU(self, *args):  # pylint: disable=invalid-name,unused-argument
        self.w.hit(self, 'compareHypervisorCPU')
        return 2    # identical

    def lookupByName(self, name):  # pylint: disable=invalid-name
        self.w.hit(self, 'lookupByName')
        if name not in self._host().doms:
            raise lv_error("Domain not found: no domain with matching name '%s'" % name, libvirt.VIR_ERR_NO_DOMAIN)
        return FakeDomain(self, name)

    def lookupByUUIDString(self, uuid):  # pylint: disable=invalid-name
        self.w.hit(self, 'lookupByUUIDString')
        for d in self._host().doms.values():
            if d.uuid == uuid:
                return FakeDomain(self, d.name)
        raise lv_error("Domain not found: no domain with matching uuid '%s'" % uuid, libvirt.VIR_ERR_NO_DOMAIN)

    def listAllDomains(self, flags=0):  # pylint: disable=invalid-name,unused-argument
        self.w.hit(self, 'listAllDomains')
        return [FakeDomain(self, n) for n in sorted(self._host().doms)]

    def domainListGetStats(self, doms, stats, flags=0):  # pylint: disable=invalid-name,unused-argument
        self.w.hit(self, 'domainListGetStats')
        return [(d, {'dirtyrate.calc_status': 2, 'dirtyrate.megabytes_per_second': 4}) for d in doms]

    def defineXML(self, xml):  # pylint: disable=invalid-name
        self.w.hit(self, 'defineXML')
        root = ET.fromstring(xml)
        name, uuid = root.findtext('name'), root.findtext('uuid')
        with self.w.lock:
            host = self._host()
            if name in host.doms:
                host.doms[name].xml = xml
                host.doms[name].persistent = True
            else:
                host.doms[name] = Dom(name, uuid, xml, state=SHUTOFF)
            self.w.event('define', self.h, name)
        return FakeDomain(self, name)

    # storage
    def listAllStoragePools(self, flags=0):  # pylint: disable=invalid-name,unused-argument
        self.w.hit(self, 'listAllStoragePools')
        return [FakePool(self, n) for n in sorted(self._host().pools)]

    def storagePoolLookupByName(self, name):  # pylint: disable=invalid-name
        self.w.hit(self, 'storagePoolLookupByName')
        if name not in self._host().pools:
            raise lv_error('Storage pool not found: %s' % name, libvirt.VIR_ERR_NO_STORAGE_POOL)
        return FakePool(self, name)

    def storagePoolCreateXML(self, xml, flags=0):  # pylint: disable=invalid-name,unused-argument
        self.w.hit(self, 'storagePoolCreateXML')
        root = ET.fromstring(xml)
        self._host().pools[root.findtext('name')] = root.findtext('./target/path')
        return FakePool(self, root.findtext('name'))

    def newStream(self, flags=0):  # pylint: disable=invalid-name,unused-argument
        self.w.hit(self, 'newStream')
        return FakeStream(self)


@faulty
class FakeDomain(libvirt.virDomain):
    def __init__(self, conn, name):  # pylint: disable=super-init-not-called
        self._o = None
        self.c, self.w, self.h, self._name = conn, conn.w, conn.h, name

    def _d(self, site):
        self.w.hit(self, site)
        d = self.w.hosts[self.h].doms.get(self._name)
        if d is None:
            raise lv_error("Domain not found: '%s'" % self._name, libvirt.VIR_ERR_NO_DOMAIN)
        return d

    def name(self):
        return self._name

    def UUIDString(self):  # pylint: disable=invalid-name
        return self._d('UUIDString').uuid

    def isActive(self):  # pylint: disable=invalid-name
        return int(self._d('isActive').active)

    def isPersistent(self):  # pylint: disable=invalid-name
        return int(self._d('isPersistent').persistent)

    def autostart(self):
        return int(self._d('autostart').autostart)

    def setAutostart(self, flag):  # pylint: disable=invalid-name
        self._d('setAutostart').autostart = bool(flag)
        return 0

    def state(self, flags=0):  # pylint: disable=unused-argument
        d = self._d('state')
        return [d.state, d.reason]

    def info(self):
        d = self._d('info')
        return [d.state, 512 * 1024, 512 * 1024, 1, 0]

    def XMLDesc(self, flags=0):  # pylint: disable=invalid-name,unused-argument
        return self._d('XMLDesc').xml

    def blockInfo(self, target, flags=0):  # pylint: disable=invalid-name,unused-argument
        self._d('blockInfo')
        return [8 * 1024 * MIB, 9000, 9000]

    def interfaceAddresses(self, source, flags=0):  # pylint: disable=invalid-name,unused-argument
        self._d('interfaceAddresses')
        return {}

    def startDirtyRateCalc(self, seconds, flags=0):  # pylint: disable=invalid-name,unused-argument
        self._d('startDirtyRateCalc')
        return 0

    def _set(self, site, state, reason=1, what=None):
        d = self._d(site)
        with self.w.lock:
            d.state, d.reason = state, reason
            if what:
                self.w.event(what, self.h, self._name)
        return 0

    def create(self):
        d = self._d('create')
        if d.active:
            raise lv_error('Requested operation is not valid: domain is already running', libvirt.VIR_ERR_OPERATION_INVALID)
        with self.w.lock:
            d.state, d.reason = RUNNING, 1
            self.w.check_disks(self.h, d)
            self.w.event('start', self.h, self._name)
        return 0

    def shutdown(self):
        if self.w.ignore_shutdown or self._name in self.w.ignore_shutdown_of:
            self._d('shutdown')
            return 0
        return self._set('shutdown', SHUTOFF, what='shutdown')

    def destroy(self):
        d = self.w.hosts[self.h].doms.get(self._name)
        if d is not None and d.state == PAUSED and d.reason == POSTCOPY_FAILED:
            self.w.violations.append('destroyed %s on %s in a failed post-copy (half its memory is on the other '
                                     'host)' % (self._name, self.h))
        return self._set('destroy', SHUTOFF, what='destroy')

    def suspend(self):
        d = self._d('suspend')
        with self.w.lock:
            d.state, d.reason = PAUSED, 1
            job = self.w.jobs.get(self._name)
            if job:
                job['paused'] = True
                job['done'].set()
        return 0

    def resume(self):
        return self._set('resume', RUNNING, what='resume')

    def undefineFlags(self, flags=0):  # pylint: disable=invalid-name
        return self._undefine('undefineFlags', flags)

    def undefine(self):
        return self._undefine('undefine', 0)

    def _undefine(self, site, flags):
        """As libvirt: the definition goes (a running guest becomes transient); with UNDEFINE_NVRAM its NVRAM
        file goes too, and an emulated TPM's state always goes with the definition (libvirt's default)."""
        d = self._d(site)
        with self.w.lock:
            if d.active:
                d.persistent = False
            else:
                del self.w.hosts[self.h].doms[self._name]
                files = self.w.hosts[self.h].files
                gone = [p for p in tpm_paths(self.w, d.uuid) if p in files]
                if flags & libvirt.VIR_DOMAIN_UNDEFINE_NVRAM:
                    gone += [p for p in nvram_paths(d.xml) if p in files]
                for path in gone:
                    del files[path]
                    self.w.events.append(('delete_volume', self.h, path, self.w.copies_of(path)))
            self.w.event('undefine', self.h, self._name)
        return 0

    # jobs
    def jobStats(self, flags=0):  # pylint: disable=invalid-name
        self._d('jobStats')
        job = self.w.jobs.get(self._name)
        if flags & libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED:
            return {'type': libvirt.VIR_DOMAIN_JOB_COMPLETED, 'downtime': 40, 'data_processed': 600 * MIB,
                    'memory_iteration': 3, 'memory_dirty_rate': 768, 'memory_page_size': 4096} \
                if job is None or job.get('completed') else {'type': 0}
        if job is None or job['done'].is_set():
            return {'type': libvirt.VIR_DOMAIN_JOB_NONE}
        with self.w.lock:
            job['polls'] += 1
            self.w.clock.now += job['step_s']      # the job runs while the monitor looks
            finish = self.w.polls_to_finish
            if finish is not None and job['polls'] >= finish:
                job['done'].set()
            return {'type': libvirt.VIR_DOMAIN_JOB_UNBOUNDED, 'memory_iteration': job['polls'] + 1,
                    'data_processed': job['polls'] * 100 * MIB, 'data_remaining': 400 * MIB,
                    'memory_remaining': 400 * MIB, 'data_total': 512 * MIB, 'memory_bps': 100 * MIB}

    def migrateSetMaxDowntime(self, ms, flags=0):  # pylint: disable=invalid-name,unused-argument
        self._d('migrateSetMaxDowntime')
        self.w.downtimes.append(ms)
        return 0

    def migrateStartPostCopy(self, flags=0):  # pylint: disable=invalid-name,unused-argument
        self._d('migrateStartPostCopy')
        job = self.w.jobs.get(self._name)
        if job:
            job['postcopy'] = True
            job['done'].set()
        return 0

    def abortJob(self):  # pylint: disable=invalid-name
        self._d('abortJob')
        job = self.w.jobs.get(self._name)
        d = self.w.hosts[self.h].doms.get(self._name)
        if job and job.get('postcopy') and not job['done'].is_set() or d is not None and d.reason == POSTCOPY_FAILED:
            self.w.violations.append('aborted the post-copy migration of %s' % self._name)
        if job and not job.get('postcopy'):
            job['aborted'] = True
            job['done'].set()
        return 0

    def abortJobFlags(self, flags=0):  # pylint: disable=invalid-name,unused-argument
        self._d('abortJobFlags')
        return 0

    def migrateToURI3(self, duri, params, flags):  # pylint: disable=invalid-name
        self.w.migrate_params = dict(params)
        return self._migrate(urlparse(duri).hostname, flags, 'migrateToURI3')

    def migrate3(self, dconn, params, flags):
        return self._migrate(dconn.h, flags, 'migrate3')

    def _migrate(self, dest, flags, site):
        d = self._d(site)
        w = self.w
        if w.clock.now < w.down_until.get(dest, -1):
            raise lv_error('unable to connect to server at %s:16514: Connection refused' % dest, libvirt.VIR_ERR_SYSTEM_ERROR)
        target = w.hosts[dest]
        if flags & libvirt.VIR_MIGRATE_POSTCOPY_RESUME:
            there = target.doms.get(self._name)
            if d.state != PAUSED or d.reason != POSTCOPY_FAILED or there is None:
                raise lv_error('Requested operation is not valid: migration is not in post-copy failed state',
                               libvirt.VIR_ERR_OPERATION_INVALID)
            w.hit(self.h, site + ':resumed')
            with w.lock:
                there.state, there.reason = RUNNING, 1
                d.state, d.reason = SHUTOFF, 2
                w.event('migrated', dest, self._name)
                w.jobs[self._name] = {'done': threading.Event(), 'completed': True, 'polls': 0, 'step_s': 0}
            return 0
        if self._name in target.doms and target.doms[self._name].active:
            raise lv_error('operation failed: domain %s is already active on %s' % (self._name, dest),
                           libvirt.VIR_ERR_OPERATION_FAILED)
        # (a guest its owner paused arrives paused, as with libvirt)
        job = {'done': threading.Event(), 'polls': 0, 'step_s': w.job_step_s, 'paused': d.state == PAUSED}
        w.jobs[self._name] = job
        try:
            # the job runs in libvirtd: it ends as the monitor watches it; when our connection to the source
            # is lost the call fails at once while libvirtd goes on - a converging guest arrives anyway
            for _slice in range(400):
                if job['done'].wait(0.01):
                    break
                if self.c.gen != w.gen[self.h]:
                    if w.polls_to_finish is not None:
                        self._arrive(d, target, dest, flags, job)
                    raise lv_error('Cannot recv data: Connection reset by peer', libvirt.VIR_ERR_SYSTEM_ERROR)
            else:
                raise lv_error('fake: nobody ended a job that cannot converge', libvirt.VIR_ERR_INTERNAL_ERROR)
            if job.get('aborted'):
                raise lv_error('operation aborted: migration out job: canceled by client',
                               libvirt.VIR_ERR_OPERATION_ABORTED)
            if not job.get('postcopy'):
                # the stream to the destination may break before the switch-over: the source never stopped the
                # guest, and libvirt there removes the incoming guest once its connection from the source is gone
                w.hit(dest, 'stream')
            if job.get('postcopy'):
                # past the switch-over the destination runs the guest: a failure now splits it
                try:
                    w.hit(self.h, site + ':postcopy')
                except libvirt.libvirtError:
                    with w.lock:
                        target.doms[self._name] = Dom(self._name, d.uuid, d.xml, state=PAUSED, reason=POSTCOPY_FAILED)
                        d.state, d.reason = PAUSED, POSTCOPY_FAILED
                        w.event('postcopy_failed', dest, self._name)
                    raise
            # the destination's side: the incoming guest exists (paused) before the job finishes there; a
            # failure of that last step leaves it for the source side to clean up. The source stopped the guest
            # for the switch-over: libvirt resumes it there after a failure, saying so in its running reason.
            with w.lock:
                if not job.get('postcopy'):
                    target.doms[self._name] = Dom(self._name, d.uuid, d.xml, state=PAUSED,
                                                  persistent=bool(flags & libvirt.VIR_MIGRATE_PERSIST_DEST))
                    if d.state == RUNNING:
                        d.state, d.reason = PAUSED, PAUSED_MIGRATION
            try:
                w.hit(dest, 'incoming')
            except libvirt.libvirtError:
                with w.lock:
                    if not job.get('paused') and d.state == PAUSED and d.reason == PAUSED_MIGRATION:
                        d.state, d.reason = RUNNING, MIGRATION_CANCELED
                raise
            if w.take('crash', dest):
                self._arrive(d, target, dest, flags, job)
                with w.lock:
                    target.doms[self._name].state, target.doms[self._name].reason = SHUTOFF, CRASHED
                    w.event('crashed', dest, self._name)
                return 0
            if w.take('lost', dest):
                # libvirt's recovery after a lost Finish reply: the destination runs the guest, the source
                # is left paused for a third party to check, and the call fails
                self._arrive(d, target, dest, flags, job)
                with w.lock:
                    d.state, d.reason = PAUSED, 1
                    w.event('left_paused', self.h, self._name)
                raise lv_error('operation failed: migration job: the destination did not confirm (its reply was '
                               'lost)', libvirt.VIR_ERR_OPERATION_FAILED)
            self._arrive(d, target, dest, flags, job)
        finally:
            job['done'].set()
        return 0

    def _arrive(self, d, target, dest, flags, job):
        w = self.w
        with w.lock:
            state = PAUSED if job.get('paused') else RUNNING
            target.doms[self._name] = Dom(self._name, d.uuid, d.xml, state=state,
                                          persistent=bool(flags & libvirt.VIR_MIGRATE_PERSIST_DEST))
            d.state, d.reason = SHUTOFF, 2
            if not d.persistent:
                del w.hosts[self.h].doms[self._name]
            job['completed'] = True
            if state == RUNNING:
                w.check_disks(dest, target.doms[self._name])
            w.event('migrated', dest, self._name)


@faulty
class FakePool(libvirt.virStoragePool):
    def __init__(self, conn, name):  # pylint: disable=super-init-not-called
        self._o = None
        self.c, self.w, self.h, self._name = conn, conn.w, conn.h, name

    def _path(self, site):
        self.w.hit(self, site)
        path = self.w.hosts[self.h].pools.get(self._name)
        if path is None:
            raise lv_error('Storage pool not found: %s' % self._name, libvirt.VIR_ERR_NO_STORAGE_POOL)
        return path

    def name(self):
        return self._name

    def isActive(self):  # pylint: disable=invalid-name
        self._path('pool.isActive')
        return 1

    def XMLDesc(self, flags=0):  # pylint: disable=invalid-name,unused-argument
        return "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (
            self._name, self._path('pool.XMLDesc'))

    def refresh(self, flags=0):  # pylint: disable=unused-argument
        self._path('pool.refresh')
        return 0

    def info(self):
        self._path('pool.info')
        return [2, 100 * 1024 * MIB, 10 * 1024 * MIB, 90 * 1024 * MIB]

    def destroy(self):
        self._path('pool.destroy')
        del self.w.hosts[self.h].pools[self._name]
        return 0

    def listAllVolumes(self, flags=0):  # pylint: disable=invalid-name,unused-argument
        path = self._path('pool.listAllVolumes')
        files = self.w.hosts[self.h].files
        return [FakeVol(self.c, p) for p in sorted(files) if p.rsplit('/', 1)[0] == path]

    def storageVolLookupByName(self, name):  # pylint: disable=invalid-name
        path = self._path('pool.storageVolLookupByName') + '/' + name
        if path not in self.w.hosts[self.h].files:
            raise lv_error('Storage volume not found: %s' % path, libvirt.VIR_ERR_NO_STORAGE_VOL)
        return FakeVol(self.c, path)

    def createXML(self, xml, flags=0):  # pylint: disable=invalid-name,unused-argument
        root = ET.fromstring(xml)
        path = self._path('pool.createXML') + '/' + root.findtext('name')
        with self.w.lock:
            files = self.w.hosts[self.h].files
            files[path] = b''
            self.w.capacity[files.key(path)] = int(root.findtext('capacity') or 0)
            self.w.event('create_volume', self.h, path)
        return FakeVol(self.c, path)


@faulty
class FakeVol(libvirt.virStorageVol):
    def __init__(self, conn, path):  # pylint: disable=super-init-not-called
        self._o = None
        self.c, self.w, self.h, self._p = conn, conn.w, conn.h, path

    def _data(self, site):
        self.w.hit(self, site)
        data = self.w.hosts[self.h].files.get(self._p)
        if data is None:
            raise lv_error('Storage volume not found: %s' % self._p, libvirt.VIR_ERR_NO_STORAGE_VOL)
        return data

    def name(self):
        return self._p.rsplit('/', 1)[1]

    def path(self):
        self._data('vol.path')
        return self._p

    def info(self):
        data = self._data('vol.info')
        key = self.w.hosts[self.h].files.key(self._p)
        return [libvirt.VIR_STORAGE_VOL_FILE, self.w.capacity.get(key, 8 * MIB),
                self.w.allocation.get(self._p, len(data))]

    def XMLDesc(self, flags=0):  # pylint: disable=invalid-name,unused-argument
        self._data('vol.XMLDesc')
        return "<volume><name>%s</name><target><format type='qcow2'/></target></volume>" % self.name()

    def delete(self, flags=0):  # pylint: disable=unused-argument
        self._data('vol.delete')
        with self.w.lock:
            del self.w.hosts[self.h].files[self._p]
            self.w.events.append(('delete_volume', self.h, self._p, self.w.copies_of(self._p)))
        return 0

    def download(self, stream, offset, length, flags=0):  # pylint: disable=unused-argument
        stream.source = self._data('vol.download')
        stream.vol = self
        return 0

    def upload(self, stream, offset, length, flags=0):  # pylint: disable=unused-argument
        self._data('vol.upload')
        stream.target = self
        stream.sink = []
        return 0


@faulty
class FakeStream(libvirt.virStream):
    def __init__(self, conn):  # pylint: disable=super-init-not-called
        self._o = None
        self.c, self.w, self.h = conn, conn.w, conn.h
        self.source = self.target = self.sink = self.vol = None

    def sparseRecvAll(self, handler, hole_handler, opaque):  # pylint: disable=invalid-name
        self.w.hit(self, 'stream.sparseRecvAll')
        data = self.source or b''
        for i in range(0, len(data), 4096):
            if self.w.stream_step_s:
                # a slow copy takes real time too, so that other threads see its fake time pass
                time.sleep(0.05)
                self.w.clock.now += self.w.stream_step_s
            handler(self, data[i:i + 4096], opaque)
        return 0

    def sparseSendAll(self, handler, hole_handler, skip_handler, opaque):  # pylint: disable=invalid-name
        self.w.hit(self, 'stream.sparseSendAll')
        self.corrupt = bool(self.w.take('corrupt'))
        while True:
            in_data, length = hole_handler(self, opaque)
            if in_data and length == 0:
                break
            if in_data:
                self.sink.append(handler(self, length, opaque))
            else:
                skip_handler(self, length, opaque)
                self.sink.append(b'\0' * length)
        return 0

    def finish(self):
        self.w.hit(self, 'stream.finish')
        if self.target is not None:
            data = b''.join(self.sink)
            if getattr(self, 'corrupt', False) and data:
                data = bytes([data[0] ^ 0xff]) + data[1:]
            with self.w.lock:
                self.w.hosts[self.h].files[self.target._p] = data  # pylint: disable=protected-access
                self.w.event('uploaded', self.h, self.target._p)  # pylint: disable=protected-access
        return 0

    def abort(self):
        self.w.hit(self, 'stream.abort')
        return 0


# -- clients: the collection's own LibvirtClient, opening fake connections ---------------------------

class FakeClient(C.LibvirtClient):
    def __init__(self, world, uri):
        C.LibvirtClient.__init__(self, uri, retries=0, retry_delay=0, sleep=world.clock.sleep, keepalive=None)
        self.w = world

    def _open(self):
        try:
            return FakeConn(self.w, urlparse(self._uri).hostname)
        except libvirt.libvirtError as e:
            raise C.wrap_error(e, 'cannot connect to libvirt at %s' % self.uri)


class FakeCache:
    def __init__(self, world):
        self.w, self._clients = world, {}

    def get(self, uri):
        if uri not in self._clients:
            self._clients[uri] = FakeClient(self.w, uri)
        return self._clients[uri]

    def close(self):
        for c in self._clients.values():
            c.close()
        self._clients = {}


def uri(host):
    return 'qemu+tls://%s/system' % host
