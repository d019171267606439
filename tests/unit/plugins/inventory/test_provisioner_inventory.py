# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ingot.metal.provisioner inventory plugin, on a real InventoryData over the in-memory provisioner.

Expected groups and host variables, host naming, filters, unsafe marking (a node whose name and tags are
Jinja2 is never templated), constructed variables and groups with strict, the cache, live power from
(fake) BMCs, and errors.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from ansible_collections.ingot.metal.plugins.inventory.provisioner import InventoryModule
from ansible_collections.ingot.metal.tests.unit.plugins.module_utils.provisioner_fake import TOKEN

EVIL = "{{ lookup('pipe', 'id') }}"


def rack(fake):
    fake.add_node('r3-n01', pool='rack3', tags=['ssd'], bmc={'address': '10.0.3.101', 'port': 623, 'protocol': 'ipmi'})
    fake.add_node('r3-n02', pool='rack3', state='allocated', owner='ci', allocation_name='builder1',
                  bmc={'address': '10.0.3.102', 'port': 623, 'protocol': 'ipmi'})
    fake.add_node('r4-n01', pool='rack4', state='deployed', owner='ci', allocation_name='web1', image='debian-12',
                  ip_address='10.0.4.31', docker_url='tcp://10.0.4.31:2376',
                  ssh_host_keys={'ed25519': 'ssh-ed25519 AAAA'},
                  facts={'cpus': 32, 'memory_mib': 131072, 'disk_gib': 900},
                  bmc={'address': '10.0.4.101', 'port': 443, 'protocol': 'redfish'})
    fake.add_node('node-020000000099', state='discovered', pool='default', bmc=None)
    fake.add_node('r4-n02', pool='rack4', maintenance=True, maintenance_reason='DIMM errors')


def members(inventory, group):
    return sorted(h.name for h in inventory.groups[group].get_hosts())


def hostvars(inventory, host):
    return inventory.get_host(host).get_vars()


# ---------------------------------------------------------------- verify_file
@pytest.mark.parametrize('name, ok', [
    ('lab.ingot.yml', True), ('ingot.yaml', True), ('rack.provisioner.yml', True), ('provisioner.yaml', True),
    ('inventory.yml', False), ('lab.ingot.json', False), ('hosts', False), ('ingot.yml.bak', False),
])
def test_verify_file_accepts_only_its_suffixes(tmp_path, name, ok):
    path = tmp_path / name
    path.write_text('plugin: ingot.metal.provisioner\n')
    assert InventoryModule().verify_file(str(path)) is ok


def test_verify_file_needs_the_file(tmp_path):
    assert not InventoryModule().verify_file(str(tmp_path / 'missing.ingot.yml'))


# ---------------------------------------------------------------- groups and vars
def test_hosts_groups_and_vars(fake, make_plugin):
    rack(fake)
    plugin, inventory, parse = make_plugin({})
    parse()
    assert sorted(inventory.hosts) == ['builder1', 'node-020000000099', 'r3-n01', 'r4-n02', 'web1']
    assert members(inventory, 'state_ready') == ['r3-n01', 'r4-n02']
    assert members(inventory, 'state_allocated') == ['builder1']
    assert members(inventory, 'state_deployed') == ['web1']
    assert members(inventory, 'state_discovered') == ['node-020000000099']
    assert members(inventory, 'pool_rack3') == ['builder1', 'r3-n01']
    assert members(inventory, 'pool_rack4') == ['r4-n02', 'web1']
    assert members(inventory, 'pool_default') == ['node-020000000099']
    assert members(inventory, 'maintenance') == ['r4-n02']
    assert 'power_on' not in inventory.groups

    web = hostvars(inventory, 'web1')
    rec = fake.node('r4-n01')
    assert web['ansible_host'] == '10.0.4.31'
    assert (web['bmc_host'], web['bmc_port'], web['bmc_protocol']) == ('10.0.4.101', 443, 'redfish')
    assert web['ingot_node'] == 'r4-n01' and web['ingot_node_id'] == rec['id']
    assert web['ingot_state'] == 'deployed' and web['ingot_owner'] == 'ci' and web['ingot_allocation_name'] == 'web1'
    assert web['ingot_docker_url'] == 'tcp://10.0.4.31:2376' and web['ingot_image'] == 'debian-12'
    assert web['ingot_facts'] == {'cpus': 32, 'memory_mib': 131072, 'disk_gib': 900}
    assert web['ingot_macs'] == rec['macs'] and web['ingot_ssh_host_keys'] == {'ed25519': 'ssh-ed25519 AAAA'}
    assert web['ingot_pool'] == 'rack4' and web['ingot_tags'] == [] and web['ingot_maintenance'] is False

    builder = hostvars(inventory, 'builder1')
    assert 'ansible_host' not in builder and 'ingot_docker_url' not in builder   # not deployed, not set
    assert builder['ingot_node'] == 'r3-n02'
    assert 'bmc_host' not in hostvars(inventory, 'node-020000000099')
    assert hostvars(inventory, 'r4-n02')['ingot_maintenance_reason'] == 'DIMM errors'
    for host in inventory.hosts.values():
        assert not any('password' in k for k in host.get_vars())


