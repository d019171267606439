"""docker-machine's verbs on the lab rack, through the collection's playbooks run by ansible-runner, with the
inventories/lab inventory (the provisioner plugin and the lab's BMC inventory): discover and enroll two nodes,
``create`` two Docker machines at once, use them over TLS (env file and docker context), ``ssh``, ``ls``,
``rm`` one (its disk wiped, its old client certificate refused by the next machine made on that node),
``create`` again on the freed node, the failure paths, check mode, idempotence, and ``rm`` of all.

The machines' nodes are the lab nodes n002 and n003 (test_rack.py's discovery test registers them under other
names first: those records are removed here). Runs after test_deploy.py (conftest orders the files)."""

import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from ingot_lab import deploy, node_image
from ingot_lab.deploy import Verbs

OWNER = 'e2e'
POOL = 'lab'
DOCKER_IMAGE = 'ingot-test/debian-systemd:bookworm'   # loaded into the machines over TLS, to run a container


def tls_handshake(host, port, cert_dir=None, ca=None):
    """Whether a TLS client (with the client certificate of CERT_DIR, or none) gets an answer from dockerd:
    returns the HTTP status line, or the error."""
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = False
    if cert_dir:
        context.load_cert_chain(os.path.join(cert_dir, 'cert.pem'), os.path.join(cert_dir, 'key.pem'))
    try:
        with socket.create_connection((host, port), timeout=10) as raw:
            with context.wrap_socket(raw) as conn:
                conn.sendall(b'GET /version HTTP/1.0\r\nHost: docker\r\n\r\n')
                return conn.recv(200).decode(errors='replace').splitlines()[0]
    except (OSError, ssl.SSLError) as exc:
        return 'error: %s' % exc


def _port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def _changed(result):
    return result.count('changed')


@pytest.fixture(scope='module')
def lab_nodes(lab_rack):
    names = sorted(lab_rack.config)[1:3]
    assert len(names) == 2, 'the lifecycle tests need 3 lab nodes (INGOT_E2E_NODES): %s' % sorted(lab_rack.config)
    # earlier tests registered these nodes under other names (discovery): the verbs register them afresh
    for name in names:
        for node in lab_rack.api('/api/v1/nodes')['items']:
            if set(node['macs']) & {m.lower() for m in lab_rack.macs(name)}:
                lab_rack.api('/api/v1/nodes/%s?force=true' % node['id'], 'DELETE')
    deploy.power_off(lab_rack, names)
    return names


@pytest.fixture(scope='module')
def verbs(lab_rack, lab_nodes, tmp_path_factory):
    built = node_image.build(docker=True)
    image = deploy.install_image(lab_rack, built)
    assert image['name'] == node_image.DOCKER_NAME
    work = str(tmp_path_factory.mktemp('lifecycle'))
    return Verbs(lab_rack, work, OWNER)


def test_discover_and_enroll(verbs, lab_nodes, lab_rack):
    pattern = ':'.join(lab_nodes)
    first = verbs.run('discover', pattern)
    assert _changed(first) > 0
    for name in lab_nodes:
        node = lab_rack.api('/api/v1/nodes/%s' % name)
        assert node['state'] == 'discovered' and node['facts'].get('cpus', 0) >= 1, node
        assert sorted(node['macs']) == sorted(m.lower() for m in lab_rack.macs(name))
        assert node['bmc']['port'] == lab_rack.config[name]['port']
        assert lab_rack.power(name) == 'off'
    assert _changed(verbs.run('discover', pattern)) == 0

    verbs.run('enroll', ','.join(lab_nodes), pool=POOL, tags='e2e')
    for name in lab_nodes:
        node = lab_rack.api('/api/v1/nodes/%s' % name)
        assert node['state'] == 'ready' and node['pool'] == POOL and node['tags'] == ['e2e'], node
    assert _changed(verbs.run('enroll', ','.join(lab_nodes), pool=POOL, tags='e2e')) == 0


