"""The read-only web view against the real service under uvicorn: no credential, no view (401 for every route
but the login form); the admin token and the view token both log in (cookie, no token left in the URL); no
secret of the run in the HTML or the event stream; hostile strings escaped; filters; the stream delivers
state changes and the agent's progress while connected, and ends; the view writes nothing."""

import re
import sqlite3
import time

import httpx
import pytest

from ingot_provtest import ADMIN_TOKEN, Database, Server, create_app, make_settings
from ingot_provisioner.config import ConfigError, check_settings
from ingot_viewtest import (IMAGE_SIZE, VIEW_TOKEN, SseReader, add_image, add_node, agent_report, allocate, api,
                            deploy, deploy_token, logged_in, release)

HOSTILE = "<script>alert('pwned')</script>"
BMC_PASSWORD = "bmc-Passw0rd-of-this-run-7c1e"
USER_DATA_SECRET = "user-data-secret-9f8e7d6c5b4a"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("view-server"), deploy_timeout=120, view_token=VIEW_TOKEN,
                    view_stream_seconds=20)
    server.start()
    add_image(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rack(srv):
    """Nodes in several states, pools and owners; n-hostile carries hostile strings and a secret fact."""
    add_node(srv, "n-ready", "02:00:00:00:01:01", pool="pool-a")
    add_node(srv, "n-alloc", "02:00:00:00:01:02", pool="pool-b")
    allocate(srv, "pool-b", owner="alice", name="web1")
    add_node(srv, "n-hostile", "02:00:00:00:01:03", pool="pool-c",
             facts={"vendor": HOSTILE, "bmc_password": BMC_PASSWORD, "nested": {"api_key": BMC_PASSWORD}})
    allocate(srv, "pool-c", owner="bob", name="evil1")
    deploy(srv, "n-hostile", user_data=f"#cloud-config\nwrite_files:\n- path: /x\n  content: {USER_DATA_SECRET}\n")
    token = deploy_token(srv, "02:00:00:00:01:03")
    with httpx.Client(timeout=30) as client:
        manifest = client.get(srv.url + "/agent/manifest", headers={"Authorization": f"Bearer {token}"}).json()
    private = re.search(r"-----BEGIN OPENSSH PRIVATE KEY-----\n(.+?)\n", manifest["seed"]["user-data"])
    assert private, "the seed of the deploy holds the pinned host key's private half"
    agent_report(srv, token, "failed", message=f"disk error {HOSTILE} <img src=x onerror=alert(1)>")
    return {"deploy_token": token, "private_key_line": private.group(1)}


VIEW_ROUTES = ["/ui/", "/ui/?state=ready", "/ui/nodes/n-ready", "/ui/nodes/no-such-node", "/ui/events",
               "/ui/nodes/n-ready/events", "/ui/static/view.js", "/ui/static/nope.js"]


@pytest.mark.parametrize("path", VIEW_ROUTES)
def test_every_view_route_needs_a_credential(srv, rack, path):
    forged = f"admin.{int(time.time()) + 3600}.{'0' * 64}"
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                        {"Authorization": f"Bearer {rack['deploy_token']}"}, {"Cookie": f"ingot_view={forged}"},
                        {"Cookie": f"ingot_view=viewer.{int(time.time()) + 3600}.abc"}):
            resp = client.get(path, headers=headers)
            assert resp.status_code == 401, (path, headers, resp.status_code)
            assert "n-ready" not in resp.text and "pool-a" not in resp.text and "/ui/login" in resp.text
        resp = client.get(path.split("?")[0] + "?token=wrong-token-0123456789")
        assert resp.status_code == 401 and "n-ready" not in resp.text