def test_pages_are_large_and_few(fake, make_plugin):
    for i in range(2500):
        fake.add_node('n%04d' % i)
    plugin, inventory, parse = make_plugin({'page_size': 1000})
    parse()
    assert len(inventory.hosts) == 2500
    assert sorted(int(q['offset']) for m, p, q, b in fake.requests) == [0, 1000, 2000]


def test_allocation_names_used_twice_fall_back_to_node_names(fake, make_plugin, monkeypatch):
    fake.add_node('n1', state='allocated', owner='alice', allocation_name='builder1')
    fake.add_node('n2', state='allocated', owner='bob', allocation_name='builder1')
    fake.add_node('n3', state='allocated', owner='bob', allocation_name='n4')
    fake.add_node('n4')
    fake.add_node('n5', state='allocated', owner='bob', allocation_name='web')
    warnings = []
    plugin, inventory, parse = make_plugin({})
    monkeypatch.setattr(plugin.display, 'warning', lambda msg, *a, **k: warnings.append(msg))
    parse()
    assert sorted(inventory.hosts) == ['n1', 'n2', 'n3', 'n4', 'web']
    assert 'builder1 (node n1 of alice)' in warnings[0] and 'n4 (node n3 of bob)' in warnings[0]


# ---------------------------------------------------------------- filters
def test_one_state_and_pool_are_asked_of_the_service(fake, make_plugin):
    rack(fake)
    plugin, inventory, parse = make_plugin({'states': ['ready'], 'pools': ['rack3']})
    parse()
    assert sorted(inventory.hosts) == ['r3-n01']
    query = fake.requests[0][2]
    assert query['state'] == 'ready' and query['pool'] == 'rack3'


def test_several_states_are_filtered_here(fake, make_plugin):
    rack(fake)
    plugin, inventory, parse = make_plugin({'states': ['deployed', 'allocated'], 'include_maintenance': False})
    parse()
    assert sorted(inventory.hosts) == ['builder1', 'web1']
    assert 'state' not in fake.requests[0][2]


def test_maintenance_can_be_left_out(fake, make_plugin):
    rack(fake)
    plugin, inventory, parse = make_plugin({'include_maintenance': False})
    parse()
    assert 'r4-n02' not in inventory.hosts and 'maintenance' not in inventory.groups


# ---------------------------------------------------------------- unsafe
def _trusted(text):
    try:
        from ansible.template import trust_as_template  # ansible-core >= 2.19
    except ImportError:  # pragma: no cover - older ansible-core: every plain string is a template
        return text
    return trust_as_template(text)


def test_registry_values_are_never_templated(fake, make_plugin, monkeypatch):
    monkeypatch.setattr('subprocess.Popen.__init__', lambda *a, **k: pytest.fail('a lookup ran: %r' % (a,)))
    fake.add_node(EVIL, pool=EVIL, tags=[EVIL, 'ok'], facts={'note': EVIL, EVIL: 1}, docker_url=EVIL,
                  state='deployed', owner=EVIL, allocation_name=EVIL + 'x', ip_address='10.0.0.9',
                  bmc={'address': EVIL, 'port': 623, 'protocol': 'ipmi'})
    plugin, inventory, parse = make_plugin({})
    parse()
    host = EVIL + 'x'
    assert list(inventory.hosts) == [host]
    hv = hostvars(inventory, host)
    templar = Templar(loader=DataLoader(), variables=hv)
    for var in ('ingot_node', 'ingot_owner', 'ingot_pool', 'ingot_docker_url', 'bmc_host'):
        assert templar.template(_trusted('{{ %s }}' % var)) == EVIL, var
    assert templar.template(_trusted('{{ ingot_tags }}')) == [EVIL, 'ok']
    assert templar.template(_trusted('{{ ingot_facts }}')) == {'note': EVIL, EVIL: 1}
    # the group names made of registry values are sanitised, never evaluated
    assert any(g.startswith('pool_') and 'lookup' in g for g in inventory.groups)