def test_create_two_machines_and_use_them_over_tls(verbs, lab_nodes, lab_rack):
    result = verbs.run('create', 'e2e-b1,e2e-b2')
    nodes = {m: verbs.node(m) for m in ('e2e-b1', 'e2e-b2')}
    assert sorted(n['name'] for n in nodes.values()) == sorted(lab_nodes), nodes
    for machine, node in nodes.items():
        assert node['state'] == 'deployed' and node['docker_url'] == 'tcp://%s:2376' % node['ip_address'], node
        folder = os.path.join(verbs.store, machine)
        for fname in ('ca.pem', 'cert.pem', 'key.pem', 'id_ed25519', 'known_hosts', 'env'):
            assert os.path.exists(os.path.join(folder, fname)), fname
        for fname in ('key.pem', 'id_ed25519'):
            assert os.stat(os.path.join(folder, fname)).st_mode & 0o077 == 0, fname
        # the env lines the playbook printed are the env file's
        printed = deploy.task_messages(result, 'Env lines')
        assert 'export DOCKER_HOST="tcp://%s:2376"' % node['ip_address'] in printed, printed
        with open(os.path.join(folder, 'env')) as handle:
            assert all(line in printed for line in handle.read().splitlines())

        # a container runs on the machine, over TLS: an image loaded through the API, then docker run
        save = subprocess.Popen(['docker', 'save', DOCKER_IMAGE], stdout=subprocess.PIPE)
        verbs.docker(machine, 'load', stdin=save.stdout, timeout=300)
        save.wait(timeout=60)
        ran = verbs.docker(machine, 'run', '--rm', DOCKER_IMAGE, 'cat', '/etc/debian_version')
        assert ran.stdout.decode().strip().startswith('12'), ran.stdout
        # through the docker context named after the machine
        ctx = verbs.docker(machine, '--context', machine, 'info', '--format', '{{.Name}}', env={})
        assert ctx.stdout.decode().strip() == machine, ctx.stdout

        # what dockerd accepts: the machine's client certificate only, over TLS only
        ip = node['ip_address']
        ca = os.path.join(folder, 'ca.pem')
        assert tls_handshake(ip, 2376, folder, ca).startswith('HTTP/1.'), tls_handshake(ip, 2376, folder, ca)
        assert tls_handshake(ip, 2376, None, ca).startswith('error'), 'dockerd answered a client without certificate'
        assert not _port_open(ip, 2375), 'something listens on 2375 on %s' % machine
        # the host's own files, and the pinned host key in use
        proc = deploy.ssh(ip, os.path.join(folder, 'id_ed25519'), os.path.join(folder, 'known_hosts'),
                          'hostname; stat -c %a /etc/docker/tls/server-key.pem; '
                          'systemctl is-enabled ingot-docker-prune.timer')
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [machine, '600', 'enabled'], proc.stdout

    # the other machine's certificate is refused: a CA per machine
    other = os.path.join(verbs.store, 'e2e-b2')
    b1 = nodes['e2e-b1']['ip_address']
    assert tls_handshake(b1, 2376, other, os.path.join(verbs.store, 'e2e-b1', 'ca.pem')).startswith('error')

    # idempotence: a second create changes nothing and takes no second node
    again = verbs.run('create', 'e2e-b1,e2e-b2')
    assert _changed(again) == 0, [(r.host, r.task) for r in again.results if r.status == 'changed']
    assert {m: verbs.node(m)['name'] for m in nodes} == {m: n['name'] for m, n in nodes.items()}


