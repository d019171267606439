"""The provisioner's web view on the lab rack, in headless Chromium, while the collection works: log in with the
rack's read-only view token, open the rack page and the page of a node, run ``ingot.metal.create`` for one
machine through ansible-runner (in a thread) and ``ingot.metal.rm`` after it, and see on the live pages, without
a reload: the node go ready -> allocated -> deploying -> deployed with the progress bar moving forward during
the image write and the IP shown, then releasing -> ready with its owner cleared; at the end the pages show what
the registry's API holds.

One machine on the rack's last node, in the lab pool, chosen by a tag only it carries (the other nodes are left
alone); runs after test_lifecycle.py (conftest orders the files), which leaves that node ready; run alone, it
registers the node itself. The machine is removed and the tag taken off at the end, even after a failure."""

import threading
import time
import urllib.error
import urllib.request

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from ingot_chromium import console_errors, login, wait_live, wait_text
from ingot_lab import deploy, node_image, rack
from ingot_lab.deploy import Verbs

OWNER = 'e2e-view'
MACHINE = 'e2e-view1'
TAG = 'e2e-view'
POOL = 'lab'   # inventories/lab's machine_pool

# Records, in the page itself, every value the watched elements take (a MutationObserver on the whole page:
# each server-sent event handled is one sample). A reload would wipe window.ingotSeen out.
RECORDER = """
var sel = arguments[0];
var seen = window.ingotSeen = {state: [], owner: [], progress: []};
function text(css) { var el = document.querySelector(css); return el ? el.textContent : null; }
function push(list, value) {
  if (!list.length || JSON.stringify(list[list.length - 1]) !== JSON.stringify(value)) { list.push(value); }
}
function sample() {
  var state = text(sel.state);
  push(seen.state, state);
  push(seen.owner, text(sel.owner));
  var bar = sel.progress ? document.getElementById('progress') : null;
  if (bar) { push(seen.progress, [state, bar.value, bar.max]); }
}
sample();
new MutationObserver(sample).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                      attributes: true});
"""


def _record(lab_rack, name):
    macs = {m.lower() for m in lab_rack.macs(name)}
    return [n for n in lab_rack.api('/api/v1/nodes')['items'] if set(n['macs']) & macs]


@pytest.fixture(scope='module')
def view_node(lab_rack):
    """The registry node of the rack's last lab node, ready in the lab pool and tagged TAG (only it)."""
    name = sorted(lab_rack.config)[-1]
    found = _record(lab_rack, name)
    if not (len(found) == 1 and found[0]['name'] == name and found[0]['state'] == 'ready'
            and not found[0]['owner']):
        # registered under another name by the discovery test, or not at all: registered afresh, powered off
        for node in found:
            lab_rack.api('/api/v1/nodes/%s?force=true' % node['id'], 'DELETE')
        deploy.power_off(lab_rack, [name])
        entry = lab_rack.config[name]
        lab_rack.api('/api/v1/nodes', 'POST', {
            'name': name, 'macs': lab_rack.macs(name), 'state': 'ready', 'pool': POOL,
            'bmc': {'address': entry.get('address', '127.0.0.1'), 'port': entry['port'], 'protocol': 'ipmi'}})
    node = lab_rack.api('/api/v1/nodes/%s' % name)
    node = lab_rack.api('/api/v1/nodes/%s' % node['id'], 'PATCH', {'pool': POOL, 'tags': node['tags'] + [TAG]})
    yield node
    left = lab_rack.api('/api/v1/nodes/%s' % node['id'])
    lab_rack.api('/api/v1/nodes/%s' % node['id'], 'PATCH', {'tags': [t for t in left['tags'] if t != TAG]})


@pytest.fixture(scope='module')
def verbs(lab_rack, view_node, tmp_path_factory):
    image = deploy.install_image(lab_rack, node_image.build(docker=True))
    assert image['name'] == node_image.DOCKER_NAME
    helper = Verbs(lab_rack, str(tmp_path_factory.mktemp('view')), OWNER)
    yield helper
    if helper.node(MACHINE) is not None:   # a failed test gives its machine back: the pool is shared
        helper.run('rm', MACHINE, expect_ok=False, machine_missing_ok=True)


def _seen(driver):
    return driver.execute_script('return window.ingotSeen;')


def _shows_api(driver, fields, record, what):
    """Each element (css -> the registry field it shows) shows the API's value (empty for none)."""
    for css, field in fields.items():
        wait_text(driver, css, record[field] or '', '%s: %s' % (what, field))


