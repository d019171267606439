# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.ingot.metal.plugins.plugin_utils.bmc_action import BmcActionModule


class ActionModule(BmcActionModule):
    OPERATION = 'power'
    MODULE = 'ingot.metal.bmc_power'
