"""as_data: role options as the dicts and lists they are, also when an AWX survey sent them as text."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmmigration.libvirt.plugins.filter.as_data import as_data


def test_data_passes_unchanged_and_survey_text_is_read():
    d = {'headroom_mib': 64}
    assert as_data(d) is d and as_data(['a'], 'list') == ['a']
    assert as_data('{"headroom_mib": 64}') == d                 # JSON text, as a textarea sends it
    assert as_data('headroom_mib: 64\ncompression: [xbzrle]') == {'headroom_mib': 64,
                                                                  'compression': ['xbzrle']}
    assert as_data('- h2\n- h3', 'list') == ['h2', 'h3'] and as_data('[h2, h3]', 'list') == ['h2', 'h3']
    assert as_data('', 'list') == [] and as_data('  ') == {} and as_data(None, 'list') == []


def test_what_is_not_the_option_kind_fails_naming_the_option():
    with pytest.raises(AnsibleFilterError, match=r'evacuate_host_pinned: expected a dict, got list'):
        as_data('[a, b]', 'dict', 'evacuate_host_pinned')
    with pytest.raises(AnsibleFilterError, match=r'migrate_vm_options: expected a dict, as YAML or JSON text, but it does not parse'):
        as_data('{"a": 1', 'dict', 'migrate_vm_options')
    with pytest.raises(AnsibleFilterError, match='kind must be dict or list'):
        as_data({}, 'set')
