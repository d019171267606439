"""The node lifecycle state machine: ONE table of legal transitions, used by every endpoint.

Every state change in the service goes through :func:`transition`; anything not in
:data:`TRANSITIONS` is refused with :class:`IllegalTransition` (HTTP 409 ``illegal_transition``),
whose message names the node, its state and what was asked.
"""

from __future__ import annotations

import enum


class State(str, enum.Enum):
    DISCOVERED = "discovered"
    READY = "ready"
    ALLOCATED = "allocated"
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"
    DEPLOY_FAILED = "deploy_failed"
    RELEASING = "releasing"
    RELEASE_FAILED = "release_failed"


class Action(str, enum.Enum):
    ENROLL = "enroll"                  # POST /nodes/{id}/enroll
    ALLOCATE = "allocate"              # POST /allocations
    DEPLOY = "deploy"                  # POST /nodes/{id}/deploy
    RELEASE = "release"                # POST /nodes/{id}/release {"wipe": true}
    RELEASE_NOWIPE = "release_nowipe"  # POST /nodes/{id}/release {"wipe": false}
    AGENT_SUCCEEDED = "agent_succeeded"  # POST /agent/report {"status": "succeeded"}
    AGENT_FAILED = "agent_failed"      # POST /agent/report {"status": "failed"}
    TIMEOUT = "timeout"                # the deploy/release timeout of the service


S, A = State, Action

#: (state, action) -> new state. Anything else is illegal.
TRANSITIONS: dict[tuple[State, Action], State] = {
    (S.DISCOVERED, A.ENROLL): S.READY,
    (S.READY, A.ALLOCATE): S.ALLOCATED,
    (S.ALLOCATED, A.DEPLOY): S.DEPLOYING,
    (S.ALLOCATED, A.RELEASE): S.READY,          # nothing was written: no wipe needed
    (S.ALLOCATED, A.RELEASE_NOWIPE): S.READY,
    (S.DEPLOYING, A.AGENT_SUCCEEDED): S.DEPLOYED,
    (S.DEPLOYING, A.AGENT_FAILED): S.DEPLOY_FAILED,
    (S.DEPLOYING, A.TIMEOUT): S.DEPLOY_FAILED,
    (S.DEPLOYING, A.RELEASE): S.RELEASING,      # abandon the deploy (its token is revoked) and wipe what it wrote
    (S.DEPLOY_FAILED, A.DEPLOY): S.DEPLOYING,   # retry
    (S.DEPLOY_FAILED, A.RELEASE): S.RELEASING,
    (S.DEPLOYED, A.RELEASE): S.RELEASING,
    (S.RELEASING, A.AGENT_SUCCEEDED): S.READY,
    (S.RELEASING, A.AGENT_FAILED): S.RELEASE_FAILED,
    (S.RELEASING, A.TIMEOUT): S.RELEASE_FAILED,
    (S.RELEASE_FAILED, A.RELEASE): S.RELEASING,  # retry
}

#: Actions the service takes by itself: never applied to a node in maintenance.
AUTOMATIC_ACTIONS = frozenset({A.TIMEOUT})
#: Actions refused for a node in maintenance (it is out of the pool).
REFUSED_IN_MAINTENANCE = frozenset({A.ALLOCATE}) | AUTOMATIC_ACTIONS
#: States in which the deploy agent runs, and its mode there.
AGENT_MODES = {S.DEPLOYING: "deploy", S.RELEASING: "wipe"}
#: States whose node may be deleted without force.
DELETABLE = frozenset({S.DISCOVERED, S.READY})


class IllegalTransition(Exception):
    """A transition that the table (or the maintenance flag) does not allow."""

    def __init__(self, node: str, state: State | str, action: Action | str, request: str | None = None,
                 reason: str | None = None):
        self.node, self.state = node, State(state)
        self.action = Action(action)
        self.request = request
        legal = legal_actions(self.state)
        asked = f"{self.action.value}" + (f" ({request})" if request else "")
        if reason:
            msg = f"node '{node}' in state '{self.state.value}': cannot {asked}: {reason}"
        else:
            msg = (f"node '{node}' is in state '{self.state.value}': cannot {asked}; "
                   f"legal from '{self.state.value}': {', '.join(a.value for a in legal) or 'nothing'}")
        super().__init__(msg)


def legal_actions(state: State | str) -> list[Action]:
    state = State(state)
    return [a for (s, a) in TRANSITIONS if s == state]


def target_state(state: State | str, action: Action | str) -> State | None:
    """The state ``action`` leads to from ``state``, or None when it is illegal."""
    return TRANSITIONS.get((State(state), Action(action)))


def check(node: str, state: State | str, action: Action | str, *, maintenance: bool = False,
          request: str | None = None) -> State:
    """Return the new state for ``action`` or raise :class:`IllegalTransition`."""
    action = Action(action)
    new = target_state(state, action)
    if new is None:
        raise IllegalTransition(node, state, action, request)
    if maintenance and action in REFUSED_IN_MAINTENANCE:
        raise IllegalTransition(node, state, action, request, reason="the node is in maintenance")
    return new
