"""Fixtures of the browser tests: the real provisioner under uvicorn (tests/provisioner's helpers) and headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, bindep.txt) driven by Selenium; nothing is downloaded."""

import os

import pytest

from ingot_provtest import Server
from ingot_viewtest import VIEW_TOKEN, add_image

CHROMIUM = os.environ.get("INGOT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("INGOT_CHROMEDRIVER", "/usr/bin/chromedriver")


def _missing():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    try:
        import selenium  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        missing.append("selenium (pip install -r tests/requirements-dev.txt)")
    return missing


@pytest.fixture(scope="session")
def browser_factory(tmp_path_factory):
    """Start headless Chromium sessions (``javascript=False`` for one with JavaScript turned off)."""
    missing = _missing()
    if missing:
        # bindep.txt lists chromium and chromium-driver ([test platform:dpkg]): `make deps` installs them
        pytest.skip(f"the browser tests need {', '.join(missing)}: run make deps and make venv")
    from selenium import webdriver  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel

    drivers = []

    def start(javascript=True):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        profile = tmp_path_factory.mktemp("chromium-profile")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,900", "--no-first-run", "--disable-extensions",
                    "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        if not javascript:
            options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
        service = Service(executable_path=CHROMEDRIVER, log_output=str(profile / "chromedriver.log"))
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(30)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()


@pytest.fixture
def srv(tmp_path):
    server = Server(tmp_path, deploy_timeout=120, view_token=VIEW_TOKEN)
    server.start()
    add_image(server)
    yield server
    server.stop()
