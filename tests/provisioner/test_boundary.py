"""The trust boundary of the unauthenticated routes and bad input that used to do damage:
provisioning networks, DHCP leases, one token per running agent, the private host key handed out once,
discovery bounds, non-finite and out-of-range numbers, control characters, images in use, 413 for urllib."""

import json
import time
import urllib.error
import urllib.request

import pytest

from ingot_provtest import ADMIN_TOKEN, make_settings
from test_api import IMAGE, deploy_node, node_body, token_of

MAC = "02:00:00:00:00:01"


@pytest.fixture
def rebind(app, db, tmp_path):
    """Rebind the in-process app to settings with ``overrides`` (same registry)."""
    def _rebind(**overrides):
        settings = make_settings(tmp_path, **overrides)
        app.state.ctx.bind(settings, db)
        return settings
    return _rebind


def nodes(client, admin):
    resp = client.get("/api/v1/nodes", headers=admin)
    assert resp.status_code == 200, resp.text
    return resp.json()


# --- 1. who may call the boot, discovery and agent routes ---------------------------------------------
def test_unauthenticated_routes_answer_only_the_provisioning_networks(client, admin, rebind):
    deploy_node(client, admin)
    token = token_of(client)                      # loopback: a provisioning network of the defaults
    rebind(provisioning_networks=["10.252.0.0/24", "fd00::/64"])
    auth = {"Authorization": f"Bearer {token}"}
    for method, path, kwargs in (("GET", "/boot/ipxe", {"params": {"mac": MAC}}),
                                 ("POST", "/discovery", {"json": {"macs": ["02:00:00:00:00:77"]}}),
                                 ("GET", "/agent/agent.sh", {}), ("GET", "/agent/manifest", {"headers": auth}),
                                 ("GET", "/agent/seed/user-data", {"headers": auth}),
                                 ("POST", "/agent/report",
                                  {"headers": auth, "json": {"status": "succeeded", "ip_address": "6.6.6.6"}}),
                                 ("GET", "/images/deb12.tar", {}), ("GET", "/ramdisk/vmlinuz", {})):
        resp = client.request(method, path, **kwargs)
        assert resp.status_code == 403, (path, resp.text)
        assert resp.json()["code"] == "not_provisioning_network" and "10.252.0.0/24" in resp.json()["detail"]
    node = client.get("/api/v1/nodes/n1", headers=admin).json()      # the admin API is not network-bound
    assert node["state"] == "deploying" and node["ip_address"] is None
    assert nodes(client, admin)["total"] == 1                          # discovery registered nothing


def test_provisioning_networks_are_checked_at_load():
    from ingot_provisioner.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="not a network"):
        load_settings(None, env={}, overrides={"admin_token": ADMIN_TOKEN, "provisioning_networks": ["lab"]})
    settings = load_settings(None, env={"INGOT_PROVISIONER_PROVISIONING_NETWORKS": "10.252.0.7/255.255.255.0, ::1"},
                             overrides={"admin_token": ADMIN_TOKEN})
    assert settings.provisioning_networks == ["10.252.0.0/24", "::1/128"]


def lease_file(tmp_path, *lines):
    path = tmp_path / "dnsmasq.leases"
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_a_token_goes_only_to_the_address_the_dhcp_leased(client, admin, rebind, tmp_path):
    deploy_node(client, admin)
    later = int(time.time()) + 600
    rebind(dhcp_lease_file=lease_file(tmp_path, f"{later} 02:00:00:00:00:09 127.0.0.9 other *",
                                      f"{later} {MAC} 10.252.0.150 n1 01:{MAC}"))
    resp = client.get("/boot/ipxe", params={"mac": MAC})
    assert resp.status_code == 403 and resp.json()["code"] == "lease_mismatch", resp.text
    assert "10.252.0.150" in resp.json()["detail"] and "ingot.token" not in resp.text
    events = client.get("/api/v1/nodes/n1/events", headers=admin).json()["items"]
    assert not [e for e in events if e["kind"] == "token"]               # nothing minted
    # the lease of this MAC is ours (the test client is 127.0.0.1): the token is handed out
    rebind(dhcp_lease_file=lease_file(tmp_path, f"{later} {MAC} 127.0.0.1 n1 *"))
    assert "ingot.token=idt_" in client.get("/boot/ipxe", params={"mac": MAC}).text
    # an expired lease, or a MAC the lease file does not know: the lease check does not apply
    rebind(dhcp_lease_file=lease_file(tmp_path, f"{int(time.time()) - 5} {MAC} 10.252.0.150 n1 *"))
    assert "ingot.token=idt_" in client.get("/boot/ipxe", params={"mac": MAC}).text
    rebind(dhcp_lease_file=str(tmp_path / "missing.leases"))
    assert "ingot.token=idt_" in client.get("/boot/ipxe", params={"mac": MAC}).text


