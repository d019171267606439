"""kill -9 of the service in the middle of a stream of writes: the SQLite registry opens afterwards,
passes PRAGMA integrity_check and foreign_key_check, and holds every acknowledged write."""

import threading
import time

from sqlalchemy import text

from ingot_provtest import ADMIN_TOKEN, http
from ingot_provisioner.db import Database

WRITERS = 4


def test_kill9_during_writes(server_factory, tmp_path):
    srv = server_factory()
    url = srv.env["INGOT_PROVISIONER_DATABASE_URL"]
    acked_nodes, acked_allocs, errors = [], [], []
    stop = threading.Event()

    def writer(k):
        i = 0
        while not stop.is_set():
            name = f"w{k}-{i}"
            try:
                status, body = http("POST", srv.url + "/api/v1/nodes",
                                    {"name": name, "macs": [f"02:00:00:{k:02x}:{i >> 8:02x}:{i & 255:02x}"],
                                     "pool": f"p{k}", "facts": {"cpus": i}}, token=ADMIN_TOKEN, timeout=10)
                if status == 201:
                    acked_nodes.append(name)
                elif status != 409:
                    errors.append((status, body))
                status, body = http("POST", srv.url + "/api/v1/allocations",
                                    {"owner": f"o{k}", "name": f"a{i}", "pool": f"p{k}"}, token=ADMIN_TOKEN,
                                    timeout=10)
                if status in (200, 201):
                    acked_allocs.append((f"o{k}", f"a{i}", body["id"]))
                elif status != 409:
                    errors.append((status, body))
            except OSError:
                return  # the service is gone
            i += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(WRITERS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked_allocs) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    srv.kill9()  # in the middle of the stream: every writer has a request in flight
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]
    assert len(acked_nodes) >= 40 and len(acked_allocs) >= 40

    db = Database(url)
    assert db.integrity_check() == "ok"
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_key_check")).fetchall() == []
        names = {r[0] for r in conn.execute(text("SELECT name FROM nodes"))}
        owners = {r[0]: (r[1], r[2]) for r in conn.execute(text("SELECT id, owner, allocation_name FROM nodes"))}
        created = {r[0] for r in conn.execute(text(
            "SELECT n.name FROM events e JOIN nodes n ON n.id = e.node_id WHERE e.kind = 'created'"))}
        macs = {r[0] for r in conn.execute(text("SELECT n.name FROM macs m JOIN nodes n ON n.id = m.node_id"))}
        states = {r[0] for r in conn.execute(text("SELECT DISTINCT state FROM nodes"))}
    missing = [n for n in acked_nodes if n not in names]
    assert not missing, f"acknowledged writes lost: {missing[:5]}"
    assert names <= created and names <= macs, "a node without its event or MAC: a torn write"
    for owner, name, node_id in acked_allocs:
        assert owners[node_id] == (owner, name), (owner, name, owners.get(node_id))
    assert states <= {"ready", "allocated"}
    db.dispose()

    # the service starts again on the same registry and goes on
    again = server_factory(database_url=url)
    status, listing = again.api("GET", "/api/v1/nodes?limit=100000")
    assert status == 200 and listing["total"] == len(names)
    status = again.api("POST", "/api/v1/nodes", {"name": "after-crash", "macs": ["02:00:00:ff:ff:ff"]})[0]
    assert status == 201
