# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ingot.metal.image and ingot.metal.image_info: the image catalog."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.ingot.metal.plugins.modules import image, image_info
from ansible_collections.ingot.metal.tests.unit.plugins.module_utils.provisioner_fake import install, run_module

SHA = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
DEB = dict(name='debian-12', url='http://10.0.0.1:8080/images/debian-12.tar.gz', sha256=SHA, format='tar.gz',
           size=524288000)


@pytest.fixture
def fake(monkeypatch):
    return install(monkeypatch)


@pytest.fixture
def run(monkeypatch):
    def go(args, module=image, **kwargs):
        return run_module(module.main, args, monkeypatch=monkeypatch, **kwargs)
    return go


def test_add_then_nothing_changes(fake, run):
    res = run(DEB, diff=True)
    assert res['changed'] and not res['replaced']
    assert fake.images['debian-12'] == DEB
    assert res['diff'] == {'before': {}, 'after': DEB}
    writes = len(fake.writes())
    assert not run(DEB)['changed'] and len(fake.writes()) == writes


def test_check_mode_adds_nothing(fake, run):
    res = run(DEB, check=True, diff=True)
    assert res['changed'] and res['image'] == DEB and fake.images == {}


def test_a_different_entry_is_replaced_with_a_diff(fake, run):
    fake.add_image(**DEB)
    new_sha = 'b' * 64
    res = run(dict(DEB, sha256=new_sha.upper()), diff=True)
    assert res['changed'] and res['replaced']
    assert fake.images['debian-12']['sha256'] == new_sha
    assert res['diff'] == {'before': {'name': 'debian-12', 'sha256': SHA},
                           'after': {'name': 'debian-12', 'sha256': new_sha}}
    assert [m for m, p in fake.writes()] == ['PUT']   # one atomic update, never delete + add


def test_size_is_compared_only_when_given(fake, run):
    fake.add_image(**DEB)
    args = dict(DEB)
    del args['size']
    assert not run(args)['changed']


def test_bad_sha256_is_refused_before_asking(fake, run):
    res = run(dict(DEB, sha256='abc'))
    assert res['failed'] and res['error_kind'] == 'invalid'
    assert "sha256 of image debian-12 is not 64 hex digits: 'abc'" in res['msg']
    assert fake.requests == [] or all(m == 'GET' for m, p, q, b in fake.requests)


def test_present_needs_url_and_sha256(fake, run):
    res = run(dict(name='debian-12'))
    assert res['failed'] and 'url' in res['msg'] and 'sha256' in res['msg']


def test_absent(fake, run):
    fake.add_image(**DEB)
    res = run(dict(name='debian-12', state='absent'), diff=True)
    assert res['changed'] and 'debian-12' not in fake.images
    assert res['diff']['before']['sha256'] == SHA and res['diff']['after'] == {}
    assert not run(dict(name='debian-12', state='absent'))['changed']


def test_absent_in_check_mode(fake, run):
    fake.add_image(**DEB)
    assert run(dict(name='debian-12', state='absent'), check=True)['changed']
    assert 'debian-12' in fake.images


def test_info_lists_sorted_and_reads_one(fake, run):
    fake.add_image('ubuntu-24')
    fake.add_image(**DEB)
    res = run({}, module=image_info)
    assert not res['changed'] and [i['name'] for i in res['images']] == ['debian-12', 'ubuntu-24']
    assert run({'name': 'debian-12'}, module=image_info)['images'] == [DEB]
    assert run({'name': 'nope'}, module=image_info)['images'] == []
    assert fake.writes() == []
