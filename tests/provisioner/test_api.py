"""The API: auth, validation (malformed input is a clear 4xx, never a 500), errors that name node and
state, CRUD, allocation constraints, boot scripts, discovery, seeds, configuration and logging."""

import json
import logging
import re
import subprocess
import sys
import time

import pytest
import yaml

from ingot_provtest import ADMIN_TOKEN, PKG_DIR
from ingot_provisioner import bootart, logsafe
from ingot_provisioner.config import ConfigError, load_settings

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7fakefakefakefakefakefakefakefakefakefake user@host"
IMAGE = {"name": "deb12", "url": "deb12.tar", "sha256": "ab" * 32, "format": "tar", "size": 1024}


def node_body(name="n1", mac="02:00:00:00:00:01", **extra):
    body = {"name": name, "macs": [mac], "pool": "rack1", "tags": ["ssd"],
            "facts": {"cpus": 8, "memory_mib": 16384, "disk_gib": 200},
            "bmc": {"address": "127.0.0.1", "port": 6230, "protocol": "ipmi"}}
    body.update(extra)
    return body


# --- auth ---------------------------------------------------------------------------------------------
ADMIN_ENDPOINTS = [("get", "/api/v1/nodes"), ("post", "/api/v1/nodes"), ("get", "/api/v1/nodes/n1"),
                   ("patch", "/api/v1/nodes/n1"), ("delete", "/api/v1/nodes/n1"),
                   ("post", "/api/v1/nodes/n1/enroll"), ("post", "/api/v1/allocations"),
                   ("post", "/api/v1/nodes/n1/release"), ("post", "/api/v1/nodes/n1/deploy"),
                   ("get", "/api/v1/nodes/n1/events"), ("get", "/api/v1/images"), ("post", "/api/v1/images"),
                   ("get", "/api/v1/images/x"), ("delete", "/api/v1/images/x")]


BAD_AUTH = [None, "Bearer wrong-token-0123456789", "Basic dXNlcjpwYXNz", "Bearer ", f"Bearer {ADMIN_TOKEN}x",
            f"bearer {ADMIN_TOKEN[:-1]}", "Bearer \u00e9\u00e8"]


@pytest.mark.parametrize("method,path", ADMIN_ENDPOINTS)
def test_admin_auth_refused(client, method, path):
    for auth in BAD_AUTH:
        headers = {"Authorization": auth.encode("utf-8")} if auth else {}
        resp = client.request(method.upper(), path, headers=headers, json={})
        assert resp.status_code == 401, (auth, resp.text)
        assert resp.json()["code"] == "unauthorized"
        assert resp.headers.get("www-authenticate") == "Bearer"
        assert ADMIN_TOKEN not in resp.text


def test_admin_auth_right_token(client, admin):
    assert client.get("/api/v1/nodes", headers=admin).json() == {"items": [], "total": 0}
    assert client.get("/api/v1/nodes", headers={"Authorization": f"bearer {ADMIN_TOKEN}"}).status_code == 200


def test_health_and_openapi_need_no_auth(client):
    assert client.get("/api/v1/health").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/api/v1/nodes", "/api/v1/allocations", "/api/v1/nodes/{node_id}/deploy", "/boot/ipxe",
                 "/discovery", "/agent/manifest", "/agent/report", "/api/v1/images/{name}"):
        assert path in paths, path
    assert "NodeOut" in spec["components"]["schemas"]


