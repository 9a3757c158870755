"""The CPU baseline and fit logic on real CPUs: domain capabilities libvirt's own test suite captured on Intel
Haswell, Skylake and Granite Rapids and AMD EPYC Rome and Genoa hosts (fixtures/domcaps), with the real libvirt
doing the model arithmetic (its test driver's baseline and expansion over libvirt's CPU map)."""
import glob
import os

import pytest

from ansible_collections.vmmigration.libvirt.plugins.module_utils.decide import cpu as C

libvirt = pytest.importorskip('libvirt')
HERE = os.path.dirname(os.path.abspath(__file__))
HASWELL, SKYLAKE, GRANITE = 'intel-haswell-notsx', 'intel-skylake-client-ibrs', 'intel-graniterapids'
INTEL = (HASWELL, SKYLAKE, GRANITE)


@pytest.fixture(scope='module')
def call():
    libvirt.registerErrorHandler(lambda *_a: None, None)
    conn = libvirt.open('test:///default')
    yield conn.baselineCPU
    conn.close()


@pytest.fixture(scope='module')
def hosts():
    out = {}
    for path in sorted(glob.glob(os.path.join(HERE, 'fixtures', 'domcaps', '*.xml'))):
        name = os.path.basename(path)[:-4]
        with open(path) as f:
            out[name] = C.host_cpu(f.read(), name)
    return out


def test_each_hosts_offer_is_read_from_its_domain_capabilities(hosts):
    assert dict((n, (h['vendor'], h['model'])) for n, h in hosts.items()) == {
        'amd-epyc-genoa': ('AMD', 'EPYC-Genoa'), 'amd-epyc-rome': ('AMD', 'EPYC-Rome'),
        GRANITE: ('Intel', 'GraniteRapids'), HASWELL: ('Intel', 'Haswell-noTSX'),
        SKYLAKE: ('Intel', 'Skylake-Client-IBRS')}
    assert 'vmx' in hosts[SKYLAKE]['required'] and hosts[GRANITE]['disabled']
    assert all(h['virttype'] == 'kvm' and h['arch'] == 'x86_64' for h in hosts.values())
    with pytest.raises(C.CpuError, match='no host-model CPU'):
        C.host_cpu('<domainCapabilities><arch>x86_64</arch><cpu/></domainCapabilities>', 'bare')


def test_the_baseline_of_three_intel_generations_runs_on_each_of_them(call, hosts):
    base = C.baseline(call, [hosts[n] for n in INTEL], migratable=False)
    assert (base['vendor'], base['model']) == ('Intel', 'Haswell-noTSX')   # the oldest generation's model
    feats = dict((n, C.host_features(call, hosts[n])) for n in INTEL)
    # the defining property: every host has every feature of the baseline, and the baseline is not empty
    assert len(base['features']) > 40 and all(set(base['features']) <= feats[n] for n in INTEL)
    # and it is the most they share: no feature all three have is left out
    assert set.intersection(*feats.values()) - set(base['features']) <= set(base['disabled'])
    # a feature of the newest host that this libvirt's CPU map does not know cannot be in it: dropped, said
    assert set(base['dropped']) <= {'its-no'}


def test_hosts_of_different_vendors_are_refused_by_name(call, hosts):
    with pytest.raises(C.CpuError, match=r'different vendors \(amd-epyc-rome AMD, intel-haswell-notsx Intel\)'):
        C.baseline(call, [hosts['amd-epyc-rome'], hosts[HASWELL]], migratable=False)
    assert C.baseline(call, [hosts['amd-epyc-rome'], hosts['amd-epyc-genoa']], migratable=False)['model'] == 'EPYC-Rome'