def _tagged_trusted(value):
    """Paths of every value in ``value`` that Ansible would template."""
    try:
        from ansible.template import is_trusted_as_template
    except ImportError:  # pragma: no cover - older ansible-core: everything not AnsibleUnsafe is templated
        from ansible.utils.unsafe_proxy import AnsibleUnsafe

        def is_trusted_as_template(v):
            return isinstance(v, str) and not isinstance(v, AnsibleUnsafe)
    found = []

    def walk(v, path):
        if isinstance(v, dict):
            for k, item in v.items():
                walk(k, path + ['key %r' % k])
                walk(item, path + [k])
        elif isinstance(v, (list, tuple)):
            for i, item in enumerate(v):
                walk(item, path + [i])
        elif isinstance(v, str) and is_trusted_as_template(v):
            found.append(path)
    walk(value, [])
    return found


def test_no_registry_value_can_be_templated(fake, make_plugin, tmp_path):
    rack(fake)
    fake.node('r3-n01')['facts'] = {'note': EVIL}
    plugin, inventory, parse = make_plugin({})
    parse()
    for name, host in inventory.hosts.items():
        assert _tagged_trusted(host.get_vars()) == [], name


def test_values_from_a_cache_lose_any_trust(fake, make_plugin, monkeypatch):
    try:
        from ansible.template import trust_as_template
    except ImportError:  # pragma: no cover - older ansible-core: wrap_var does it
        pytest.skip('ansible-core < 2.19')
    import ansible.plugins.inventory as inventory_plugins
    fake.add_node('n1', facts={'note': 'plain'})
    store = {}
    monkeypatch.setattr(inventory_plugins, 'get_cache_plugin', lambda *a, **k: store)
    config = {'cache': True, 'cache_plugin': 'community.general.yaml'}   # a cache that could hand back tags
    plugin, inventory, parse = make_plugin(config)
    parse(cache=False)
    key = plugin.cache_key()
    # a cache plugin that hands back strings tagged trusted (as a YAML or legacy-JSON decoder can)
    store[key] = [dict(node, facts={'note': trust_as_template(EVIL)}, name=trust_as_template('n1'))
                  for node in store[key]]
    assert _tagged_trusted(store[key]) != []
    requests = len(fake.requests)
    plugin, inventory, parse = make_plugin(config)
    parse(cache=True)
    assert len(fake.requests) == requests                    # it came from the cache
    hv = inventory.get_host('n1').get_vars()
    assert hv['ingot_facts'] == {'note': EVIL} and _tagged_trusted(hv) == []


# ---------------------------------------------------------------- constructed
def test_compose_groups_and_keyed_groups(fake, make_plugin):
    rack(fake)
    plugin, inventory, parse = make_plugin({
        'compose': {'docker_host': 'ingot_docker_url', 'cpus': 'ingot_facts.cpus'},
        'groups': {'big': 'ingot_facts.memory_mib >= 65536', 'composed': 'docker_host is defined'},
        'keyed_groups': [{'key': 'ingot_tags', 'prefix': 'tag'},
                         {'key': 'ingot_owner', 'prefix': 'owner', 'default_value': 'none'}],
    })
    parse()
    assert hostvars(inventory, 'web1')['docker_host'] == 'tcp://10.0.4.31:2376'
    assert hostvars(inventory, 'web1')['cpus'] == 32
    assert members(inventory, 'big') == ['web1']
    assert members(inventory, 'composed') == ['web1']
    assert members(inventory, 'tag_ssd') == ['r3-n01']
    assert members(inventory, 'owner_ci') == ['builder1', 'web1']
    assert 'r3-n01' in members(inventory, 'owner_none')


def test_strict_makes_a_bad_expression_fatal(fake, make_plugin):
    rack(fake)
    plugin, inventory, parse = make_plugin({'compose': {'x': 'ingot_facts.no_such_fact.deeper'}, 'strict': True})
    with pytest.raises(AnsibleError) as e:
        parse()
    assert 'Could not set x for host' in str(e.value)
    plugin, inventory, parse = make_plugin({'compose': {'x': 'ingot_facts.no_such_fact.deeper'}, 'strict': False})
    parse()
    assert 'x' not in hostvars(inventory, 'web1') and len(inventory.hosts) == 5


