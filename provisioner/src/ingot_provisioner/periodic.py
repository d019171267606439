"""The service's periodic workers: each runs one task every ``interval`` seconds in a thread of its own, started
and stopped with the application (its lifespan), like the periodic tasks of Ironic's conductor.

A failing round is logged and the next one runs on time: one bad round (a database that was locked, a node
changed meanwhile) never stops the worker. The task itself stays a plain function of the registry
(:func:`.registry.reap_overdue` for the deploy timeouts), which tests and callers may run directly."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

from . import registry

log = logging.getLogger("ingot_provisioner.periodic")
STOP_TIMEOUT = 10.0


class Periodic:
    """``task()`` every ``interval`` seconds (the first round one interval after :meth:`start`) until
    :meth:`stop`. ``rounds`` and ``failures`` count the rounds run and the rounds that raised."""

    def __init__(self, name: str, interval: float, task: Callable[[], object]):
        if not interval > 0:
            raise ValueError(f"periodic worker {name}: interval must be a positive number of seconds, got {interval!r}")
        self.name, self.interval, self.task = name, interval, task
        self.rounds = self.failures = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_once(self) -> object:
        """One round now, in the caller's thread; an error is logged and ``None`` returned."""
        self.rounds += 1
        try:
            return self.task()
        except Exception:  # noqa: BLE001 - the worker survives a bad round; it is logged
            self.failures += 1
            log.exception("periodic worker %s: round %d failed (next round in %g s)", self.name, self.rounds,
                          self.interval)
            return None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"ingot-{self.name}", daemon=True)
        self._thread.start()
        log.debug("periodic worker %s started (every %g s)", self.name, self.interval)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop the worker: a round in progress ends first (at most ``timeout`` seconds). False if it did not."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("periodic worker %s: a round still runs after %g s; the service stops without it",
                        self.name, timeout)
            self._thread = thread
            return False
        return True


def deploy_timeouts(ctx) -> Periodic:
    """The worker that fails deploys and releases past their deadline (``timeout_check_interval``). ``ctx`` is read
    at each round (the application's context may be rebound to another database)."""
    return Periodic("deploy-timeouts", ctx.settings.timeout_check_interval,
                    lambda: registry.reap_overdue(ctx.db, ctx.settings))