def test_a_second_fetch_does_not_cancel_the_running_agent(client, admin):
    deploy_node(client, admin)
    token = token_of(client)
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/agent/manifest", params={"format": "env"}, headers=auth).status_code == 200
    hijack = client.get("/boot/ipxe", params={"mac": MAC})
    assert hijack.status_code == 409 and hijack.json()["code"] == "agent_running", hijack.text
    assert "ingot.token" not in hijack.text
    # the running agent keeps its token and finishes
    done = client.post("/agent/report", headers=auth, json={"status": "succeeded", "ip_address": "10.252.0.150"})
    assert done.status_code == 200 and done.json()["state"] == "deployed", done.text
    assert client.get("/api/v1/nodes/n1", headers=admin).json()["ip_address"] == "10.252.0.150"


def test_the_controller_starts_a_new_attempt_with_a_new_token(client, admin):
    deploy_node(client, admin)
    first = {"Authorization": f"Bearer {token_of(client)}"}
    client.get("/agent/manifest", params={"format": "env"}, headers=first)
    assert client.post("/agent/report", headers=first, json={"status": "failed", "message": "disk"}).status_code == 200
    retry = client.post("/api/v1/nodes/n1/deploy", json={"image": "deb12"}, headers=admin)
    assert retry.status_code == 200 and retry.json()["state"] == "deploying", retry.text
    second = {"Authorization": f"Bearer {token_of(client)}"}
    assert client.get("/agent/manifest", params={"format": "env"}, headers=second).status_code == 200
    assert client.get("/agent/manifest", params={"format": "env"}, headers=first).status_code == 403


def test_the_private_host_key_leaves_once_per_deploy(client, admin, db):
    deploy_node(client, admin)
    auth = {"Authorization": f"Bearer {token_of(client)}"}
    client.get("/agent/manifest", params={"format": "env"}, headers=auth)
    assert "PRIVATE" not in client.get("/agent/seed/meta-data", headers=auth).text
    first = client.get("/agent/seed/user-data", headers=auth)
    assert first.status_code == 200 and "BEGIN OPENSSH PRIVATE KEY" in first.text
    again = client.get("/agent/seed/user-data", headers=auth)
    assert again.status_code == 409 and again.json()["code"] == "host_key_handed_out"
    assert "PRIVATE" not in again.text
    with db.engine.connect() as conn:   # the registry keeps only the public half now
        dump = "\n".join(conn.connection.dbapi_connection.iterdump())
    assert "PRIVATE KEY" not in dump
    assert client.get("/api/v1/nodes/n1", headers=admin).json()["ssh_host_keys"]["ed25519"].startswith("ssh-ed25519")