# ---------------------------------------------------------------- cache
def test_cache_per_url_and_filters(fake, make_plugin, tmp_path):
    rack(fake)
    cache = {'cache': True, 'cache_plugin': 'jsonfile', 'cache_connection': str(tmp_path / 'cache'),
             'cache_timeout': 600}
    plugin, inventory, parse = make_plugin(cache)
    parse(cache=True)
    plugin.update_cache_if_changed()
    fetched = len(fake.requests)
    assert fetched == 1
    # a new run: served from the cache, same inventory
    plugin2, inventory2, parse2 = make_plugin(cache)
    parse2(cache=True)
    assert len(fake.requests) == fetched
    assert sorted(inventory2.hosts) == sorted(inventory.hosts)
    assert hostvars(inventory2, 'web1')['ansible_host'] == '10.0.4.31'
    assert members(inventory2, 'state_ready') == ['r3-n01', 'r4-n02']
    # other filters: another cache entry
    plugin3, inventory3, parse3 = make_plugin(dict(cache, states=['deployed']))
    parse3(cache=True)
    assert len(fake.requests) == fetched + 1 and sorted(inventory3.hosts) == ['web1']
    assert plugin3.cache_key() != plugin2.cache_key()
    # --flush-cache (cache=False): fetched again and the entry refreshed
    fake.add_node('late-one')
    plugin4, inventory4, parse4 = make_plugin(cache)
    parse4(cache=False)
    plugin4.update_cache_if_changed()
    assert 'late-one' in inventory4.hosts
    plugin5, inventory5, parse5 = make_plugin(cache)
    parse5(cache=True)
    assert 'late-one' in inventory5.hosts


def test_the_cache_key_never_holds_the_token(fake, make_plugin):
    plugin, inventory, parse = make_plugin({'provisioner_token': TOKEN})
    parse()
    other, dummy, parse_other = make_plugin({'provisioner_token': 'another-token-x', 'on_error': 'warn'})
    with pytest.raises(AnsibleParserError) as e:
        parse_other()
    assert 'another-token-x' not in str(e.value)
    assert plugin.cache_key() == other.cache_key()
    assert TOKEN not in plugin.cache_key()


# ---------------------------------------------------------------- live power
def test_live_power_from_the_bmcs(fake, make_plugin, lab, monkeypatch):
    fake.add_node('n1', bmc={'address': '10.0.3.101', 'port': 623, 'protocol': 'ipmi'})
    fake.add_node('n2', bmc={'address': '10.0.3.102', 'port': 623, 'protocol': 'ipmi'})
    fake.add_node('n3', bmc={'address': '10.0.3.103', 'port': 623, 'protocol': 'ipmi'})
    fake.add_node('n4', bmc=None)
    lab.add('10.0.3.101', power='on', password='pw-of-bmc')
    lab.add('10.0.3.102', power='off', password='pw-of-bmc')
    plugin, inventory, parse = make_plugin({'bmc_power': True, 'bmc_user': 'admin', 'bmc_password': 'pw-of-bmc',
                                            'bmc_timeout': 1})
    warnings = []
    monkeypatch.setattr(plugin.display, 'warning', lambda msg, *a, **k: warnings.append(msg))
    parse()
    assert hostvars(inventory, 'n1')['ingot_power'] == 'on'
    assert hostvars(inventory, 'n2')['ingot_power'] == 'off'
    assert hostvars(inventory, 'n3')['ingot_power'] is None and hostvars(inventory, 'n4')['ingot_power'] is None
    assert members(inventory, 'power_on') == ['n1'] and members(inventory, 'power_off') == ['n2']
    assert len(warnings) == 1 and warnings[0].startswith('ingot.metal.provisioner inventory: 1 of 3 BMCs did not')
    assert 'pw-of-bmc' not in warnings[0]


def test_live_power_is_bounded_by_the_deadline(fake, make_plugin, lab, monkeypatch):
    fake.add_node('n1', bmc={'address': '10.0.3.101', 'port': 623, 'protocol': 'ipmi'})
    lab.add('10.0.3.101', power='on').hang = True
    plugin, inventory, parse = make_plugin({'bmc_power': True, 'bmc_user': 'admin', 'bmc_password': 'secret',
                                            'bmc_timeout': 30, 'bmc_deadline': 0.5})
    warnings = []
    monkeypatch.setattr(plugin.display, 'warning', lambda msg, *a, **k: warnings.append(msg))
    parse()
    assert hostvars(inventory, 'n1')['ingot_power'] is None
    assert 'did not finish within bmc_deadline=0.5s' in warnings[0]


