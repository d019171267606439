"""Atomic allocation: 50 concurrent allocations against 10 ready nodes, over HTTP, on two real service
processes sharing one registry, on SQLite and on PostgreSQL."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ingot_provtest import http

READY = 10
CLIENTS = 50


def _seed(srv):
    for i in range(READY):
        status, body = srv.api("POST", "/api/v1/nodes", {
            "name": f"r{i:02d}", "macs": [f"02:00:00:00:10:{i:02x}"], "pool": "race", "tags": ["ssd"],
            "facts": {"cpus": 8, "memory_mib": 16384}})
        assert status == 201, body
    # nodes that must never be picked: maintenance, other pool, too small, not ready
    extra = [("m1", "race", ["ssd"], 8, {"maintenance": True}), ("o1", "other", ["ssd"], 8, None),
             ("s1", "race", ["ssd"], 2, None), ("t1", "race", [], 8, None)]
    for j, (name, pool, tags, cpus, patch) in enumerate(extra):
        srv.api("POST", "/api/v1/nodes", {"name": name, "macs": [f"02:00:00:00:11:{j:02x}"], "pool": pool,
                                          "tags": tags, "facts": {"cpus": cpus, "memory_mib": 16384}})
        if patch:
            srv.api("PATCH", f"/api/v1/nodes/{name}", patch)
    srv.api("POST", "/api/v1/nodes", {"name": "d1", "macs": ["02:00:00:00:12:01"], "pool": "race", "tags": ["ssd"],
                                      "facts": {"cpus": 8}, "state": "discovered"})
    for i in range(3):
        srv.api("POST", "/api/v1/nodes", {"name": f"i{i}", "macs": [f"02:00:00:00:13:{i:02x}"], "pool": "idem"})


def _storm(servers, bodies):
    barrier = threading.Barrier(len(bodies))

    def one(i):
        barrier.wait(30)
        return http("POST", servers[i % len(servers)].url + "/api/v1/allocations", bodies[i],
                    token=servers[0].env["INGOT_PROVISIONER_ADMIN_TOKEN"], timeout=60)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, range(len(bodies))))


def _race(servers):
    a = servers[0]
    _seed(a)
    bodies = [{"owner": f"owner{i:02d}", "name": "box", "pool": "race", "tags": ["ssd"], "min_cpus": 4}
              for i in range(CLIENTS)]
    results = _storm(servers, bodies)
    won = [body for status, body in results if status == 201]
    lost = [body for status, body in results if status != 201]
    assert len(won) == READY, [r for r in results if r[0] not in (201, 409)]
    assert len(lost) == CLIENTS - READY
    assert all(isinstance(b, dict) and b.get("code") == "no_node_available" for b in lost), lost[:3]
    assert all("no node available" in b["detail"] and "pool=race" in b["detail"] for b in lost)
    assert len({b["id"] for b in won}) == READY
    assert len({b["owner"] for b in won}) == READY

    # the registry agrees: each of the 10 nodes owned exactly once, by a winner
    status, listing = a.api("GET", "/api/v1/nodes?pool=race&limit=100")
    by_name = {n["name"]: n for n in listing["items"]}
    allocated = [n for n in listing["items"] if n["state"] == "allocated"]
    assert sorted(n["name"] for n in allocated) == [f"r{i:02d}" for i in range(READY)]
    assert {n["owner"] for n in allocated} == {b["owner"] for b in won}
    for name in ("m1", "s1", "t1", "d1"):
        assert by_name[name]["owner"] is None, name
    for node in allocated:
        events = a.api("GET", f"/api/v1/nodes/{node['name']}/events")[1]
        allocs = [e for e in events["items"] if e["kind"] == "transition" and e["data"]["action"] == "allocate"]
        assert len(allocs) == 1, (node["name"], allocs)

    # idempotency under concurrency: 12 requests for the same (owner, name) -> one node, one 201
    same = _storm(servers, [{"owner": "dora", "name": "web", "pool": "idem"}] * 12)
    assert sorted(pair[0] for pair in same) == [200] * 11 + [201], same
    assert len({pair[1]["id"] for pair in same}) == 1
    idem = a.api("GET", "/api/v1/nodes?pool=idem")[1]
    assert [n["owner"] for n in idem["items"]].count("dora") == 1


def test_race_sqlite(server_factory, tmp_path):
    # both start at once on a fresh registry: their migrations serialise (BEGIN IMMEDIATE)
    first = server_factory(wait=False)
    second = server_factory(wait=False, database_url=first.env["INGOT_PROVISIONER_DATABASE_URL"])
    _race([first.start(), second.start()])
    for srv in (first, second):
        assert "Traceback" not in srv.log(), srv.log()[-3000:]


def test_race_postgresql(server_factory, postgres_db, tmp_path):
    url = postgres_db.url
    first = server_factory(wait=False, database_url=url)
    second = server_factory(wait=False, database_url=url)
    _race([first.start(), second.start()])
    for srv in (first, second):
        assert "Traceback" not in srv.log(), srv.log()[-3000:]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_registry_api_on_both_backends(backend, request, tmp_path):
    """The in-process API on PostgreSQL as well: create, allocate, deploy, events."""
    from fastapi.testclient import TestClient

    from ingot_provtest import ADMIN_TOKEN, make_settings
    from ingot_provisioner.api import create_app
    from ingot_provisioner.db import Database

    if backend == "postgresql":
        db = request.getfixturevalue("postgres_db")
        settings = make_settings(tmp_path, database_url=db.url)
    else:
        settings = make_settings(tmp_path)
        db = Database(settings.database_url)
        db.migrate()
    app = create_app(settings, db, start_reaper=False)
    h = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 50000)) as c:
        assert c.post("/api/v1/nodes", json={"name": "n1", "macs": ["02:00:00:00:00:01"], "tags": ["a", "b"]},
                      headers=h).status_code == 201
        assert c.post("/api/v1/allocations", json={"owner": "o", "name": "x", "tags": ["a", "c"]},
                      headers=h).status_code == 409
        assert c.post("/api/v1/allocations", json={"owner": "o", "name": "x", "tags": ["b", "a"]},
                      headers=h).status_code == 201
        c.post("/api/v1/images", json={"name": "i", "url": "i.tar", "sha256": "0" * 64, "format": "tar"}, headers=h)
        assert c.post("/api/v1/nodes/n1/deploy", json={"image": "i"}, headers=h).json()["state"] == "deploying"
        script = c.get("/boot/ipxe?mac=02:00:00:00:00:01").text
        token = script.split("ingot.token=")[1].split()[0]
        auth = {"Authorization": f"Bearer {token}"}
        assert c.get("/agent/manifest", headers=auth).status_code == 200
        assert c.post("/agent/report", json={"status": "failed", "message": "disk on fire"},
                      headers=auth).json()["state"] == "deploy_failed"
        assert c.get("/agent/manifest", headers=auth).status_code == 403
        node = c.get("/api/v1/nodes/n1", headers=h).json()
        assert node["last_error"] == "deploy failed: disk on fire"
        kinds = [e["kind"] for e in c.get("/api/v1/nodes/n1/events", headers=h).json()["items"]]
        assert "agent_report" in kinds and kinds.count("transition") == 3
        assert app.state.internal_errors == 0
    db.dispose()
