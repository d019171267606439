# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Masking of secrets in messages and results. Private to the collection: it may change at any time.

One function for every plugin: the BMC client (passwords in pyghmi's messages), the provisioner client (the
admin token in the service's answers) and the BMC action plugin (every password of a fleet in a whole result).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

MASK = '********'


def mask_secrets(value, secrets):
    """``value`` with every secret (of more than two characters) in its strings replaced by ``********``.

    ``value`` is a string, or dicts and lists of them (other values are returned as they are); ``secrets``
    is an iterable whose ``None`` entries are ignored. A secret of one or two characters would mask half of
    every message and protects nothing, so it is left alone. The longest secret is replaced first, so one
    that contains another is masked whole.
    """
    words = sorted(set(str(s) for s in secrets if s is not None and len(str(s)) > 2), key=len, reverse=True)
    if not words:
        return value
    # One pattern for all (a fleet has a password per BMC).
    return _masked(value, re.compile('|'.join(re.escape(w) for w in words)))


def _masked(value, pattern):
    if isinstance(value, dict):
        return dict((k, _masked(v, pattern)) for k, v in value.items())
    if isinstance(value, list):
        return [_masked(v, pattern) for v in value]
    if isinstance(value, str):
        return pattern.sub(MASK, value)
    return value
