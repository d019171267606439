# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one secret-masking helper of the plugins (plugins/module_utils/_secrets.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ingot.metal.plugins.module_utils._secrets import mask_secrets


def test_a_fleet_of_many_passwords_is_scrubbed_in_one_pass():
    secrets = ['pw-%04d-secret' % i for i in range(300)] + [None, 'ab']
    result = mask_secrets({'msg': 'BMC n7: pw-0007-secret and pw-0299-secret ab', 'list': ['pw-0100-secret']},
                          secrets)
    assert result == {'msg': 'BMC n7: ******** and ******** ab', 'list': ['********']}


def test_a_secret_that_holds_another_is_masked_whole():
    assert mask_secrets('token s3cret-s3cret-long', ['s3cret', 's3cret-s3cret-long']) == 'token ********'


def test_short_empty_and_no_secrets_leave_the_value_as_it_is():
    value = {'msg': 'pw ab', 'n': 3, 'ok': True}
    assert mask_secrets(value, ['ab', '', None]) is value
    assert mask_secrets('abc-secret', []) == 'abc-secret'


def test_values_other_than_text_are_kept():
    assert mask_secrets({'port': 623, 'x': None, 'msg': 'login as root:hunter2 failed'}, ['hunter2']) \
        == {'port': 623, 'x': None, 'msg': 'login as root:******** failed'}