def test_view_on_rack_watches_create_and_rm(lab_rack, view_node, verbs, browser_factory):
    node_id = view_node['id']
    # the view token opens the view only: the API refuses it
    req = urllib.request.Request(rack.provisioner_url() + '/api/v1/nodes',
                                 headers={'Authorization': 'Bearer %s' % lab_rack.view_token()})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10).close()
    assert refused.value.code in (401, 403), refused.value.code
    view = rack.provisioner_url() + '/ui'
    driver = browser_factory()
    login(driver, view, lab_rack.view_token())   # the read-only token: the view opens, the API does not
    row = '#node-%s' % node_id
    wait_text(driver, row + ' .c-state .state', 'ready', 'rack page')
    wait_live(driver)
    driver.execute_script(RECORDER, {'state': row + ' .c-state .state', 'owner': row + ' .c-owner'})
    rack_tab = driver.current_window_handle
    driver.switch_to.new_window('tab')
    driver.get('%s/nodes/%s' % (view, node_id))
    wait_text(driver, '#n-state .state', 'ready', 'node page')
    wait_live(driver)
    driver.execute_script(RECORDER, {'state': '#n-state .state', 'owner': '#n-owner', 'progress': True})
    node_tab = driver.current_window_handle

    stop = threading.Event()
    out = {}

    def create():
        try:
            out['result'] = verbs.run('create', MACHINE, expect_ok=False, machine_tags=[TAG], cancel_when=stop.is_set)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            out['error'] = exc

    started = time.monotonic()
    thread = threading.Thread(target=create, name='ingot.metal.create', daemon=True)
    thread.start()
    try:
        # live while the playbook still runs: the node page shows the deploy before create returns
        WebDriverWait(driver, 600, poll_frequency=0.5).until(
            lambda d: not thread.is_alive() or 'deploying' in _seen(d)['state'])
        assert thread.is_alive(), 'create ended before the node page showed the deploy: %s; the page saw %s' % (
            out, _seen(driver))
        thread.join(timeout=1200)
    finally:
        stop.set()
        thread.join(timeout=60)
    created = time.monotonic() - started
    assert 'error' not in out, out.get('error')
    result = out['result']
    assert result.status == 'successful' and result.rc == 0, result.stdout[-6000:]
    record = lab_rack.api('/api/v1/nodes/%s' % node_id)
    assert record['state'] == 'deployed' and record['allocation_name'] == MACHINE and record['ip_address'], record

    fields = {'#n-state .state': 'state', '#n-owner': 'owner', '#n-alloc': 'allocation_name', '#n-ip': 'ip_address',
              '#n-docker': 'docker_url'}
    _shows_api(driver, fields, record, 'the node page after create')
    seen = _seen(driver)
    assert seen['state'] == ['ready', 'allocated', 'deploying', 'deployed'], seen['state']
    assert seen['owner'] == ['', OWNER], seen['owner']
    size = lab_rack.api('/api/v1/images/%s' % node_image.DOCKER_NAME)['size']
    bars = [(value, maximum) for state, value, maximum in seen['progress'] if state in ('deploying', 'deployed')]
    values = [value for value, _max in bars]
    assert bars and all(maximum == size for _value, maximum in bars), (size, seen['progress'])
    assert values == sorted(values) and values[-1] == size, 'the progress bar went back: %s' % seen['progress']
    during = [value for state, value, _max in seen['progress'] if state == 'deploying' and 0 < value < size]
    assert during, 'the progress bar never showed the image write under way (%d bytes): %s' % (size, seen['progress'])
    driver.switch_to.window(rack_tab)
    _shows_api(driver, {row + ' .c-state .state': 'state', row + ' .c-owner': 'owner',
                        row + ' .c-alloc': 'allocation_name', row + ' .c-ip': 'ip_address'},
               record, 'the rack page after create')
    print('create %s: %.1f s; the node page saw the progress bar at %s of %d bytes'
          % (MACHINE, created, during, size))

    verbs.run('rm', MACHINE)
    record = lab_rack.api('/api/v1/nodes/%s' % node_id)
    assert record['state'] == 'ready' and not record['owner'] and not record['allocation_name'], record
    _shows_api(driver, {row + ' .c-state .state': 'state', row + ' .c-owner': 'owner',
                        row + ' .c-alloc': 'allocation_name', row + ' .c-ip': 'ip_address'},
               record, 'the rack page after rm')
    seen = _seen(driver)
    assert seen['state'] == ['ready', 'allocated', 'deploying', 'deployed', 'releasing', 'ready'], seen['state']
    assert seen['owner'] == ['', OWNER, ''], seen['owner']
    # the counts at the top agree with the registry
    states = [n['state'] for n in lab_rack.api('/api/v1/nodes')['items']]
    for state in sorted(set(states)):
        wait_text(driver, '#count-%s' % state, str(states.count(state)), 'the rack page count of %s' % state)
    wait_text(driver, '#count-all', str(len(states)), 'the rack page count of all nodes')

    driver.switch_to.window(node_tab)
    _shows_api(driver, fields, record, 'the node page after rm')
    seen = _seen(driver)
    assert seen['state'][-3:] == ['deployed', 'releasing', 'ready'], seen['state']
    assert seen['owner'] == ['', OWNER, ''], seen['owner']
    for tab in (rack_tab, node_tab):
        driver.switch_to.window(tab)
        assert _seen(driver) is not None, 'the page reloaded'
        assert not console_errors(driver), 'errors in the browser console: %s' % console_errors(driver)
