"""Headless Chromium for the tests of the provisioner's web view (tests/browser against the service alone,
tests/e2e against the lab rack): Debian's ``chromium`` and ``chromium-driver`` (bindep.txt) driven by Selenium;
nothing is downloaded. A conftest imports the ``browser_factory`` fixture from here, and the tests use the
helpers that log in and wait for what the page shows."""

import os

import pytest

CHROMIUM = os.environ.get("INGOT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("INGOT_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 30


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


def login(driver, view_url, token):
    """Log in to the view at VIEW_URL (its base, e.g. ``http://host:port/ui``) through its form, with TOKEN;
    returns once the rack page is there (the token never in the URL)."""
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=import-outside-toplevel

    driver.get(view_url + "/login")
    driver.find_element(By.NAME, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    WebDriverWait(driver, WAIT).until(lambda d: d.current_url == view_url + "/")
    assert "token" not in driver.current_url


def wait_text(driver, css, text, what, wait=WAIT):
    """Wait until the elements CSS select show exactly [TEXT]; on timeout, say what they show instead."""
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=import-outside-toplevel

    def found(d):
        return [e.text for e in d.find_elements(By.CSS_SELECTOR, css)] == [text]
    try:
        WebDriverWait(driver, wait).until(found)
    except Exception as exc:  # noqa: BLE001 - re-raised with what the page shows
        shown = [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]
        raise AssertionError(f"{what}: {css} shows {shown}, not {text!r} within {wait} s") from exc


def progress(driver):
    """The node page's progress bar: (value, max)."""
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel

    element = driver.find_element(By.ID, "progress")
    return float(element.get_attribute("value")), float(element.get_attribute("max"))


def wait_live(driver, wait=WAIT):
    """Wait until the page's event stream is open (the header says live)."""
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=import-outside-toplevel

    WebDriverWait(driver, wait).until(lambda d: d.find_element(By.ID, "live").text == "live")


def console_errors(driver):
    """The browser console's errors (the missing favicon aside)."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]]
