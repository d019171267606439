"""The lifecycle state machine: every (state, action) pair of the table, legal and illegal, both in the
pure module and through the API endpoints that use it."""

import datetime as dt
import re

import pytest
from sqlalchemy import select

from ingot_provisioner import registry
from ingot_provisioner.models import Node
from ingot_provisioner.states import (TRANSITIONS, Action, IllegalTransition, State, check, legal_actions,
                                      target_state)

ALL = [(s, a) for s in State for a in Action]

# The contract's list of legal transitions, written out independently of the module's table.
EXPECTED = {
    ("discovered", "enroll"): "ready",
    ("ready", "allocate"): "allocated",
    ("allocated", "deploy"): "deploying",
    ("allocated", "release"): "ready",
    ("allocated", "release_nowipe"): "ready",
    ("deploying", "agent_succeeded"): "deployed",
    ("deploying", "agent_failed"): "deploy_failed",
    ("deploying", "timeout"): "deploy_failed",
    ("deploying", "release"): "releasing",
    ("deploy_failed", "deploy"): "deploying",
    ("deploy_failed", "release"): "releasing",
    ("deployed", "release"): "releasing",
    ("releasing", "agent_succeeded"): "ready",
    ("releasing", "agent_failed"): "release_failed",
    ("releasing", "timeout"): "release_failed",
    ("release_failed", "release"): "releasing",
}


def test_table_is_the_contract():
    assert {(s.value, a.value): n.value for (s, a), n in TRANSITIONS.items()} == EXPECTED


@pytest.mark.parametrize("state,action", ALL, ids=[f"{s.value}-{a.value}" for s, a in ALL])
def test_every_pair(state, action):
    expected = EXPECTED.get((state.value, action.value))
    if expected is not None:
        assert check("n1", state, action) == State(expected)
        assert target_state(state, action) == State(expected)
    else:
        with pytest.raises(IllegalTransition) as err:
            check("n1", state, action, request="POST /x")
        msg = str(err.value)
        assert "'n1'" in msg and f"'{state.value}'" in msg and action.value in msg and "POST /x" in msg
        assert target_state(state, action) is None


@pytest.mark.parametrize("action", [Action.ALLOCATE, Action.TIMEOUT])
def test_maintenance_refuses_allocation_and_automatic_actions(action):
    state = State.READY if action == Action.ALLOCATE else State.DEPLOYING
    with pytest.raises(IllegalTransition, match="maintenance"):
        check("n1", state, action, maintenance=True)
    assert check("n1", state, action, maintenance=False)


def test_maintenance_keeps_manual_actions():
    assert check("n1", State.DEPLOYED, Action.RELEASE, maintenance=True) == State.RELEASING
    assert check("n1", State.DEPLOYING, Action.AGENT_SUCCEEDED, maintenance=True) == State.DEPLOYED


def test_legal_actions_listed_in_message():
    assert legal_actions(State.DEPLOYED) == [Action.RELEASE]
    with pytest.raises(IllegalTransition, match="legal from 'deployed': release"):
        check("n1", State.DEPLOYED, Action.DEPLOY)


# --- through the API --------------------------------------------------------------------------------
IMAGE = {"name": "img", "url": "img.tar", "sha256": "ab" * 32, "format": "tar"}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7fakefakefakefakefakefakefakefakefakefake user@host"


def put_in_state(db, name, state):
    with db.write() as s:
        node = s.scalars(select(Node).where(Node.name == name)).one()
        node.state = state
        if state not in ("discovered", "ready"):
            node.owner, node.allocation_name = "alice", "box1"
        if state in ("deploying", "releasing"):
            node.deadline = registry.utcnow() + dt.timedelta(hours=1)
            node.image = "img"


API_ACTIONS = {
    "enroll": ("post", "/api/v1/nodes/n1/enroll", None),
    "deploy": ("post", "/api/v1/nodes/n1/deploy", {"image": "img", "ssh_keys": [KEY]}),
    "release": ("post", "/api/v1/nodes/n1/release", {"wipe": True}),
    "release_nowipe": ("post", "/api/v1/nodes/n1/release", {"wipe": False}),
}
API_PAIRS = [(s, a) for s in State for a in API_ACTIONS]


