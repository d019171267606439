"""Fixtures of the browser tests: the real provisioner under uvicorn (tests/provisioner's helpers) and headless
Chromium (tests/browser/ingot_chromium.py, shared with tests/e2e)."""

import pytest

from ingot_provtest import Server
from ingot_viewtest import VIEW_TOKEN, add_image
from ingot_chromium import browser_factory  # noqa: F401  pylint: disable=unused-import


@pytest.fixture
def srv(tmp_path):
    server = Server(tmp_path, deploy_timeout=120, view_token=VIEW_TOKEN)
    server.start()
    add_image(server)
    yield server
    server.stop()