# ---------------------------------------------------------------- errors
def test_an_unreachable_service_is_a_clear_parser_error(fake, make_plugin):
    fake.faults = ['refused'] * 10
    plugin, inventory, parse = make_plugin({'provisioner_retries': 1, 'on_error': 'warn'})
    with pytest.raises(AnsibleParserError) as e:
        parse()
    assert str(e.value).startswith('ingot.metal.provisioner inventory: the provisioner at '
                                   'http://provisioner.test:8080 refused the connection while listing nodes')


@pytest.mark.parametrize('fault', ['refused', 500])
def test_a_service_that_cannot_list_ends_the_run(fake, make_plugin, fault):
    fake.faults = [fault] * 10
    plugin, inventory, parse = make_plugin({'provisioner_retries': 1})
    with pytest.raises(SystemExit) as e:   # never an empty inventory that Ansible only warns about
        parse()
    assert str(e.value.code).startswith('ingot.metal.provisioner inventory: the provisioner at '
                                        'http://provisioner.test:8080 ')
    assert 'listing nodes' in str(e.value.code) and not inventory.hosts


def test_no_url_is_a_clear_parser_error(fake, make_plugin, monkeypatch):
    monkeypatch.delenv('INGOT_PROVISIONER_URL')
    plugin, inventory, parse = make_plugin({})
    with pytest.raises(AnsibleParserError) as e:
        parse()
    assert 'INGOT_PROVISIONER_URL' in str(e.value)


# ---------------------------------------------------------------- constructed, evaluated once per distinct input
@pytest.mark.parametrize('expression, reads', [
    ('ingot_tags', (('ingot_tags',),)),
    ('ingot_facts.memory_mib >= 65536', (('ingot_facts', ('attr', 'memory_mib')),)),
    ("ingot_facts['cpus'] * 2", (('ingot_facts', ('item', 'cpus')),)),
    ('ingot_facts.items() | list', (('ingot_facts', ('attr', 'items')),)),
    ('ingot_facts[ingot_pool]', (('ingot_facts',), ('ingot_pool',))),
    ("'x' ~ ingot_owner | default('none')", (('ingot_owner',),)),
    ("'debian'", ()),
    ("lookup('pipe', 'id')", None),
    ('ingot_tags | random', None),
    ('ingot_tags | shuffle', None),
    ('ingot_tags.append(1)', None),
    ("hostvars[inventory_hostname].x", None),
    ('vars.ingot_pool', None),
    ('{{ ingot_pool }}', None),
    ('ingot_pool ==', None),
])
def test_expression_reads(expression, reads):
    from ansible_collections.ingot.metal.plugins.plugin_utils._constructed import expression_reads
    assert expression_reads(expression) == reads


CONSTRUCTED = {
    'compose': {'docker_host': 'ingot_docker_url | default("none")', 'user': "'debian'",
                'mem_gib': 'ingot_facts.memory_mib // 1024', 'size': "ingot_facts['cpus'] * 2",
                'keys': 'ingot_facts.keys() | list | sort', 'first_tag': 'ingot_tags | first | default("")'},
    'groups': {'big': 'ingot_facts.memory_mib >= 65536', 'ssd': "'ssd' in ingot_tags",
               'odd': 'ingot_facts.serial is defined and ingot_facts.serial % 2 == 1',
               'bad': 'ingot_facts.nothing.deeper'},
    'keyed_groups': [{'key': 'ingot_tags', 'prefix': 'tag'},
                     {'key': 'ingot_owner', 'prefix': 'owner', 'default_value': 'none'},
                     {'key': 'mem_gib | string', 'prefix': 'mem'}, {'key': 'ingot_facts.model', 'prefix': 'model'}],
}


def _many(fake, count=120):
    for i in range(count):
        facts = {'cpus': 4 * (1 + i % 4), 'memory_mib': 32768 * (1 + i % 3), 'model': 'LS-%d' % (i % 2)}
        if i % 5 == 0:
            facts['serial'] = i
        fake.add_node('n%03d' % i, pool='rack%d' % (i % 3), tags=[['ssd'], [], ['ssd', 'gpu']][i % 3],
                      state='deployed' if i % 4 == 0 else 'ready', owner='ci' if i % 4 == 0 else None,
                      allocation_name='h%03d' % i if i % 4 == 0 else None,
                      docker_url='tcp://10.0.0.%d:2376' % i if i % 4 == 0 else None, facts=facts)