@pytest.mark.parametrize("state,action", API_PAIRS, ids=[f"{s.value}-{a}" for s, a in API_PAIRS])
def test_api_transition(client, admin, db, state, action):
    assert client.post("/api/v1/images", json=IMAGE, headers=admin).status_code == 201
    assert client.post("/api/v1/nodes", json={"name": "n1", "macs": ["02:00:00:00:00:01"]},
                       headers=admin).status_code == 201
    put_in_state(db, "n1", state.value)
    method, path, body = API_ACTIONS[action]
    resp = getattr(client, method)(path, json=body, headers=admin)
    expected = EXPECTED.get((state.value, action))
    if expected is None:
        assert resp.status_code == 409, resp.text
        err = resp.json()
        assert err["code"] == "illegal_transition"
        assert "'n1'" in err["detail"] and f"'{state.value}'" in err["detail"]
        assert re.search(rf"cannot {action.split('_')[0]}", err["detail"]), err["detail"]
        assert client.get("/api/v1/nodes/n1", headers=admin).json()["state"] == state.value
    else:
        assert resp.status_code == 200, resp.text
        assert resp.json()["state"] == expected
        events = client.get("/api/v1/nodes/n1/events", headers=admin).json()["items"]
        last = [e for e in events if e["kind"] == "transition"][-1]
        assert last["data"]["from"] == state.value and last["data"]["to"] == expected


@pytest.mark.parametrize("state", list(State), ids=[s.value for s in State])
def test_api_allocate_only_ready(client, admin, db, state):
    client.post("/api/v1/nodes", json={"name": "n1", "macs": ["02:00:00:00:00:01"]}, headers=admin)
    put_in_state(db, "n1", state.value)
    resp = client.post("/api/v1/allocations", json={"owner": "bob", "name": "b"}, headers=admin)
    if state == State.READY:
        assert resp.status_code == 201 and resp.json()["state"] == "allocated"
    else:
        assert resp.status_code == 409 and resp.json()["code"] == "no_node_available"


AGENT_PAIRS = [(s, st) for s in State for st in ("succeeded", "failed")]


@pytest.mark.parametrize("state,status", AGENT_PAIRS, ids=[f"{s.value}-{st}" for s, st in AGENT_PAIRS])
def test_api_agent_reports(client, admin, db, state, status):
    """Agent reports are only possible in deploying/releasing (no token can exist elsewhere)."""
    client.post("/api/v1/images", json=IMAGE, headers=admin)
    client.post("/api/v1/nodes", json={"name": "n1", "macs": ["02:00:00:00:00:01"]}, headers=admin)
    put_in_state(db, "n1", state.value)
    script = client.get("/boot/ipxe", params={"mac": "02:00:00:00:00:01"}).text
    action = "agent_succeeded" if status == "succeeded" else "agent_failed"
    expected = EXPECTED.get((state.value, action))
    if expected is None:
        assert "ingot.token=" not in script
        # a registered node never inspected boots discovery (ingot.metal.discover), the others their disk
        assert ("ingot.mode=discover" if state == State.DISCOVERED else "sanboot") in script, script
        return
    token = re.search(r"ingot\.token=(\S+)", script).group(1)
    resp = client.post("/agent/report", json={"status": status, "message": "x"},
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"node": "n1", "state": expected, "token_revoked": True}
    again = client.post("/agent/report", json={"status": status, "message": "x"},
                        headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 403 and again.json()["code"] == "token_revoked"


@pytest.mark.parametrize("state", list(State), ids=[s.value for s in State])
@pytest.mark.parametrize("maintenance", [False, True], ids=["normal", "maintenance"])
def test_timeout_reaper(client, admin, db, settings, state, maintenance):
    client.post("/api/v1/nodes", json={"name": "n1", "macs": ["02:00:00:00:00:01"]}, headers=admin)
    put_in_state(db, "n1", state.value)
    with db.write() as s:
        node = s.scalars(select(Node).where(Node.name == "n1")).one()
        node.deadline = registry.utcnow() - dt.timedelta(seconds=1)
        node.maintenance = maintenance
    reaped = registry.reap_overdue(db, settings)
    expected = EXPECTED.get((state.value, "timeout"))
    node = client.get("/api/v1/nodes/n1", headers=admin).json()
    if expected and not maintenance:
        assert reaped == ["n1"] and node["state"] == expected
        assert "timed out" in node["last_error"]
        kinds = [e["kind"] for e in client.get("/api/v1/nodes/n1/events", headers=admin).json()["items"]]
        assert "timeout" in kinds
    else:
        assert reaped == [] and node["state"] == state.value