@pytest.mark.parametrize("token", [None, "idt_unknown0000000000000000", "garbage"])
def test_agent_endpoints_need_a_deploy_token(client, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for method, path, body in (("get", "/agent/manifest", None), ("post", "/agent/report", {"status": "progress"}),
                               ("get", "/agent/seed/user-data", None)):
        resp = client.request(method.upper(), path, headers=headers, json=body)
        assert resp.status_code == 401, resp.text
        assert resp.json()["code"] == "unauthorized"


def test_admin_token_is_not_a_deploy_token(client, admin):
    assert client.get("/agent/manifest", headers=admin).status_code == 401


# --- validation: never a 500 --------------------------------------------------------------------------
HUGE = "a" * 100_000
MALFORMED = [
    ("post", "/api/v1/nodes", b'{"name": "n1", ', 400, "invalid_json"),
    ("post", "/api/v1/nodes", b"\xff\xfe\x00garbage", 400, "invalid_json"),
    ("post", "/api/v1/nodes", b"[]", 422, "validation_error"),
    ("post", "/api/v1/nodes", b"null", 422, "validation_error"),
    ("post", "/api/v1/nodes", b'"a string"', 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": 5, "macs": []}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "macs": "02:00:00:00:00:01"}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "macs": ["02:00:00:00:00:0g"]}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "macs": ["02:00:00:00:00"]}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "macs": ["02:00-00:00:00:01"]}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "macs": [HUGE]}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": HUGE, "macs": []}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "bad name", "macs": []}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "unknown": 1}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "state": "deployed"}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "facts": {"cpus": "8"}}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "facts": {"cpus": -1}}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "facts": {"x": HUGE}}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "facts": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}),
     422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "bmc": {"address": "h", "password": "secret"}}),
     422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "bmc": {"address": "h", "port": 70000}}),
     422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "tags": [1, 2]}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "tags": ["x"] * 100}), 422, "validation_error"),
    ("post", "/api/v1/nodes", json.dumps({"name": "n1", "macs": [], "pad": "x" * 2_000_000}), 413,
     "payload_too_large"),
    ("post", "/api/v1/allocations", json.dumps({"owner": "a", "name": "b", "min_cpus": "4"}), 422,
     "validation_error"),
    ("post", "/api/v1/allocations", json.dumps({"owner": "a", "name": "b", "min_cpus": -4}), 422,
     "validation_error"),
    ("post", "/api/v1/allocations", json.dumps({"owner": "a", "name": "b", "min_cpus": 1.5}), 422,
     "validation_error"),
    ("post", "/api/v1/allocations", json.dumps({"owner": "a b", "name": "b"}), 422, "validation_error"),
    ("post", "/api/v1/allocations", json.dumps({"owner": "a", "name": "b", "tags": "ssd"}), 422,
     "validation_error"),
    ("post", "/api/v1/allocations", json.dumps({"name": "b"}), 422, "validation_error"),
    ("post", "/api/v1/allocations", b"", 422, "validation_error"),
    ("post", "/api/v1/images", json.dumps({**IMAGE, "sha256": "xyz"}), 422, "validation_error"),
    ("post", "/api/v1/images", json.dumps({**IMAGE, "format": "zip"}), 422, "validation_error"),
    ("post", "/api/v1/images", json.dumps({**IMAGE, "url": "../../etc/passwd"}), 422, "validation_error"),
    ("post", "/api/v1/images", json.dumps({**IMAGE, "url": "http://x/a b"}), 422, "validation_error"),
    ("post", "/api/v1/images", json.dumps({**IMAGE, "size": -1}), 422, "validation_error"),
    ("post", "/api/v1/nodes/n1/release", json.dumps({"wipe": "yes"}), 422, "validation_error"),
    ("post", "/api/v1/nodes/n1/deploy", json.dumps({"image": "deb12", "ssh_keys": ["not a key"]}), 422,
     "validation_error"),
    ("post", "/api/v1/nodes/n1/deploy", json.dumps({"image": "deb12", "ssh_keys": [KEY + "\nssh-rsa AAAA"]}),
     422, "validation_error"),
    ("post", "/api/v1/nodes/n1/deploy", json.dumps({"image": "deb12", "hostname": "-bad-"}), 422,
     "validation_error"),
    ("post", "/api/v1/nodes/n1/deploy", json.dumps({"image": "deb12", "user_data": HUGE}), 422,
     "validation_error"),
    ("patch", "/api/v1/nodes/n1", json.dumps({"maintenance": "true"}), 422, "validation_error"),
    ("patch", "/api/v1/nodes/n1", json.dumps({"docker_url": "not a url"}), 422, "validation_error"),
    ("patch", "/api/v1/nodes/n1", json.dumps({"ip_address": "300.1.1.1"}), 422, "validation_error"),
    ("patch", "/api/v1/nodes/n1", json.dumps({"state": "ready"}), 422, "validation_error"),
    ("get", "/api/v1/nodes?limit=0", None, 422, "validation_error"),
    ("get", "/api/v1/nodes?limit=abc", None, 422, "validation_error"),
    ("get", "/api/v1/nodes?state=flying", None, 422, "validation_error"),
    ("get", "/api/v1/nodes?offset=-1", None, 422, "validation_error"),
    ("get", f"/api/v1/nodes?pool={HUGE[:5000]}", None, 422, "validation_error"),
    ("get", f"/api/v1/nodes/{HUGE[:5000]}", None, 422, "validation_error"),
    ("get", "/api/v1/nodes/n1/events?since=yesterday", None, 422, "validation_error"),
    ("get", "/boot/ipxe", None, 422, "validation_error"),
    ("get", "/boot/ipxe?mac=", None, 422, "validation_error"),
    ("get", "/boot/ipxe?mac=02:00:00:00:00:01;chain%20http://evil", None, 422, "validation_error"),
    ("get", f"/boot/ipxe?mac={HUGE[:5000]}", None, 422, "validation_error"),
    ("post", "/discovery", json.dumps({"macs": []}), 422, "validation_error"),
    ("post", "/discovery", json.dumps({"macs": ["nope"]}), 422, "validation_error"),
    ("post", "/discovery", b"{{{", 400, "invalid_json"),
    ("post", "/discovery", json.dumps({"macs": ["02:00:00:00:00:09"], "facts": {"memory_mib": "lots"}}), 422,
     "validation_error"),
    ("get", "/agent/manifest?format=xml", None, 422, "validation_error"),
    ("get", "/nope", None, 404, "not_found"),
    ("put", "/api/v1/nodes", b"{}", 405, "method_not_allowed"),
]