def _snapshot(inventory):
    groups = dict((g, sorted(h.name for h in inventory.groups[g].get_hosts())) for g in inventory.groups)
    hostvars = dict((h, dict((k, v) for k, v in inventory.get_host(h).get_vars().items())) for h in inventory.hosts)
    return groups, hostvars


def test_memoized_constructed_is_the_same_as_ansibles(fake, make_plugin, monkeypatch):
    from ansible_collections.ingot.metal.plugins.inventory import provisioner as plugin_module
    from ansible_collections.ingot.metal.plugins.plugin_utils import _constructed
    _many(fake)
    plugin, inventory, parse = make_plugin(CONSTRUCTED)
    parse()
    fast = _snapshot(inventory)
    monkeypatch.setattr(_constructed, 'expression_reads', lambda expression: None)
    monkeypatch.setattr(plugin_module.InventoryModule, '_compiled_once', lambda self: _nothing())
    plugin, inventory, parse = make_plugin(CONSTRUCTED)
    parse()
    assert _snapshot(inventory) == fast
    groups = fast[0]
    assert groups['big'] and groups['ssd'] and groups['odd'] and 'bad' not in groups
    assert groups['owner_ci'] and groups['owner_none'] and groups['model_LS_1']


def _nothing():
    import contextlib
    return contextlib.nullcontext()


def test_each_expression_is_evaluated_once_per_distinct_input(fake, make_plugin, monkeypatch):
    from ansible.template import Templar as RealTemplar
    _many(fake, 200)
    counts = {}
    real_eval = RealTemplar.evaluate_expression
    real_cond = RealTemplar.evaluate_conditional

    def count(kind, real):
        def wrapper(self, expr, *a, **k):
            counts[(kind, str(expr))] = counts.get((kind, str(expr)), 0) + 1
            return real(self, expr, *a, **k)
        return wrapper

    monkeypatch.setattr(RealTemplar, 'evaluate_expression', count('expr', real_eval))
    monkeypatch.setattr(RealTemplar, 'evaluate_conditional', count('cond', real_cond))
    plugin, inventory, parse = make_plugin({'groups': {'big': 'ingot_facts.memory_mib >= 65536'},
                                            'keyed_groups': [{'key': 'ingot_tags', 'prefix': 'tag'}],
                                            'compose': {'docker_host': 'ingot_docker_url | default("none")'}})
    parse()
    assert len(inventory.hosts) == 200
    assert counts[('cond', 'ingot_facts.memory_mib >= 65536')] == 3      # three memory sizes
    assert counts[('expr', 'ingot_tags')] == 3                          # three tag sets
    assert counts[('expr', 'ingot_docker_url | default("none")')] == 51  # 50 URLs and "none"
    assert members(inventory, 'tag_gpu') and len(members(inventory, 'big')) == 133


def test_fqcn_random_filter_is_not_memoized():
    from ansible_collections.ingot.metal.plugins.plugin_utils._constructed import expression_reads
    assert expression_reads('ingot_tags | ansible.builtin.random') is None
    assert expression_reads('ingot_facts | community.general.random_mac') is None


def test_undefined_and_none_are_told_apart():
    from ansible_collections.ingot.metal.plugins.plugin_utils._constructed import _read
    assert _read({}, ('x',)) == [] and _read({'x': None}, ('x',)) == [0, None]
    assert _read({'x': {'items': 1}}, ('x', ('attr', 'items'))) == [0, {'items': 1}]
    assert _read({'x': {'items': 1}}, ('x', ('item', 'items'))) == [1, 1]
    assert _read({'x': [5, 6]}, ('x', ('item', -1))) == [1, 6]


def test_the_redfish_system_id_of_the_bmc_record_becomes_bmc_system_id(fake, make_plugin):
    """The BMC modules pick the system of a multi-system Redfish BMC from the inventory."""
    fake.add_node('blade1', state='ready', pool='rack5',
                  bmc={'address': '10.0.5.100', 'port': 443, 'protocol': 'redfish', 'system_id': 'Blade.1'})
    fake.add_node('blade9', state='ready', pool='rack5', bmc={'address': '10.0.5.109', 'protocol': 'ipmi'})
    plugin, inventory, parse = make_plugin({})
    parse()
    assert hostvars(inventory, 'blade1')['bmc_system_id'] == 'Blade.1'
    assert 'bmc_system_id' not in hostvars(inventory, 'blade9')
