"""The node OS image of the lab rack (the e2e tests, the deploy benchmark, the demo): built by roles/os_image
through ansible-runner, cached under INGOT_E2E_IMAGE_DIR (default /var/cache/ingot-e2e/os-image), so that a
second run builds nothing.  ``python -m ingot_lab.node_image [--docker]`` (from lab/) builds it by hand."""

import json
import os
import sys

from ingot_lab.runner import run_playbook

CACHE = os.environ.get('INGOT_E2E_IMAGE_DIR', '/var/cache/ingot-e2e/os-image')
MIRROR = os.environ.get('INGOT_OS_IMAGE_MIRROR', 'http://deb.debian.org/debian')
NAME = 'e2e-bookworm'
DOCKER_NAME = 'lab-bookworm-docker'   # the same image with the Docker engine (os_image_docker), for machines
LOCAL = {'all': {'hosts': {'localhost': {'ansible_connection': 'local'}}}}


def build(progress=True, register=None, docker=False):
    """Run the role (cached); returns its os_image_result fact (name, path, sha256, format, size...).
    register: {'url': provisioner URL, 'token': admin token} registers the image there (by file name:
    the file must be in the provisioner's image store)."""
    images = os.path.join(CACHE, 'images')
    extra = {}
    if register:
        extra = {'os_image_register': True, 'os_image_provisioner_url': register['url'],
                 'os_image_provisioner_token': register['token']}
    play = [{'name': 'os_image for the e2e tests', 'hosts': 'localhost', 'gather_facts': False,
             'roles': [{'role': 'ingot.metal.os_image',
                        'vars': {'os_image_name': DOCKER_NAME if docker else NAME, 'os_image_dir': images,
                                 'os_image_format': 'tar', 'os_image_docker': docker,
                                 'os_image_cache_dir': os.path.join(CACHE, 'cache'),
                                 'os_image_mirror': MIRROR, **extra}}],
             'post_tasks': [{'name': 'e2e image result', 'ansible.builtin.debug': {'var': 'os_image_result'}}]}]
    workdir = os.path.join(CACHE, ('run-register' if register else 'run') + ('-docker' if docker else ''))
    r = run_playbook(play, LOCAL, timeout=2400, progress=progress, workdir=workdir)
    if r.status != 'successful' or r.rc != 0:
        raise RuntimeError('roles/os_image failed:\n%s' % r.stdout[-6000:])
    for t in r.results:
        if t.task == 'e2e image result':
            return dict(t.result['os_image_result'], seconds=r.seconds)
    raise RuntimeError('no os_image_result')


if __name__ == '__main__':
    print(json.dumps(build(docker='--docker' in sys.argv), indent=1))