@pytest.mark.parametrize("method,path,body,status,code", MALFORMED,
                         ids=[f"{i}-{m[0]}-{m[1][:30]}" for i, m in enumerate(MALFORMED)])
def test_malformed_input_is_a_clear_4xx(client, admin, method, path, body, status, code):
    client.post("/api/v1/images", json=IMAGE, headers=admin)
    client.post("/api/v1/nodes", json=node_body(), headers=admin)
    headers = dict(admin, **({"Content-Type": "application/json"} if body is not None else {}))
    content = body.encode() if isinstance(body, str) else body
    resp = client.request(method.upper(), path, content=content, headers=headers)
    assert resp.status_code == status, resp.text
    err = resp.json()
    assert err["code"] == code and isinstance(err["detail"], str) and err["detail"]
    assert len(resp.text) < 3000, "errors must not echo huge input"
    # the client fixture asserts afterwards that no request reached the catch-all 500 handler


def test_validation_error_names_the_field(client, admin):
    resp = client.post("/api/v1/nodes", json={"name": "n1", "macs": ["zz"], "bogus": 1}, headers=admin)
    detail = resp.json()["detail"]
    assert "body.macs.0" in detail and "MAC" in detail and "body.bogus: unknown field" in detail


def test_unexpected_errors_are_a_logged_500_without_secrets(app, client, admin, monkeypatch, caplog):
    from ingot_provisioner import registry

    def boom(*_a, **_k):
        raise RuntimeError(f"database exploded with token idt_{'s' * 30} and {ADMIN_TOKEN}")

    monkeypatch.setattr(registry, "list_nodes", boom)
    with caplog.at_level(logging.ERROR, logger="ingot_provisioner"):
        resp = client.get("/api/v1/nodes", headers=admin)
    assert resp.status_code == 500
    assert resp.json()["code"] == "internal_error" and "reference" in resp.json()["detail"]
    assert "exploded" not in resp.text and ADMIN_TOKEN not in resp.text
    assert app.state.internal_errors == 1
    app.state.internal_errors = 0  # expected here; the fixture checks the other tests


# --- nodes ---------------------------------------------------------------------------------------------
def test_node_crud(client, admin):
    resp = client.post("/api/v1/nodes", json=node_body(macs=["02-00-00-00-00-AA", "02:00:00:00:00:01"]),
                       headers=admin)
    assert resp.status_code == 201
    node = resp.json()
    assert node["macs"] == ["02:00:00:00:00:01", "02:00:00:00:00:aa"]
    assert node["state"] == "ready" and node["owner"] is None and node["ssh_host_keys"] == {}
    assert node["bmc"]["port"] == 6230 and "password" not in json.dumps(node)
    for key in ("id", "name", "macs", "state", "maintenance", "maintenance_reason", "pool", "tags", "facts", "bmc",
                "owner", "allocation_name", "image", "ip_address", "ssh_host_keys", "docker_url", "last_error",
                "created_at", "updated_at", "state_changed_at"):
        assert key in node
    assert client.get(f"/api/v1/nodes/{node['id']}", headers=admin).json()["name"] == "n1"
    dup = client.post("/api/v1/nodes", json=node_body(mac="02:00:00:00:00:02"), headers=admin)
    assert dup.status_code == 409 and "n1" in dup.json()["detail"] and dup.json()["code"] == "conflict"
    mac_taken = client.post("/api/v1/nodes", json=node_body(name="n2"), headers=admin)
    assert mac_taken.status_code == 409 and "02:00:00:00:00:01" in mac_taken.json()["detail"]

    patched = client.patch("/api/v1/nodes/n1", json={"tags": ["gpu", "ssd", "gpu"], "maintenance": True,
                                                     "maintenance_reason": "fan", "docker_url": "tcp://10.0.0.5:2376",
                                                     "facts": {"cpus": 2}}, headers=admin).json()
    assert patched["tags"] == ["gpu", "ssd"] and patched["maintenance"] and patched["maintenance_reason"] == "fan"
    assert patched["facts"] == {"cpus": 2} and patched["docker_url"] == "tcp://10.0.0.5:2376"
    kinds = [e["kind"] for e in client.get("/api/v1/nodes/n1/events", headers=admin).json()["items"]]
    assert kinds == ["created", "maintenance", "updated"]
    off = client.patch("/api/v1/nodes/n1", json={"maintenance": False}, headers=admin).json()
    assert not off["maintenance"] and off["maintenance_reason"] is None

    listing = client.get("/api/v1/nodes", params={"pool": "rack1", "state": "ready"}, headers=admin).json()
    assert listing["total"] == 1 and listing["items"][0]["name"] == "n1"
    assert client.get("/api/v1/nodes", params={"pool": "other"}, headers=admin).json()["total"] == 0
    assert client.delete("/api/v1/nodes/n1", headers=admin).status_code == 204
    missing = client.get("/api/v1/nodes/n1", headers=admin)
    assert missing.status_code == 404 and "'n1'" in missing.json()["detail"]


