"""The provisioner's web view in headless Chromium against the real service: log in through the form, watch a
node go allocated -> deploying -> (progress) -> deployed -> releasing -> ready on its page and on the rack page
without a reload, through the real admin and agent routes; and the plain tables without JavaScript."""

import os
import re

import httpx
import ingot_chromium as chromium
from ingot_chromium import WAIT, console_errors, progress, wait_live, wait_text
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from ingot_viewtest import (IMAGE_SIZE, VIEW_TOKEN, add_node, agent_report, allocate, deploy, deploy_token,
                            logged_in, release)

MAC = "02:00:00:00:03:01"


def login(driver, srv):
    chromium.login(driver, srv.url + "/ui", VIEW_TOKEN)


def test_watch_a_deploy_and_a_release_without_reloading(srv, browser_factory, tmp_path):
    node = add_node(srv, "web-1", MAC, pool="pool-web")
    add_node(srv, "web-2", "02:00:00:00:03:02", pool="pool-other")
    driver = browser_factory()
    login(driver, srv)
    row = f"#node-{node['id']}"
    wait_text(driver, f"{row} .c-state .state", "ready", "rack page")
    rack_tab = driver.current_window_handle
    wait_live(driver)
    driver.switch_to.new_window("tab")
    driver.get(srv.url + "/ui/nodes/web-1")
    node_tab = driver.current_window_handle
    wait_text(driver, "#n-state .state", "ready", "node page")
    wait_live(driver)
    # a marker that a reload would wipe out
    for tab in (rack_tab, node_tab):
        driver.switch_to.window(tab)
        driver.execute_script("window.ingotNoReload = 'still the same page';")
    driver.switch_to.window(node_tab)

    allocate(srv, "pool-web", owner="alice", name="docker1")
    wait_text(driver, "#n-state .state", "allocated", "after the allocation")
    wait_text(driver, "#n-alloc", "docker1", "allocation name")
    deploy(srv, "web-1")
    wait_text(driver, "#n-state .state", "deploying", "after the deploy request")
    assert driver.find_element(By.ID, "progress-box").is_displayed()
    token = deploy_token(srv, MAC)
    seen = []
    for quarter in (1, 2, 3):
        written = IMAGE_SIZE * quarter // 4
        agent_report(srv, token, "progress", message=f"writing: {written} bytes", bytes_written=written)
        WebDriverWait(driver, WAIT).until(lambda d, w=written: progress(d)[0] == w)
        value, maximum = progress(driver)
        assert maximum == IMAGE_SIZE
        seen.append(value)
        wait_text(driver, "#progress-text", f"{written:,} of {IMAGE_SIZE:,} bytes", "progress text")
        if quarter == 2:
            shot = os.environ.get("INGOT_VIEW_SCREENSHOT") or str(tmp_path / "provisioner-view.png")
            assert driver.save_screenshot(shot) and os.path.getsize(shot) > 10000
    assert seen == sorted(seen) and len(set(seen)) == 3, f"the progress bar did not move forward: {seen}"
    agent_report(srv, token, "succeeded", message="image written", ip_address="10.20.30.40")
    wait_text(driver, "#n-state .state", "deployed", "after the agent's success")
    wait_text(driver, "#n-ip", "10.20.30.40", "IP")
    assert progress(driver) == (IMAGE_SIZE, IMAGE_SIZE)
    kinds = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#events tbody tr td:nth-child(2)")]
    assert kinds.count("agent_progress") == 3 and "transition" in kinds

    driver.switch_to.window(rack_tab)
    wait_text(driver, f"{row} .c-state .state", "deployed", "rack page after the deploy")
    wait_text(driver, f"{row} .c-owner", "alice", "rack page owner")
    wait_text(driver, f"{row} .c-ip", "10.20.30.40", "rack page IP")
    wait_text(driver, "#count-deployed", "1", "rack counts")
    wait_text(driver, "#count-ready", "1", "rack counts")

    driver.switch_to.window(node_tab)
    release(srv, "web-1")
    wait_text(driver, "#n-state .state", "releasing", "after the release request")
    agent_report(srv, deploy_token(srv, MAC), "succeeded", message="wiped")
    wait_text(driver, "#n-state .state", "ready", "after the wipe")
    wait_text(driver, "#n-alloc", "", "allocation cleared")
    driver.switch_to.window(rack_tab)
    wait_text(driver, f"{row} .c-state .state", "ready", "rack page after the release")
    wait_text(driver, "#count-ready", "2", "rack counts after the release")
    for tab in (rack_tab, node_tab):
        driver.switch_to.window(tab)
        assert driver.execute_script("return window.ingotNoReload;") == "still the same page", "the page reloaded"
        errors = console_errors(driver)
        assert not errors, f"errors in the browser console: {errors}"