def test_login_form_is_open_and_wrong_token_refused(srv, rack):
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        form = client.get("/ui/login")
        assert form.status_code == 200 and 'name="token"' in form.text and "n-ready" not in form.text
        style = client.get("/ui/static/view.css")  # the login form's style sheet: open, nothing about nodes
        assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
        assert "n-ready" not in style.text and "pool-a" not in style.text
        resp = client.post("/ui/login", content="token=wrong-token-0123456789",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert resp.status_code == 401 and "wrong token" in resp.text and "set-cookie" not in resp.headers


@pytest.mark.parametrize("token,role", [(ADMIN_TOKEN, "admin"), (VIEW_TOKEN, "viewer")])
def test_access_with_the_admin_token_and_the_view_token(srv, rack, token, role):
    with logged_in(srv, token) as client:
        cookie = client.cookies.get("ingot_view")
        assert cookie and token not in cookie and cookie.startswith(role + ".")
        page = client.get("/ui/")
        assert page.status_code == 200 and "n-ready" in page.text and f"{role} (read-only view)" in page.text
        assert client.get("/ui/static/view.js").status_code == 200
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        # the login POST's cookie: HttpOnly, SameSite=Strict, path of the view
        resp = client.post("/ui/login", content=f"token={token}",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        set_cookie = resp.headers["set-cookie"].lower()
        assert resp.headers["location"] == "/ui/" and token not in resp.headers["location"]
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "path=/ui" in set_cookie
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        # ?token= sets the cookie and redirects to the same page without the token
        resp = client.get(f"/ui/?pool=pool-a&token={token}")
        assert resp.status_code == 303 and resp.headers["location"] == "/ui/?pool=pool-a"
        page = client.get(resp.headers["location"])
        assert page.status_code == 200 and "n-ready" in page.text and "n-alloc" not in page.text
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        # a bearer header works too (scripts)
        page = client.get("/ui/nodes/n-ready", headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 200 and "n-ready" in page.text


def test_no_secret_in_the_pages_or_the_stream(srv, rack):
    secrets = [ADMIN_TOKEN, VIEW_TOKEN, rack["deploy_token"], rack["private_key_line"], BMC_PASSWORD,
               USER_DATA_SECRET, "PRIVATE KEY"]
    with logged_in(srv, VIEW_TOKEN) as client:
        blobs = {path: client.get(path).content for path in
                 ("/ui/", "/ui/nodes/n-hostile", "/ui/nodes/n-ready", "/ui/nodes/n-alloc", "/ui/static/view.js")}
        assert b"n-hostile" in blobs["/ui/"] and b"deploy_failed" in blobs["/ui/nodes/n-hostile"]
        reader = SseReader(client, "/ui/events?since=0")
        reader.wait_for(lambda n, d: d.get("event", {}).get("kind") == "agent_report", what="the agent's report")
        node_reader = SseReader(client, "/ui/nodes/n-hostile/events?since=0")
        node_reader.wait_for(lambda n, d: d.get("node", {}).get("state") == "deploy_failed", what="deploy_failed")
        blobs["rack stream"], blobs["node stream"] = bytes(reader.raw), bytes(node_reader.raw)
    for where, blob in blobs.items():
        for secret in secrets:
            assert secret.encode() not in blob, f"{secret[:12]}... in {where}"
    assert b"bmc_password</th><td>***" in blobs["/ui/nodes/n-hostile"]


def test_hostile_strings_are_escaped(srv, rack):
    with logged_in(srv) as client:
        page = client.get("/ui/nodes/n-hostile").text
        rack_page = client.get("/ui/").text
    assert "<script>alert" not in page and "<img src=x" not in page and "<img src=x" not in rack_page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in rack_page
    # the only scripts are the view's own
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/ui/static/view.js" defer>']


def _rows(html):
    return re.findall(r'<tr id="node-[^"]+" data-id="[^"]+"><td><a href="[^"]+">([^<]+)</a>', html)


def test_filters_and_counts(srv, rack):
    with logged_in(srv) as client:
        everything = client.get("/ui/").text
        assert {"n-ready", "n-alloc", "n-hostile"} <= set(_rows(everything))
        ready = _rows(client.get("/ui/?state=ready").text)
        assert "n-ready" in ready and "n-alloc" not in ready and "n-hostile" not in ready
        assert _rows(client.get("/ui/?pool=pool-b").text) == ["n-alloc"]
        assert _rows(client.get("/ui/?owner=bob").text) == ["n-hostile"]
        assert _rows(client.get("/ui/?owner=bob&state=ready").text) == []
        assert re.search(r'id="count-deploy_failed" data-state="deploy_failed">1<', everything)
        assert client.get("/ui/?state=bogus").status_code == 422


def test_stream_delivers_state_changes_and_progress_while_connected(srv, rack):
    add_node(srv, "live-1", "02:00:00:00:02:01", pool="pool-live")
    with logged_in(srv) as client:
        page = client.get("/ui/nodes/live-1").text
        since = re.search(r'data-since="(\d+)"', page).group(1)
        node_stream = SseReader(client, f"/ui/nodes/live-1/events?since={since}")
        rack_stream = SseReader(client, "/ui/events")
        assert node_stream.connected.wait(10) and rack_stream.connected.wait(10)
        assert node_stream.status == 200 and rack_stream.status == 200
        time.sleep(1)  # the rack stream starts after the newest event at connect time
        allocate(srv, "pool-live", owner="carol", name="live")
        deploy(srv, "live-1")
        got = node_stream.wait_for(lambda n, d: d["node"]["state"] == "deploying", what="deploying")
        assert got["node"]["owner"] == "carol" and got["node"]["allocation_name"] == "live"
        token = deploy_token(srv, "02:00:00:00:02:01")
        agent_report(srv, token, "progress", message="writing", bytes_written=IMAGE_SIZE // 4)
        got = node_stream.wait_for(lambda n, d: (d["progress"] or {}).get("bytes_written") == IMAGE_SIZE // 4,
                                   what="the progress report")
        assert got["progress"]["size"] == IMAGE_SIZE and got["event"]["kind"] == "agent_progress"
        agent_report(srv, token, "succeeded", message="done", ip_address="10.9.8.7")
        got = node_stream.wait_for(lambda n, d: d["node"]["state"] == "deployed", what="deployed")
        assert got["node"]["ip_address"] == "10.9.8.7"
        rack_stream.wait_for(lambda n, d: n == "node" and d["node"]["name"] == "live-1"
                             and d["node"]["state"] == "deployed", what="deployed on the rack stream")
        counts = rack_stream.wait_for(lambda n, d: n == "counts" and d.get("deployed", 0) >= 1, what="counts")
        assert counts["deployed"] == api(srv, "GET", "/api/v1/nodes?state=deployed")["total"]
        release(srv, "live-1")
        node_stream.wait_for(lambda n, d: d["node"]["state"] == "releasing", what="releasing")
        agent_report(srv, deploy_token(srv, "02:00:00:00:02:01"), "succeeded", message="wiped")
        node_stream.wait_for(lambda n, d: d["node"]["state"] == "ready", what="ready")
        # no event of another node on the node's stream
        assert {d["node"]["name"] for n, d in node_stream.events if n == "node"} == {"live-1"}


def test_a_stream_ends_after_its_lifetime_and_streams_are_capped(tmp_path):
    server = Server(tmp_path, view_token=VIEW_TOKEN, view_stream_seconds=2, view_max_streams=1)
    server.start()
    try:
        with logged_in(server) as client:
            first = SseReader(client, "/ui/events", timeout=30)
            assert first.connected.wait(10) and first.status == 200
            deadline = time.monotonic() + 10
            while b"retry: 2000" not in first.raw and time.monotonic() < deadline:
                time.sleep(0.05)
            second = client.get("/ui/events")
            assert second.status_code == 503 and second.headers["retry-after"]
            assert first.done.wait(15), "the stream did not end after view_stream_seconds"
            assert first.events and first.events[-1][0] == "end"
            assert b"retry: 2000" in first.raw
            time.sleep(0.5)
            again = SseReader(client, "/ui/events", timeout=30)
            assert again.connected.wait(10) and again.status == 200, "the slot of the ended stream is free again"
            again.done.wait(15)
    finally:
        server.stop()


def _snapshot(path):
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        nodes = conn.execute("SELECT id, updated_at, state_changed_at, state FROM nodes ORDER BY id").fetchall()
    return counts, nodes


def test_the_view_writes_nothing(srv, rack):
    db_path = f"{srv.workdir}/registry.db"
    before = _snapshot(db_path)
    with logged_in(srv) as client:
        for path in ("/ui/", "/ui/?state=deploy_failed", "/ui/nodes/n-hostile", "/ui/nodes/n-ready",
                     "/ui/static/view.js", "/ui/static/view.css", "/ui/login"):
            assert client.get(path).status_code == 200, path
        reader = SseReader(client, "/ui/events?since=0")
        reader.wait_for(lambda n, d: n == "node", what="an event")
        assert client.get("/ui/logout").status_code == 303
        assert client.get("/ui/").status_code == 401, "log out ends the session in this client"
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert client.request(method, "/ui/nodes/n-ready").status_code == 405
    assert _snapshot(db_path) == before


def test_the_view_can_be_turned_off_and_moved(tmp_path):
    off = create_app(make_settings(tmp_path, view_enabled=False), start_reaper=False)
    assert not [r for r in off.router.routes if getattr(r, "path", "").startswith("/ui")]
    from fastapi.testclient import TestClient
    moved = make_settings(tmp_path, view_path="/watch/", view_token=VIEW_TOKEN)
    database = Database(moved.database_url)
    database.migrate()
    with TestClient(create_app(moved, database, start_reaper=False), client=("127.0.0.1", 50000)) as client:
        assert client.get("/watch/", headers={"Authorization": f"Bearer {VIEW_TOKEN}"}).status_code == 200
        assert client.get("/ui/", headers={"Authorization": f"Bearer {VIEW_TOKEN}"}).status_code == 404
    database.dispose()
    for bad in ("/api/v1", "ui", "/UI", "/a b", "/agent/x"):
        with pytest.raises(Exception, match="view_path"):
            make_settings(tmp_path, view_path=bad)


def test_the_view_on_postgresql(postgres_db, postgres_url, tmp_path):
    server = Server(tmp_path, database_url=postgres_url, view_token=VIEW_TOKEN)
    server.start()
    try:
        add_image(server)
        add_node(server, "pg-1", "02:00:00:00:06:01", pool="pool-pg")
        with logged_in(server) as client:
            assert _rows(client.get("/ui/?pool=pool-pg").text) == ["pg-1"]
            stream = SseReader(client, "/ui/nodes/pg-1/events?since=0")
            allocate(server, "pool-pg", owner="dave", name="pg")
            deploy(server, "pg-1")
            token = deploy_token(server, "02:00:00:00:06:01")
            agent_report(server, token, "progress", bytes_written=IMAGE_SIZE // 2)
            got = stream.wait_for(lambda n, d: (d["progress"] or {}).get("bytes_written") == IMAGE_SIZE // 2,
                                  what="the progress report")
            assert got["progress"]["size"] == IMAGE_SIZE and got["node"]["state"] == "deploying"
            page = client.get("/ui/nodes/pg-1").text
            assert f'value="{IMAGE_SIZE // 2}"' in page and 'id="count-deploying" data-state="deploying">1<' in \
                client.get("/ui/").text
    finally:
        server.stop()


def test_view_token_settings(tmp_path):
    token_file = tmp_path / "view-token"
    token_file.write_text(VIEW_TOKEN + "\n")
    settings = make_settings(tmp_path, view_token_file=str(token_file))
    assert settings.view_token_value() == VIEW_TOKEN and VIEW_TOKEN not in repr(settings)
    assert check_settings(settings) == []
    assert "the view token is shorter than 16 characters" in check_settings(make_settings(tmp_path, view_token="short"))
    with pytest.raises(ConfigError, match="view_token_file"):
        make_settings(tmp_path, view_token_file=str(tmp_path / "missing"))


def test_check_config_names_the_view(tmp_path, monkeypatch, capsys):
    from ingot_provisioner.__main__ import main

    cfg = tmp_path / "config.yml"
    monkeypatch.setenv("INGOT_PROVISIONER_ADMIN_TOKEN", ADMIN_TOKEN)
    for text, expected in ((f"view_token: {VIEW_TOKEN}\n", "web view at /ui/ for the admin token or the view token"),
                           ("view_path: /watch\n", "web view at /watch/ for the admin token (no view token)"),
                           ("view_enabled: false\n", "web view off")):
        cfg.write_text(f"database_url: sqlite:///{tmp_path}/r.db\n" + text)
        assert main(["check-config", "--config", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert expected in out and VIEW_TOKEN not in out