def test_list_paging(client, admin):
    for i in range(7):
        client.post("/api/v1/nodes", json={"name": f"p{i}", "macs": [f"02:00:00:00:01:{i:02x}"]}, headers=admin)
    page = client.get("/api/v1/nodes", params={"limit": 3, "offset": 3}, headers=admin).json()
    assert page["total"] == 7 and [n["name"] for n in page["items"]] == ["p3", "p4", "p5"]


def test_delete_refused_unless_discovered_or_ready(client, admin):
    client.post("/api/v1/nodes", json=node_body(), headers=admin)
    client.post("/api/v1/allocations", json={"owner": "o", "name": "a"}, headers=admin)
    resp = client.delete("/api/v1/nodes/n1", headers=admin)
    assert resp.status_code == 409 and "'n1'" in resp.json()["detail"] and "'allocated'" in resp.json()["detail"]
    assert client.delete("/api/v1/nodes/n1?force=true", headers=admin).status_code == 204


def test_enroll_sets_pool_and_tags(client, admin):
    client.post("/api/v1/nodes", json=node_body(state="discovered"), headers=admin)
    node = client.post("/api/v1/nodes/n1/enroll", json={"pool": "rack9", "tags": ["nvme"]}, headers=admin).json()
    assert node["state"] == "ready" and node["pool"] == "rack9" and node["tags"] == ["nvme"]
    again = client.post("/api/v1/nodes/n1/enroll", headers=admin)
    assert again.status_code == 409 and again.json()["code"] == "illegal_transition"
    assert "node 'n1' is in state 'ready': cannot enroll" in again.json()["detail"]


# --- allocation ----------------------------------------------------------------------------------------
def test_allocation_constraints(client, admin):
    specs = [("a1", "rack1", ["ssd"], 4, 8192, 100), ("a2", "rack1", ["ssd", "gpu"], 16, 65536, 500),
             ("a3", "rack2", ["gpu"], 32, 131072, 1000), ("a4", "rack1", [], 2, 2048, 50)]
    for i, (name, pool, tags, cpus, mem, disk) in enumerate(specs):
        client.post("/api/v1/nodes", json={"name": name, "macs": [f"02:00:00:00:02:{i:02x}"], "pool": pool,
                                           "tags": tags, "facts": {"cpus": cpus, "memory_mib": mem,
                                                                   "disk_gib": disk}}, headers=admin)
    client.patch("/api/v1/nodes/a4", json={"maintenance": True}, headers=admin)

    def alloc(name, **c):
        return client.post("/api/v1/allocations", json={"owner": "me", "name": name, **c}, headers=admin)

    assert alloc("x1", tags=["gpu", "ssd"]).json()["name"] == "a2"
    assert alloc("x2", pool="rack2").json()["name"] == "a3"
    assert alloc("x3", pool="rack1", min_cpus=2, min_memory_mib=4096).json()["name"] == "a1"
    none = alloc("x4", pool="rack1")  # a4 is in maintenance
    assert none.status_code == 409 and none.json()["code"] == "no_node_available"
    assert "owner 'me' name 'x4'" in none.json()["detail"] and "pool=rack1" in none.json()["detail"]
    client.patch("/api/v1/nodes/a4", json={"maintenance": False}, headers=admin)
    assert alloc("x5", min_disk_gib=51).status_code == 409
    ok = alloc("x5", min_disk_gib=50)
    assert ok.status_code == 201 and ok.json()["name"] == "a4" and ok.json()["allocation_name"] == "x5"
    same = alloc("x5", min_disk_gib=50)
    assert same.status_code == 200 and same.json()["id"] == ok.json()["id"]  # idempotent
    released = client.post("/api/v1/nodes/a4/release", headers=admin).json()
    assert released["state"] == "ready" and released["owner"] is None and released["allocation_name"] is None