def test_the_plain_table_without_javascript(srv, browser_factory):
    add_node(srv, "plain-1", "02:00:00:00:04:01", pool="pool-a")
    add_node(srv, "plain-2", "02:00:00:00:04:02", pool="pool-b")
    allocate(srv, "pool-b", owner="bob", name="db1")
    driver = browser_factory(javascript=False)
    login(driver, srv)  # the form posts without JavaScript
    cells = {r.find_element(By.CSS_SELECTOR, "td a").text: r.find_element(By.CSS_SELECTOR, ".c-state").text
             for r in driver.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")}
    assert cells == {"plain-1": "ready", "plain-2": "allocated"}
    assert driver.find_element(By.ID, "live").text == "static", "the script ran although JavaScript is off"
    driver.find_element(By.NAME, "owner").send_keys("bob")
    driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
    # the click starts a navigation: read the table only once the filtered page has loaded
    WebDriverWait(driver, WAIT).until(lambda d: "owner=bob" in d.current_url)
    wait_text(driver, "#nodes tbody tr td:first-child a", "plain-2", "the rack filtered by owner")
    driver.find_element(By.LINK_TEXT, "plain-2").click()
    wait_text(driver, "#n-state .state", "allocated", "the node page opened from the filtered rack")
    # the same table fetched directly: one row per node, the state in it
    with logged_in(srv) as client:
        html = client.get("/ui/").text
    rows = re.findall(r'<tr id="node-[^"]+" data-id="[^"]+"><td><a href="/ui/nodes/[^"]+">([^<]+)</a></td>.*?'
                      r'<span class="state st-([a-z_]+)">', html)
    assert rows == [("plain-1", "ready"), ("plain-2", "allocated")]
    assert httpx.get(srv.url + "/ui/", timeout=30).status_code == 401


def test_the_rack_page_for_1000_nodes_loads_in_the_browser(srv, browser_factory):
    nodes = [{"name": f"node-{i:04d}", "macs": [f"02:00:00:05:{i >> 8:02x}:{i & 255:02x}"], "pool": f"rack{i % 20:02d}",
              "tags": ["ssd"]} for i in range(1000)]
    status, out = srv.api("POST", "/api/v1/nodes/bulk", {"nodes": nodes})
    assert status == 201, out
    driver = browser_factory()
    login(driver, srv)
    timings = []
    for _attempt in range(3):
        driver.get(srv.url + "/ui/")
        wait_live(driver)
        timings.append(driver.execute_script(
            "var n = performance.getEntriesByType('navigation')[0];"
            "return [n.responseEnd, n.domContentLoadedEventEnd, n.loadEventEnd,"
            " document.querySelectorAll('#nodes tbody tr').length];"))
    assert all(t[3] == 1000 for t in timings)
    best = min(timings, key=lambda t: t[2])
    print(f"rack page for 1,000 nodes in Chromium: response {best[0]:.0f} ms, DOMContentLoaded {best[1]:.0f} ms, "
          f"load {best[2]:.0f} ms (best of 3)")
    # the issue asks for well under a second; the bound leaves room for a busy shared CI machine
    assert best[2] < 3000, f"the rack page for 1,000 nodes took {best[2]:.0f} ms to load"