@pytest.mark.parametrize('model, fits, can_run_on', [
    ('SandyBridge', True, INTEL),                    # older than the baseline: anywhere
    ('Haswell-noTSX', True, INTEL),                  # the baseline's own model
    ('Skylake-Client-IBRS', False, (GRANITE, SKYLAKE)),   # not on the Haswell host
    ('Cascadelake-Server', False, (GRANITE,)),       # AVX-512: only the newest host - stranded there
])
def test_which_vms_fit_the_baseline_and_where_the_others_can_run(call, hosts, model, fits, can_run_on):
    base = C.baseline(call, [hosts[n] for n in INTEL], migratable=False)
    feats = dict((n, C.host_features(call, hosts[n])) for n in INTEL)
    need, _dropped = C.expand(call, 'x86_64', 'Intel', model)
    r = C.fit({'mode': 'custom', 'model': model, 'vendor': 'Intel'}, need, base, feats)
    assert r['fits'] is fits and r['can_run_on'] == sorted(can_run_on), r
    assert r['stranded'] is (len(can_run_on) < 3)
    assert bool(r['missing']) is not fits
    if not fits:
        assert r['why'].startswith('needs ') and ', '.join(sorted(can_run_on)) in r['why']
    if model == 'Cascadelake-Server':
        assert 'avx512f' in r['missing']


def test_a_vm_set_to_the_baseline_fits_and_runs_everywhere_and_setting_it_again_changes_nothing(call, hosts):
    base = C.baseline(call, [hosts[n] for n in INTEL], migratable=False)
    feats = dict((n, C.host_features(call, hosts[n])) for n in INTEL)
    dom = ("<domain type='kvm'><name>vm1</name><vcpu>2</vcpu><cpu mode='host-passthrough' check='none'>"
           "<topology sockets='1' cores='2' threads='1'/></cpu><devices/></domain>")
    before = C.vm_cpu(dom)
    assert before['mode'] == 'host-passthrough'
    # host-passthrough on the Skylake host: only hosts offering at least as much run it
    r = C.fit(before, None, base, feats, where=SKYLAKE)
    assert not r['fits'] and r['can_run_on'] == [GRANITE, SKYLAKE] and r['stranded']
    new_xml, old, new = C.with_baseline_cpu(dom, base)
    assert "mode='host-passthrough'" in old.replace('"', "'") and 'Haswell-noTSX' in new and '<topology' in new
    after = C.vm_cpu(new_xml)
    assert C.same_cpu(after, base) and not C.same_cpu(before, base)
    need, _d = C.expand(call, 'x86_64', after['vendor'], after['model'], after['required'], after['disabled'])
    r = C.fit(after, need, base, feats)
    assert r['fits'] and r['can_run_on'] == sorted(INTEL) and not r['stranded']
    # a definition without a CPU element runs the hypervisor's default model: fits
    assert C.fit(C.vm_cpu('<domain><name>x</name></domain>'), None, base, feats)['fits']


def test_a_feature_a_hosts_hypervisor_cannot_provide_is_taken_out_of_the_baseline(call, hosts):
    base = C.baseline(call, [hosts[n] for n in INTEL], migratable=False)
    assert 'abm' in base['extra'] and 'vme' not in base['disabled']
    seen = []

    def refuses(host, *features):
        def compare(xml):
            seen.append((host, xml))
            lacking = [f for f in features if "policy='require' name='%s'" % f in xml or
                       ("policy='disable' name='%s'" % f not in xml and f == 'vme')]
            if lacking:
                raise Exception('the CPU is incompatible with host CPU: Host CPU does not provide required '
                                'features: %s' % ', '.join(lacking))
        return compare
    fixed = C.runnable_everywhere(base, {'h1': refuses('h1', 'vme', 'abm'), 'h2': refuses('h2', 'vme'),
                                         'h3': refuses('h3')})
    # abm was named on top of the model: left out; vme comes with the model: disabled
    assert 'abm' not in fixed['extra'] and 'vme' in fixed['disabled']
    assert fixed['not_provided'] == {'abm': ['h1'], 'vme': ['h1', 'h2']}
    assert not {'abm', 'vme'} & set(fixed['features']) and set(fixed['features']) < set(base['features'])
    # the last round asked every host again, and all accepted the guest CPU as a VM set to it gets it
    last = seen[-3:]
    assert sorted(h for h, _x in last) == ['h1', 'h2', 'h3'] and all("name='vme'" in x for _h, x in last)
    new_xml, _old, new = C.with_baseline_cpu("<domain><name>v</name><vcpu>1</vcpu></domain>", fixed)
    assert C.same_cpu(C.vm_cpu(new_xml), fixed) and "policy=\"disable\" name=\"vme\"" in new

    # a refusal that names no feature is not guessed at
    def no_emulator(xml):
        raise Exception('no emulator for %d bytes of CPU' % len(xml))
    with pytest.raises(C.CpuError, match="h3 cannot run the baseline CPU Haswell-noTSX: no emulator"):
        C.runnable_everywhere(base, {'h3': no_emulator})