def test_allocation_filters_by_owner(client, admin):
    client.post("/api/v1/nodes", json=node_body(), headers=admin)
    client.post("/api/v1/allocations", json={"owner": "carol", "name": "web"}, headers=admin)
    mine = client.get("/api/v1/nodes", params={"owner": "carol"}, headers=admin).json()
    assert mine["total"] == 1 and mine["items"][0]["allocation_name"] == "web"


# --- deploy, boot scripts, seeds ----------------------------------------------------------------------
def deploy_node(client, admin, **deploy):
    client.post("/api/v1/images", json=IMAGE, headers=admin)
    client.post("/api/v1/nodes", json=node_body(), headers=admin)
    client.post("/api/v1/allocations", json={"owner": "me", "name": "builder1"}, headers=admin)
    body = {"image": "deb12", "ssh_keys": [KEY]}
    body.update(deploy)
    return client.post("/api/v1/nodes/n1/deploy", json=body, headers=admin)


def token_of(client, mac="02:00:00:00:00:01"):
    script = client.get("/boot/ipxe", params={"mac": mac}).text
    return re.search(r"ingot\.token=(\S+)", script).group(1)


def test_deploy_and_boot_scripts(client, admin):
    node = deploy_node(client, admin).json()
    assert node["state"] == "deploying" and node["image"] == "deb12" and node["hostname"] == "builder1"
    assert node["ssh_host_keys"]["ed25519"].startswith("ssh-ed25519 AAAA")
    assert node["deadline"]
    script = client.get("/boot/ipxe", params={"mac": "02-00-00-00-00-01"})
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/plain")
    lines = script.text.splitlines()
    assert lines[0] == "#!ipxe"
    kernel = next(line for line in lines if line.startswith("kernel "))
    assert "ingot.mode=deploy" in kernel and "ingot.url=http://127.0.0.1:9" in kernel
    assert re.search(r"ingot\.token=idt_[A-Za-z0-9_-]{40,}", kernel)
    assert "ingot.target=/disk" in kernel and lines[-1] == "boot"
    unknown = client.get("/boot/ipxe", params={"mac": "02:00:00:00:00:99"}).text
    assert "ingot.mode=discover" in unknown and "ingot.token" not in unknown
    # a second fetch supersedes the first token (the node booted again)
    first = token_of(client)
    second = token_of(client)
    assert client.get("/agent/manifest", headers={"Authorization": f"Bearer {first}"}).status_code == 403
    assert client.get("/agent/manifest", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_tokens_are_hashed_at_rest(client, admin, db):
    deploy_node(client, admin)
    token = token_of(client)
    with db.engine.connect() as conn:
        dump = "\n".join(conn.connection.dbapi_connection.iterdump())
    assert token not in dump and token[4:] not in dump


def test_manifest_and_seed(client, admin):
    user_data = "#cloud-config\nruncmd:\n  - [touch, /ran]\nssh_authorized_keys:\n  - ssh-rsa AAAAB3Nza extra\n" \
                "write_files:\n  - path: /etc/x\n    content: y\n"
    node = deploy_node(client, admin, user_data=user_data, hostname="builder1.lab.example").json()
    token = token_of(client)
    auth = {"Authorization": f"Bearer {token}"}
    manifest = client.get("/agent/manifest", headers=auth).json()
    assert manifest["mode"] == "deploy" and manifest["node"] == "n1" and manifest["target"] == "/disk"
    assert manifest["image"] == {"name": "deb12", "url": "http://127.0.0.1:9/images/deb12.tar",
                                 "sha256": "ab" * 32, "format": "tar", "size": 1024}
    assert manifest["report_url"] == "http://127.0.0.1:9/agent/report"
    meta = yaml.safe_load(manifest["seed"]["meta-data"])
    assert meta["local-hostname"] == "builder1.lab.example" and meta["instance-id"].startswith(node["id"])
    text = manifest["seed"]["user-data"]
    assert text.startswith("#cloud-config\n")
    cfg = yaml.safe_load(text)
    assert cfg["hostname"] == "builder1" and cfg["fqdn"] == "builder1.lab.example"
    assert cfg["ssh_authorized_keys"] == [KEY, "ssh-rsa AAAAB3Nza extra"]
    assert cfg["ssh_deletekeys"] is True and cfg["ssh_genkeytypes"] == []
    assert cfg["ssh_keys"]["ed25519_public"] == node["ssh_host_keys"]["ed25519"]
    assert "BEGIN OPENSSH PRIVATE KEY" in cfg["ssh_keys"]["ed25519_private"]
    assert [f["path"] for f in cfg["write_files"]] == [bootart.SSHD_HOSTKEY_CONF, "/etc/x"]
    assert cfg["runcmd"] == [["touch", "/ran"]] and cfg["disable_root"] is False
    # the private half never leaves through the admin API
    full = client.get("/api/v1/nodes/n1", headers=admin).text
    assert "PRIVATE" not in full
    env = client.get("/agent/manifest", params={"format": "env"}, headers=auth).text
    assert "image_sha256=" + "ab" * 32 in env.splitlines() and "mode=deploy" in env.splitlines()
    assert client.get("/agent/seed/meta-data", headers=auth).text == manifest["seed"]["meta-data"]
    # the private host key left once (in the JSON manifest's seed): never again in this deploy
    again = client.get("/agent/seed/user-data", headers=auth)
    assert again.status_code == 409 and again.json()["code"] == "host_key_handed_out", again.text
    assert client.get("/agent/manifest", headers=auth).json()["code"] == "host_key_handed_out"


def test_host_key_pair_matches():
    from cryptography.hazmat.primitives import serialization

    public, private = bootart.generate_host_keys()
    key = serialization.load_ssh_private_key(private["ed25519"].encode(), password=None)
    derived = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert derived.decode() == public["ed25519"]


@pytest.mark.parametrize("user_data,fragment", [
    ("#!/bin/sh\necho hi\n", "scripts"),
    ("runcmd: [\n", "not valid YAML"),
    ("- a\n- b\n", "mapping"),
    ("ssh_keys:\n  ed25519_private: x\n", "ssh_keys"),
    ("ssh_genkeytypes: [rsa]\n", "ssh_genkeytypes"),
    ("hostname: other\n", "conflicts"),
])
def test_bad_user_data(client, admin, user_data, fragment):
    resp = deploy_node(client, admin, user_data=user_data)
    assert resp.status_code == 422 and resp.json()["code"] == "invalid_user_data"
    assert fragment in resp.json()["detail"] and "'n1'" in resp.json()["detail"]
    assert client.get("/api/v1/nodes/n1", headers=admin).json()["state"] == "allocated"


def test_merge_cloud_config():
    base = {"a": [1], "b": {"x": 1, "y": [1]}, "c": "base", "ssh_keys": {"k": 1}}
    extra = {"a": [2], "b": {"y": [2], "z": 3}, "c": "extra", "d": 4, "ssh_keys": {"k": 2}}
    assert bootart.merge_cloud_config(base, extra) == {"a": [1, 2], "b": {"x": 1, "y": [1, 2], "z": 3},
                                                       "c": "extra", "ssh_keys": {"k": 1}, "d": 4}


def test_deploy_unknown_image(client, admin):
    resp = deploy_node(client, admin, image="nope")
    assert resp.status_code == 404 and "image 'nope'" in resp.json()["detail"] and "'n1'" in resp.json()["detail"]


def test_sandboxed_templates_refuse_unsafe_values(tmp_path):
    renderer = bootart.Renderer()
    with pytest.raises(ValueError):
        renderer.render("ipxe-local.ipxe.j2", node="x\nchain http://evil", state="ready", maintenance=False)
    (tmp_path / "ipxe-local.ipxe.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        bootart.Renderer(str(tmp_path)).render("ipxe-local.ipxe.j2", node="n", state="ready", maintenance=False)


def test_ipxe_local_boot_for_other_states(client, admin):
    client.post("/api/v1/nodes", json=node_body(), headers=admin)
    text = client.get("/boot/ipxe", params={"mac": "02:00:00:00:00:01"}).text
    assert text.startswith("#!ipxe\n") and "sanboot --no-describe --drive 0x80 || exit" in text
    assert "ingot.token" not in text


# --- discovery ------------------------------------------------------------------------------------------
def test_discovery(client, admin):
    body = {"macs": ["02:00:00:00:05:01", "02:00:00:00:05:02"], "facts": {"cpus": 4, "memory_mib": 4096}}
    first = client.post("/discovery", json=body)
    assert first.status_code == 201
    assert first.json()["state"] == "discovered" and first.json()["name"] == "node-020000000501"
    body["facts"]["cpus"] = 8
    again = client.post("/discovery", json=body)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    node = client.get("/api/v1/nodes/node-020000000501", headers=admin).json()
    assert node["facts"]["cpus"] == 8 and node["macs"] == body["macs"]
    client.post("/api/v1/nodes/node-020000000501/enroll", headers=admin)
    body["facts"]["cpus"] = 1
    known = client.post("/discovery", json=body)
    assert known.status_code == 200 and known.json()["state"] == "ready"
    assert client.get("/api/v1/nodes/node-020000000501", headers=admin).json()["facts"]["cpus"] == 8
    assert set(known.json()) == {"id", "name", "state"}


def test_discovery_macs_of_two_nodes(client, admin):
    client.post("/api/v1/nodes", json=node_body(), headers=admin)
    client.post("/api/v1/nodes", json=node_body(name="n2", mac="02:00:00:00:00:02"), headers=admin)
    resp = client.post("/discovery", json={"macs": ["02:00:00:00:00:01", "02:00:00:00:00:02"]})
    assert resp.status_code == 409 and resp.json()["code"] == "conflict"


# --- images ---------------------------------------------------------------------------------------------
def test_images(client, admin, settings, tmp_path):
    assert client.post("/api/v1/images", json=IMAGE, headers=admin).status_code == 201
    assert client.post("/api/v1/images", json=IMAGE, headers=admin).status_code == 409
    assert client.get("/api/v1/images/deb12", headers=admin).json()["sha256"] == "ab" * 32
    assert [i["name"] for i in client.get("/api/v1/images", headers=admin).json()["items"]] == ["deb12"]
    assert client.delete("/api/v1/images/deb12", headers=admin).status_code == 204
    assert client.get("/api/v1/images/deb12", headers=admin).status_code == 404
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "images" / "a.tar").write_bytes(b"x" * 3000)
    (tmp_path / "secret").write_text("no")
    assert client.get("/images/a.tar").content == b"x" * 3000
    assert client.get("/images/../secret").status_code == 404
    assert client.get("/images/%2e%2e/secret").status_code == 404
    assert client.get("/images/missing.tar").status_code == 404


def test_events_since(client, admin):
    client.post("/api/v1/nodes", json=node_body(), headers=admin)
    client.patch("/api/v1/nodes/n1", json={"pool": "p2"}, headers=admin)
    items = client.get("/api/v1/nodes/n1/events", headers=admin).json()["items"]
    assert len(items) == 2
    later = client.get("/api/v1/nodes/n1/events", params={"since": items[0]["id"]}, headers=admin).json()["items"]
    assert [e["id"] for e in later] == [items[1]["id"]]
    by_time = client.get("/api/v1/nodes/n1/events", params={"since": "2000-01-01T00:00:00Z"},
                         headers=admin).json()["items"]
    assert len(by_time) == 2


# --- configuration, CLI, logs -----------------------------------------------------------------------------
def test_config_file_and_env(tmp_path):
    cfg = tmp_path / "config.yml"
    token_file = tmp_path / "token"
    token_file.write_text("from-file-token-0123456789\n")
    cfg.write_text(f"port: 9000\nadmin_token_file: {token_file}\ndeploy_timeout: 60\n")
    st = load_settings(str(cfg), env={"INGOT_PROVISIONER_PORT": "9001", "INGOT_PROVISIONER_ACCESS_LOG": "no"})
    assert st.port == 9001 and st.deploy_timeout == 60 and not st.access_log
    assert st.admin_token_value() == "from-file-token-0123456789"
    assert st.base_url == "http://127.0.0.1:9001" and st.kernel_url.endswith("/ramdisk/vmlinuz")
    assert "from-file" not in repr(st)
    cfg.write_text("bogus_key: 1\n")
    with pytest.raises(ConfigError, match="bogus_key"):
        load_settings(str(cfg), env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(str(tmp_path / "missing.yml"), env={})


def test_cli(tmp_path, monkeypatch, capsys):
    from ingot_provisioner.__main__ import main

    cfg = tmp_path / "config.yml"
    cfg.write_text(f"database_url: sqlite:///{tmp_path}/r.db\n")
    monkeypatch.delenv("INGOT_PROVISIONER_ADMIN_TOKEN", raising=False)
    assert main(["check-config", "--config", str(cfg)]) == 2
    assert "no admin token" in capsys.readouterr().err
    assert main(["serve", "--config", str(tmp_path / "missing.yml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setenv("INGOT_PROVISIONER_ADMIN_TOKEN", ADMIN_TOKEN)
    assert main(["migrate", "--config", str(cfg)]) == 0
    assert "revision 0001" in capsys.readouterr().out
    assert main(["gen-token"]) == 0 and len(capsys.readouterr().out.strip()) >= 40
    # the real command line, as systemd runs it
    env = {"PYTHONPATH": PKG_DIR, "PATH": "/usr/bin:/bin", "INGOT_PROVISIONER_ADMIN_TOKEN": ADMIN_TOKEN}
    good = subprocess.run([sys.executable, "-m", "ingot_provisioner", "serve", "--config", str(cfg), "--check-config"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert good.returncode == 0, good.stderr
    assert "configuration ok" in good.stdout and ADMIN_TOKEN not in good.stdout + good.stderr


def test_log_redaction():
    logsafe.register_secret("super-secret-admin-token")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s header %s cmd %s admin %s", (
        "idt_abcdefghijklmnopqrstuvwxyz", "Authorization: Bearer abc.def", "ingot.token=idt_zzzzzzzzzz9",
        "super-secret-admin-token"), None)
    logsafe.RedactFilter().filter(record)
    text = record.getMessage()
    assert "abcdefghij" not in text and "abc.def" not in text and "zzzzzzzzzz9" not in text
    assert "super-secret" not in text and "idt_***" in text


def test_discovery_leaves_maintenance_nodes_alone(client, admin):
    client.post("/api/v1/nodes", json=node_body(state="discovered", facts={"cpus": 1}), headers=admin)
    client.patch("/api/v1/nodes/n1", json={"maintenance": True, "maintenance_reason": "rma"}, headers=admin)
    resp = client.post("/discovery", json={"macs": ["02:00:00:00:00:01"], "facts": {"cpus": 64}})
    assert resp.status_code == 200
    assert client.get("/api/v1/nodes/n1", headers=admin).json()["facts"] == {"cpus": 1}


def test_bulk_registration(client, admin):
    nodes = [{"name": f"b{i:05d}", "macs": [f"02:00:01:00:{i >> 8:02x}:{i & 255:02x}"], "pool": "bulk",
              "tags": ["x", "y"], "facts": {"cpus": 4, "memory_mib": 2048},
              "bmc": {"address": "127.0.0.1", "port": 7000 + i % 100}} for i in range(2000)]
    resp = client.post("/api/v1/nodes/bulk", json={"nodes": nodes}, headers=admin)
    assert resp.status_code == 201 and resp.json() == {"created": 2000}
    listing = client.get("/api/v1/nodes", params={"limit": 10000}, headers=admin).json()
    assert listing["total"] == 2000 and listing["items"][7]["macs"] == ["02:00:01:00:00:07"]
    assert listing["items"][7]["tags"] == ["x", "y"] and listing["items"][7]["bmc"]["port"] == 7007
    one = client.get("/api/v1/nodes/b00007", headers=admin).json()
    # a single node's answer also says what its deploy was given (lists leave that out)
    assert one.pop("ssh_keys") == [] and one.pop("user_data_sha256") is None
    assert dict(one.items()) == listing["items"][7]
    again = client.post("/api/v1/nodes/bulk", json={"nodes": nodes[:2] + [node_body(name="zz")]}, headers=admin)
    assert again.status_code == 409 and "b00000" in again.json()["detail"]
    dup = client.post("/api/v1/nodes/bulk", json={"nodes": [node_body(name="a"), node_body(name="b")]},
                      headers=admin)
    assert dup.status_code == 409 and "02:00:00:00:00:01" in dup.json()["detail"]
    assert client.get("/api/v1/nodes", params={"limit": 1}, headers=admin).json()["total"] == 2000
    alloc = client.post("/api/v1/allocations", json={"owner": "o", "name": "n", "tags": ["x"], "min_cpus": 4},
                        headers=admin)
    assert alloc.status_code == 201 and alloc.json()["name"] == "b00000"


def test_sqlite_pragmas(db):
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_deploy_timeout_thread(tmp_path, admin):
    """The service's own background check fails an overdue deploy, revokes its token, logs an event."""
    from fastapi.testclient import TestClient

    from ingot_provtest import make_settings
    from ingot_provisioner.api import create_app
    from ingot_provisioner.db import Database

    settings = make_settings(tmp_path, deploy_timeout=0.6, timeout_check_interval=0.1)
    db = Database(settings.database_url)
    db.migrate()
    with TestClient(create_app(settings, db), raise_server_exceptions=False, client=("127.0.0.1", 50000)) as c:
        deploy_node(c, admin)
        token = token_of(c)
        deadline = time.monotonic() + 10
        while c.get("/api/v1/nodes/n1", headers=admin).json()["state"] == "deploying" and time.monotonic() < deadline:
            time.sleep(0.1)
        node = c.get("/api/v1/nodes/n1", headers=admin).json()
        assert node["state"] == "deploy_failed" and "timed out" in node["last_error"]
        assert c.get("/agent/manifest", headers={"Authorization": f"Bearer {token}"}).status_code == 403
        kinds = [e["kind"] for e in c.get("/api/v1/nodes/n1/events", headers=admin).json()["items"]]
        assert "timeout" in kinds
    db.dispose()