def test_ls_env_ssh_ip_url_config(verbs, lab_rack):
    node = verbs.node('e2e-b1')
    listing = verbs.run('ls', 'all')
    table = '\n'.join(deploy.task_messages(listing, 'Machines'))
    for machine in ('e2e-b1', 'e2e-b2'):
        assert machine in table
    assert 'tcp://%s:2376' % node['ip_address'] in table and 'deployed' in table
    assert _changed(listing) == 0

    out = verbs.run('ssh', 'e2e-b1', cmd='cat /etc/hostname')
    assert deploy.task_messages(out, 'Output') == ['e2e-b1']
    # braces (docker's Go templates) pass through inside {% raw %}; without it, a message says so and nothing runs
    out = verbs.run('ssh', 'e2e-b1', cmd='{% raw %}docker info --format "{{.Name}}"{% endraw %}')
    assert deploy.task_messages(out, 'Output') == ['e2e-b1']
    bare = verbs.run('ssh', 'e2e-b1', cmd='docker info --format "{{.Name}}"', expect_ok=False)
    assert bare.rc != 0 and 'Nothing was run' in bare.stdout and '{% raw %}' in bare.stdout, bare.stdout[-2000:]
    assert not [r for r in bare.results if r.task == 'Run cmd'], 'the command ran though cmd= could not be read'
    ssh_line = verbs.run('ssh', 'e2e-b1')
    assert 'UserKnownHostsFile=%s' % os.path.join(verbs.store, 'e2e-b1', 'known_hosts') in ssh_line.stdout
    # the user's ssh_config now includes the store's: `ssh NAME` works
    proc = subprocess.run(['ssh', '-F', verbs.env['INGOT_SSH_CONFIG'], '-o', 'BatchMode=yes',
                           'e2e-b1', 'hostname'], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == 'e2e-b1', proc.stderr

    for verb, expected in (('ip', node['ip_address']), ('url', 'tcp://%s:2376' % node['ip_address']),
                           ('config', '--tlsverify'), ('status', 'Running')):
        result = verbs.run(verb, 'e2e-b1')
        assert expected in result.stdout, (verb, result.stdout[-2000:])
        assert _changed(result) == 0, verb


def test_rm_wipes_and_create_again_on_the_freed_node(verbs, lab_rack, tmp_path):
    node = verbs.node('e2e-b1')
    old = str(tmp_path / 'old-b1')
    shutil.copytree(os.path.join(verbs.store, 'e2e-b1'), old)
    vm = lab_rack.machine(node['name'])
    assert os.path.exists(os.path.join(vm.disk, 'etc', 'hostname'))

    # check mode of rm changes nothing
    verbs.run('rm', 'e2e-b1', check=True)
    assert verbs.node('e2e-b1')['state'] == 'deployed'
    assert os.path.exists(os.path.join(verbs.store, 'e2e-b1', 'cert.pem'))

    verbs.run('rm', 'e2e-b1')
    record = lab_rack.api('/api/v1/nodes/%s' % node['name'])
    assert record['state'] == 'ready' and not record['owner'] and not record['docker_url'], record
    assert os.listdir(vm.disk) == [], 'the wiped disk still holds %s' % os.listdir(vm.disk)[:10]
    assert lab_rack.power(node['name']) == 'off'
    assert not os.path.exists(os.path.join(verbs.store, 'e2e-b1'))
    contexts = verbs.docker('e2e-b1', 'context', 'ls', '--format', '{{.Name}}', env={}).stdout.decode().split()
    assert 'e2e-b1' not in contexts

    # check mode of create changes nothing
    verbs.run('create', 'e2e-b3', check=True)
    assert verbs.node('e2e-b3') is None and not os.path.exists(os.path.join(verbs.store, 'e2e-b3'))
    assert lab_rack.api('/api/v1/nodes/%s' % node['name'])['state'] == 'ready'

    # create again: the only free node is the one just wiped
    verbs.run('create', 'e2e-b3')
    again = verbs.node('e2e-b3')
    assert again['name'] == node['name'] and again['state'] == 'deployed'
    ip = again['ip_address']
    new = os.path.join(verbs.store, 'e2e-b3')
    assert tls_handshake(ip, 2376, new, os.path.join(new, 'ca.pem')).startswith('HTTP/1.')
    # the old machine's client certificate is refused by the machine made on its node since
    refused = tls_handshake(ip, 2376, old, os.path.join(new, 'ca.pem'))
    assert refused.startswith('error'), refused
    proc = verbs.docker('e2e-b3', 'info', check=False,
                        env={'DOCKER_HOST': 'tcp://%s:2376' % ip, 'DOCKER_TLS_VERIFY': '1', 'DOCKER_CERT_PATH': old})
    assert proc.returncode != 0
    assert verbs.docker('e2e-b3', 'info', '--format', '{{.Name}}').stdout.decode().strip() == 'e2e-b3'


def test_failure_paths(verbs):
    # the pool is exhausted: both nodes are held
    full = verbs.run('create', 'e2e-b4', expect_ok=False)
    assert full.rc != 0
    assert 'No node for e2e-b4' in full.stdout and 'ingot.metal.rm' in full.stdout, full.stdout[-3000:]
    assert verbs.node('e2e-b4') is None
    assert not os.path.exists(os.path.join(verbs.store, 'e2e-b4')), 'create left a folder for a machine with no node'
    # rm of a name nobody holds
    unknown = verbs.run('rm', 'e2e-nosuch', expect_ok=False)
    assert unknown.rc != 0 and 'No machine named e2e-nosuch (owner e2e)' in unknown.stdout, unknown.stdout[-3000:]


def test_rm_all_and_no_secret_in_verbose_output(verbs, lab_rack, lab_nodes):
    result = verbs.run('rm', 'e2e-b2,e2e-b3', verbosity=3)
    for name in lab_nodes:
        record = lab_rack.api('/api/v1/nodes/%s' % name)
        assert record['state'] == 'ready' and not record['owner'], record
        assert os.listdir(lab_rack.machine(name).disk) == []
    secrets = [lab_rack.token()] + [lab_rack.config[n]['password'] for n in lab_nodes]
    leaked = [s for s in secrets if s in result.stdout]
    assert not leaked, 'secrets in -vvv output'
    assert not os.listdir(verbs.store) or os.listdir(verbs.store) == ['ssh_config']
    # a second rm of the same names: they are gone; with machine_missing_ok it changes nothing
    assert verbs.run('rm', 'e2e-b2,e2e-b3', expect_ok=False).rc != 0
    assert _changed(verbs.run('rm', 'e2e-b2,e2e-b3', machine_missing_ok=True)) == 0


def test_failures_name_the_machine_and_a_second_run_finishes(verbs, lab_rack, lab_nodes):
    """A wrong BMC password, a controller that stops waiting (a timeout), a controller killed mid-run and
    a bad image checksum: each run fails with a message that names the machine and what to do, and leaves
    nothing a second run cannot finish."""
    wrong = {name: {'user': lab_rack.config[name]['user'], 'password': 'not-the-password'} for name in lab_nodes}
    bad_password = verbs.run('create', 'e2e-f1', expect_ok=False, ingot_bmc_credentials=wrong)
    assert bad_password.rc != 0
    node = verbs.node('e2e-f1')
    assert node is not None and node['state'] == 'deploying', node   # allocated, its deploy waiting for its boot
    assert node['name'] in bad_password.stdout and 'e2e-f1' in bad_password.stdout, bad_password.stdout[-3000:]
    report = '\n'.join(deploy.task_messages(bad_password, 'Report the machines whose nodes could not be PXE-booted'))
    assert 'machine e2e-f1 (node %s)' % node['name'] in report and 'credentials' in report, report
    assert 'run create again' in report, report
    assert 'not-the-password' not in bad_password.stdout
    assert lab_rack.power(node['name']) == 'off'

    # a node that never comes back from its PXE boot (hung: its container frozen right after power-on):
    # the right credentials now, and the controller stops waiting after 5 s with a message
    container = lab_rack.machine(node['name']).container
    lab_rack.ipmitool(node['name'], 'chassis', 'bootdev', 'pxe')
    lab_rack.ipmitool(node['name'], 'power', 'on')
    subprocess.run(['docker', 'pause', container], check=True, capture_output=True, timeout=60)
    try:
        stopped = verbs.run('create', 'e2e-f1', expect_ok=False, machine_deploy_timeout=5)
    finally:
        subprocess.run(['docker', 'unpause', container], check=True, capture_output=True, timeout=60)
    assert stopped.rc != 0
    report = '\n'.join(deploy.task_messages(stopped, 'Report the machines whose deploy failed'))
    assert 'Machine e2e-f1 (node %s)' % node['name'] in report and 'create again' in report, report
    assert verbs.node('e2e-f1')['state'] == 'deploying'
    deploy.power_off(lab_rack, [node['name']])   # the operator resets the hung node

    # run again and kill the controller 10 s in (ansible-runner ends the ansible-playbook process, as a
    # Ctrl-C or a dead controller would): whatever step it was in, the next run finishes the machine
    started = time.monotonic()
    killed = verbs.run('create', 'e2e-f1', expect_ok=False, cancel_when=lambda: time.monotonic() - started > 10)
    assert killed.status == 'canceled', (killed.status, killed.stdout[-2000:])
    assert verbs.node('e2e-f1')['state'] in ('deploying', 'deployed')

    # and again, to the end: the same node, deployed, and Docker answers over TLS. The provisioner's deploy
    # deadline (150 s in the e2e rack) may pass during the failures above: then this run fails saying so and
    # that the next run retries the deploy, and the next run must finish it
    final = verbs.run('create', 'e2e-f1', expect_ok=False)
    if final.rc != 0:
        report = '\n'.join(deploy.task_messages(final, 'Report the machines whose deploy failed'))
        assert 'deploy timed out' in report and 'run create again' in report, final.stdout[-3000:]
        verbs.run('create', 'e2e-f1')
    done = verbs.node('e2e-f1')
    assert done['name'] == node['name'] and done['state'] == 'deployed', done
    assert verbs.docker('e2e-f1', 'info', '--format', '{{.Name}}').stdout.decode().strip() == 'e2e-f1'

    # an image whose checksum is not its file's: the agent refuses to write it
    good = [i for i in lab_rack.api('/api/v1/images')['items'] if i['name'] == node_image.DOCKER_NAME][0]
    lab_rack.api('/api/v1/images', 'POST', {'name': 'e2e-bad-checksum', 'url': good['url'], 'sha256': '0' * 64,
                                            'format': good['format']})
    try:
        bad_image = verbs.run('create', 'e2e-f2', expect_ok=False, machine_image='e2e-bad-checksum')
        assert bad_image.rc != 0
        failed = verbs.node('e2e-f2')
        assert failed is not None and failed['state'] == 'deploy_failed', failed
        report = '\n'.join(deploy.task_messages(bad_image, 'Report the machines whose deploy failed'))
        assert 'Machine e2e-f2 (node %s)' % failed['name'] in report and 'sha256' in report.lower(), report
        # a failed machine is given back like any other
        verbs.run('rm', 'e2e-f1,e2e-f2')
    finally:
        lab_rack.api('/api/v1/images/e2e-bad-checksum', 'DELETE')
    for name in lab_nodes:
        record = lab_rack.api('/api/v1/nodes/%s' % name)
        assert record['state'] == 'ready' and not record['owner'], record
