"""The periodic workers of the service: the deploy-timeout worker fails an overdue deploy on its own (no request
touches the node) and stops with the application; a failing round is logged and the worker goes on."""

import datetime as dt
import logging
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ingot_provtest import ADMIN_TOKEN, Database, create_app, make_settings
from ingot_provisioner import periodic
from ingot_provisioner.config import ConfigError
from ingot_provisioner.models import Event, Node, utcnow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
IMAGE = {"name": "deb12", "url": "deb12.tar", "sha256": "ab" * 32, "format": "tar", "size": 1024}


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def node_row(db, name):
    with db.read() as s:
        node = s.scalars(select(Node).where(Node.name == name)).one()
        kinds = s.scalars(select(Event.kind).where(Event.node_id == node.id)).all()
        return node.state, node.last_error, kinds


def test_deploy_timeout_worker_runs_on_its_own_and_stops_with_the_app(tmp_path):
    settings = make_settings(tmp_path, timeout_check_interval=0.1)
    db = Database(settings.database_url)
    db.migrate()
    app = create_app(settings, db)
    worker = app.state.deploy_timeouts
    assert worker.interval == 0.1 and not worker.running
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        assert worker.running
        client.post("/api/v1/images", json=IMAGE, headers=ADMIN)
        client.post("/api/v1/nodes", json={"name": "n1", "macs": ["02:00:00:00:00:01"]}, headers=ADMIN)
        client.post("/api/v1/allocations", json={"owner": "me", "name": "web"}, headers=ADMIN)
        deploying = client.post("/api/v1/nodes/n1/deploy", json={"image": "deb12"}, headers=ADMIN)
        assert deploying.status_code == 200 and deploying.json()["state"] == "deploying"
        # the deadline passes in the database; from here on no request reaches the service
        with db.write() as s:
            s.scalars(select(Node).where(Node.name == "n1")).one().deadline = utcnow() - dt.timedelta(seconds=1)
        wait_for(lambda: node_row(db, "n1")[0] == "deploy_failed", 10, "the worker fails the overdue deploy")
        state, last_error, kinds = node_row(db, "n1")
        assert "deploy timed out" in last_error and "timeout" in kinds
        assert worker.rounds >= 1 and worker.failures == 0
    # the application's shutdown stopped the worker: its thread is gone and no round runs any more
    assert not worker.running
    assert not any(t.name == "ingot-deploy-timeouts" for t in threading.enumerate())
    rounds = worker.rounds
    time.sleep(0.5)
    assert worker.rounds == rounds
    db.dispose()


def test_no_worker_when_the_app_is_told_not_to_start_it(tmp_path):
    settings = make_settings(tmp_path, timeout_check_interval=0.1)
    db = Database(settings.database_url)
    db.migrate()
    app = create_app(settings, db, start_reaper=False)
    with TestClient(app, client=("127.0.0.1", 50000)):
        time.sleep(0.3)
        assert not app.state.deploy_timeouts.running and app.state.deploy_timeouts.rounds == 0
    db.dispose()


def test_a_failing_round_is_logged_and_the_worker_goes_on(caplog):
    calls = []

    def task():
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return ["n1"]

    worker = periodic.Periodic("test-task", 0.05, task)
    with caplog.at_level(logging.ERROR, logger="ingot_provisioner.periodic"):
        worker.start()
        try:
            wait_for(lambda: len(calls) >= 3, 10, "rounds after a failed one")
        finally:
            assert worker.stop() is True
    assert worker.failures == 1 and worker.rounds >= 3 and not worker.running
    failed = [r for r in caplog.records if "test-task" in r.getMessage()]
    assert failed and "round 1 failed" in failed[0].getMessage() and "database is locked" in failed[0].exc_text
    # run directly (as the tests of the registry do), a round returns what the task returned
    assert worker.run_once() == ["n1"]


def test_stop_waits_for_a_round_in_progress_and_says_when_it_cannot():
    release = threading.Event()
    started = threading.Event()

    def task():
        started.set()
        release.wait(10)

    worker = periodic.Periodic("slow-task", 0.05, task)
    worker.start()
    assert started.wait(10)
    assert worker.stop(timeout=0.2) is False and worker.running
    release.set()
    assert worker.stop() is True and not worker.running


@pytest.mark.parametrize("interval", [0, -1, 0.01, 301, "often"])
def test_the_check_interval_is_bounded(tmp_path, interval):
    with pytest.raises(ConfigError, match="timeout_check_interval"):
        make_settings(tmp_path, timeout_check_interval=interval)


def test_a_worker_needs_a_positive_interval():
    with pytest.raises(ValueError, match="interval"):
        periodic.Periodic("x", 0, lambda: None)