def test_the_rolling_plan_names_a_vm_only_its_own_host_can_run_before_anything_moves(call, hosts):
    """Real verdicts over three Intel generations into the cluster plan: a Cascade Lake VM on the Granite Rapids
    host has nowhere to go when that host is maintained; a Skylake VM there can go to the Skylake host."""
    from ansible_collections.vmmigration.libvirt.plugins.module_utils.orchestration import rolling as R
    base = C.baseline(call, [hosts[n] for n in INTEL], migratable=False)
    feats = dict((n, C.host_features(call, hosts[n])) for n in INTEL)
    domains = []
    for name, model, host, active in (('avx512-db', 'Cascadelake-Server', GRANITE, True),
                                      ('web', 'Skylake-Client-IBRS', GRANITE, True),
                                      ('parked', 'Cascadelake-Server', GRANITE, False),
                                      ('old', 'SandyBridge', HASWELL, True)):
        need, _dropped = C.expand(call, 'x86_64', 'Intel', model)
        verdict = C.fit({'mode': 'custom', 'model': model, 'vendor': 'Intel'}, need, base, feats, where=host)
        domains.append(dict(name=name, host=host, active=active, mode='custom', model=model, **verdict))
    cpu = {'baseline': base, 'domains': domains}
    moves = {'moves': [{'name': 'web', 'destination': SKYLAKE, 'method': 'live', 'memory_mib': 64}], 'left': {},
             'predicted_total_s': 2.0}
    hp = [{'name': n, 'record': {}, 'plan': moves if n == GRANITE else {'moves': [], 'left': {}}} for n in INTEL]
    cp = R.cluster_plan(hp, list(INTEL), cpu=cpu)
    # the running AVX-512 VM, by name and why; not the stopped one (a drain moves running VMs), not the Skylake one
    assert list(cp['unplaceable']) == [GRANITE] and list(cp['unplaceable'][GRANITE]) == ['avx512-db']
    assert 'runs only on %s' % GRANITE in cp['unplaceable'][GRANITE]['avx512-db']
    assert 'avx512f' in cp['unplaceable'][GRANITE]['avx512-db']
    assert cp['order'] == [HASWELL, SKYLAKE]
    assert '  CPU every host can run (baseline): Haswell-noTSX (Intel)' in cp['lines']
    assert any(x.startswith('    web on %s runs on %s, %s only' % (GRANITE, GRANITE, SKYLAKE)) for x in cp['lines'])
    # without the CPU check, the plan of that host alone does not see it
    assert R.cluster_plan(hp, list(INTEL))['unplaceable'] == {}


def test_the_vms_are_judged_against_the_hypervisor_type_they_run_as():
    kvm, tcg = "<domain type='kvm'><name>a</name></domain>", "<domain type='qemu'><name>b</name></domain>"
    assert C.domain_type([tcg, tcg]) == 'qemu' and C.domain_type([kvm]) == 'kvm'
    # mixed, or none to judge: libvirt's default
    assert C.domain_type([kvm, tcg]) is None and C.domain_type([]) is None
