# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.ingot.metal.tests.unit.plugins.modules.utils import capture_module_results


@pytest.fixture
def module_results(monkeypatch):
    """Module results raise AnsibleExitJson / AnsibleFailJson (see utils.py) instead of being printed."""
    capture_module_results(monkeypatch)