# --- 2. discovery: rate, cap, BMC ------------------------------------------------------------------------
def discover(client, i, **extra):
    body = {"macs": [f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"], "facts": {"cpus": 2}}
    body.update(extra)
    return client.post("/discovery", json=body)


def test_discovery_is_rate_limited_per_source(client, admin, rebind):
    rebind(discovery_rate_limit=5)
    answers = [discover(client, i).status_code for i in range(8)]
    assert answers == [201] * 5 + [429] * 3
    limited = discover(client, 9)
    assert limited.json()["code"] == "rate_limited" and 0 < int(limited.headers["retry-after"]) <= 61
    assert nodes(client, admin)["total"] == 5


def test_discovery_registers_at_most_max_discovered_nodes(client, admin, rebind):
    rebind(max_discovered_nodes=3)
    assert [discover(client, i).status_code for i in range(3)] == [201] * 3
    full = discover(client, 3)
    assert full.status_code == 429 and full.json()["code"] == "too_many_discovered", full.text
    assert "enroll" in full.json()["detail"]
    assert nodes(client, admin)["total"] == 3
    assert discover(client, 0, facts={"cpus": 4}).status_code == 201   # a known node still reports its facts
    assert client.post("/api/v1/nodes/node-020000000000/enroll", headers=admin).status_code == 200
    assert discover(client, 3).status_code == 201


def test_a_later_discovery_never_changes_the_bmc(client, admin):
    bmc = {"address": "10.0.0.5", "port": 623, "protocol": "ipmi"}
    assert discover(client, 1, bmc=bmc).status_code == 201
    evil = {"address": "6.6.6.6", "port": 623, "protocol": "ipmi"}
    assert discover(client, 1, bmc=evil, facts={"cpus": 64}).status_code == 201
    node = client.get("/api/v1/nodes/node-020000000001", headers=admin).json()
    assert node["bmc"] == dict(bmc, system_id=None) and node["facts"] == {"cpus": 64}
    events = client.get("/api/v1/nodes/node-020000000001/events", headers=admin).json()["items"]
    assert any("only an admin" in e["message"] for e in events)
    # the admin does change it
    assert client.patch("/api/v1/nodes/node-020000000001", json={"bmc": evil}, headers=admin).status_code == 200
    # a first BMC of a node registered without one is taken
    assert discover(client, 2).status_code == 201
    assert discover(client, 2, bmc=bmc).status_code == 201
    assert client.get("/api/v1/nodes/node-020000000002", headers=admin).json()["bmc"]["address"] == "10.0.0.5"


# --- 3. non-finite numbers ----------------------------------------------------------------------------
@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_facts_are_refused_and_nothing_is_written(client, admin, number):
    raw = '{"name": "n1", "macs": ["%s"], "facts": {"load": %s}}' % (MAC, number)
    resp = client.post("/api/v1/nodes", content=raw, headers=dict(admin, **{"Content-Type": "application/json"}))
    assert resp.status_code == 422 and "finite" in resp.json()["detail"], resp.text
    nested = '{"macs": ["%s"], "facts": {"disks": [{"temp": %s}]}}' % (MAC, number)
    resp = client.post("/discovery", content=nested, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text
    client.post("/api/v1/nodes", json=node_body(), headers=admin)
    patch = '{"facts": {"x": %s}}' % number
    assert client.patch("/api/v1/nodes/n1", content=patch,
                        headers=dict(admin, **{"Content-Type": "application/json"})).status_code == 422
    listed = nodes(client, admin)
    assert listed["total"] == 1 and listed["items"][0]["facts"] == node_body()["facts"]


# --- 4. integers in range -----------------------------------------------------------------------------
@pytest.mark.parametrize("facts", [{"cpus": 2**31}, {"memory_mib": 2**40}, {"disk_gib": -1}, {"x": 2**63},
                                   {"x": -(2**63) - 1}, {"deep": {"x": [2**64]}}])
def test_out_of_range_integers_are_refused(client, admin, facts):
    resp = client.post("/api/v1/nodes", json=node_body(facts=facts), headers=admin)
    assert resp.status_code == 422, resp.text
    assert client.post("/discovery", json={"macs": [MAC], "facts": facts}).status_code == 422
    assert nodes(client, admin)["total"] == 0


def test_in_range_extremes_are_kept(client, admin):
    facts = {"cpus": 2**31 - 1, "x": 2**63 - 1, "y": -(2**63)}
    assert client.post("/api/v1/nodes", json=node_body(facts=facts), headers=admin).status_code == 201
    assert nodes(client, admin)["items"][0]["facts"] == facts


@pytest.mark.parametrize("query", [{"since": "9" * 40}, {"since": str(2**31)}, {"since": "\u00b2"},
                                   {"since": "9999-12-31T23:59:59-23:59"}])
def test_events_since_out_of_range_is_a_422(client, admin, query):
    client.post("/api/v1/nodes", json=node_body(), headers=admin)
    resp = client.get("/api/v1/nodes/n1/events", params=query, headers=admin)
    assert resp.status_code == 422, resp.text


@pytest.mark.parametrize("key", ["min_cpus", "min_memory_mib", "min_disk_gib"])
def test_allocation_minimums_are_range_checked(client, admin, key):
    resp = client.post("/api/v1/allocations", json={"owner": "o", "name": "x", key: 2**31}, headers=admin)
    assert resp.status_code == 422, resp.text


# --- 5. images in use, atomic replacement ---------------------------------------------------------------
def test_an_image_in_use_is_neither_deleted_nor_replaced(client, admin):
    deploy_node(client, admin)
    resp = client.delete("/api/v1/images/deb12", headers=admin)
    assert resp.status_code == 409 and resp.json()["code"] == "image_in_use" and "n1" in resp.json()["detail"]
    changed = dict(IMAGE, sha256="cd" * 32)
    resp = client.put("/api/v1/images/deb12", json=changed, headers=admin)
    assert resp.status_code == 409 and "n1" in resp.json()["detail"]
    assert client.get("/api/v1/images/deb12", headers=admin).json()["sha256"] == IMAGE["sha256"]
    assert client.put("/api/v1/images/deb12", json=IMAGE, headers=admin).status_code == 200  # same: no change
    auth = {"Authorization": f"Bearer {token_of(client)}"}
    assert "image_sha256=" + "ab" * 32 in client.get("/agent/manifest", params={"format": "env"}, headers=auth).text
    client.post("/agent/report", headers=auth, json={"status": "succeeded"})
    assert client.put("/api/v1/images/deb12", json=changed, headers=admin).status_code == 200
    assert client.delete("/api/v1/images/deb12", headers=admin).status_code == 204


def test_an_image_is_replaced_in_one_update(client, admin):
    assert client.put("/api/v1/images/deb12", json=IMAGE, headers=admin).status_code == 201
    bad = dict(IMAGE, url="http://bad host/x.tar")
    assert client.put("/api/v1/images/deb12", json=bad, headers=admin).status_code == 422
    assert client.get("/api/v1/images/deb12", headers=admin).json()["url"] == IMAGE["url"]   # the old entry stays
    other = client.put("/api/v1/images/other", json=IMAGE, headers=admin)
    assert other.status_code == 422 and "differs" in other.json()["detail"]
    new = dict(IMAGE, url="http://images.example/deb12.tar", size=None)
    resp = client.put("/api/v1/images/deb12", json=new, headers=admin)
    assert resp.status_code == 200 and resp.json()["url"] == new["url"] and resp.json()["size"] is None


# --- 6. control characters ----------------------------------------------------------------------------
BAD_TEXT = ["x\n", "x\x00y", "x\x1b[31m", "x\u202ey", "x\u200by", "x\u2028y"]


@pytest.mark.parametrize("bad", BAD_TEXT)
def test_control_characters_are_refused(client, admin, bad):
    assert client.post("/api/v1/images", json=dict(IMAGE, url="deb12.tar" + bad), headers=admin).status_code == 422
    assert client.post("/api/v1/images", json=dict(IMAGE, url="http://h/d.tar" + bad),
                       headers=admin).status_code == 422
    assert client.post("/api/v1/nodes", json=node_body(facts={"k" + bad: 1}), headers=admin).status_code == 422
    assert client.post("/api/v1/nodes", json=node_body(facts={"k": ["v" + bad]}), headers=admin).status_code == 422
    assert client.post("/discovery", json={"macs": [MAC], "facts": {"k": "v" + bad}}).status_code == 422
    assert nodes(client, admin)["total"] == 0
    client.post("/api/v1/nodes", json=node_body(), headers=admin)
    for patch in ({"docker_url": "tcp://10.0.0.5:2376" + bad}, {"maintenance_reason": "disk" + bad}):
        resp = client.patch("/api/v1/nodes/n1", json=patch, headers=admin)
        assert resp.status_code == 422, (patch, resp.text)
    node = client.get("/api/v1/nodes/n1", headers=admin).json()
    assert node["docker_url"] is None and node["maintenance_reason"] is None
    client.post("/api/v1/images", json=IMAGE, headers=admin)
    client.post("/api/v1/allocations", json={"owner": "me", "name": "b"}, headers=admin)
    resp = client.post("/api/v1/nodes/n1/deploy", json={"image": "deb12", "hostname": "builder1" + bad},
                       headers=admin)
    assert resp.status_code == 422, resp.text
    assert client.get("/api/v1/nodes/n1", headers=admin).json()["state"] == "allocated"


def test_a_mac_with_a_trailing_newline_is_refused(client, admin):
    assert client.post("/api/v1/nodes", json=node_body(mac=MAC + "\n"), headers=admin).status_code == 422
    assert client.get("/boot/ipxe", params={"mac": MAC + "\n"}).status_code == 422


# --- 7. 413 for every client --------------------------------------------------------------------------
@pytest.mark.parametrize("size", [2 * 1024 * 1024, 8 * 1024 * 1024])
def test_an_oversized_body_is_a_413_for_urllib(server_factory, size):
    srv = server_factory()
    body = json.dumps({"name": "n1", "macs": [], "pad": "x" * size}).encode()
    req = urllib.request.Request(srv.url + "/api/v1/nodes", data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {ADMIN_TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)   # pylint: disable=consider-using-with
    assert err.value.code == 413
    assert json.loads(err.value.read())["code"] == "payload_too_large"
    assert srv.api("GET", "/api/v1/nodes")[1]["total"] == 0
