"""Fixtures of the browser tests: the real provisioner under uvicorn (tests/provisioner's helpers) and headless
Chromium (tests/ingot_testlib/chromium.py, shared with tests/e2e)."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (os.path.join(os.path.dirname(HERE), "provisioner"), os.path.dirname(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from ingot_provtest import Server  # noqa: E402  pylint: disable=wrong-import-position
from ingot_viewtest import VIEW_TOKEN, add_image  # noqa: E402  pylint: disable=wrong-import-position
from ingot_testlib.chromium import browser_factory  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import


@pytest.fixture
def srv(tmp_path):
    server = Server(tmp_path, deploy_timeout=120, view_token=VIEW_TOKEN)
    server.start()
    add_image(server)
    yield server
    server.stop()
