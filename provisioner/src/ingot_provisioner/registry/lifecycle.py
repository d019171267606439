"""The lifecycle of a node: every state change goes through :func:`apply` (and so through the table in
:mod:`..states`); enroll, deploy and release start transitions, :func:`reap_overdue` ends deploys and releases
past their deadline (run by the periodic worker of :mod:`..periodic`)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import schemas
from ..bootart import UserDataError, generate_host_keys, parse_user_data
from ..config import Settings
from ..db import Database
from ..errors import Invalid, NotFound
from ..models import Image, Node, utcnow
from ..states import AGENT_MODES, Action, State, check
from .events import add_event, iso
from .nodes import set_tags
from .tokens import revoke_tokens

log = logging.getLogger("ingot_provisioner.registry")


def apply(s: Session, node: Node, action: Action, *, request: str, message: str = "",
          data: Optional[dict] = None) -> State:
    """Apply a transition of the table to ``node`` (raises IllegalTransition), with an event."""
    old = State(node.state)
    new = check(node.name, old, action, maintenance=node.maintenance, request=request)
    now = utcnow()
    node.state = new.value
    node.state_changed_at = now
    node.updated_at = now
    payload = {"from": old.value, "to": new.value, "action": action.value, "request": request}
    payload.update(data or {})
    add_event(s, node, "transition", message or f"{old.value} -> {new.value} ({action.value})", payload)
    if new not in AGENT_MODES:
        node.deadline = None
        revoke_tokens(s, node, f"{action.value}: {old.value} -> {new.value}")
    return new


def clear_allocation(node: Node) -> None:
    node.owner = node.allocation_name = node.image = node.hostname = None
    node.ssh_authorized_keys = node.user_data = None
    node.ssh_host_keys = node.ssh_host_keys_private = None
    node.ip_address = node.docker_url = None
    node.deadline = None


def enroll(s: Session, node: Node, req: Optional[schemas.Enroll], request: str) -> Node:
    apply(s, node, Action.ENROLL, request=request, message="enrolled: discovered -> ready")
    if req is not None:
        if req.pool is not None:
            node.pool = req.pool
        if req.tags is not None:
            set_tags(node, req.tags)
    return node


def deploy(s: Session, node: Node, req: schemas.DeployRequest, settings: Settings, request: str) -> Node:
    image = s.get(Image, req.image)
    if image is None:
        raise NotFound(f"image '{req.image}' not found (node '{node.name}', state '{node.state}', "
                       f"request deploy)")
    try:
        extra = parse_user_data(req.user_data)
    except UserDataError as exc:
        raise Invalid(f"node '{node.name}': {exc}", code="invalid_user_data") from None
    hostname = req.hostname or (node.allocation_name or node.name).lower()
    try:
        hostname = schemas.validate_hostname(hostname)
    except ValueError:
        raise Invalid(f"node '{node.name}': '{hostname}' is not a valid hostname: pass hostname") from None
    if "hostname" in extra and str(extra["hostname"]).lower() != hostname.split(".")[0]:
        raise Invalid(f"node '{node.name}': user_data hostname '{extra['hostname']}' conflicts with the deploy "
                      f"hostname '{hostname}' (set hostname in the request instead)", code="invalid_user_data")
    apply(s, node, Action.DEPLOY, request=request,
          message=f"deploy of image '{image.name}' requested", data={"image": image.name})
    public, private = generate_host_keys()
    node.image = image.name
    node.hostname = hostname
    node.ssh_authorized_keys = list(req.ssh_keys)
    node.user_data = req.user_data
    node.ssh_host_keys, node.ssh_host_keys_private = public, private
    node.deploy_generation = (node.deploy_generation or 0) + 1
    node.deadline = utcnow() + dt.timedelta(seconds=settings.deploy_timeout)
    node.last_error = None
    add_event(s, node, "host_keys", "generated the pinned SSH host key (ed25519)", {"ssh_host_keys": public})
    return node


def release(s: Session, node: Node, req: Optional[schemas.Release], settings: Settings, request: str) -> Node:
    wipe = True if req is None else req.wipe
    action = Action.RELEASE if wipe else Action.RELEASE_NOWIPE
    old = node.state
    new = apply(s, node, action, request=request,
                message=f"release requested by owner '{node.owner}' ({'wipe' if wipe else 'no wipe'})")
    if new == State.READY:
        clear_allocation(node)
    elif new == State.RELEASING:
        node.deadline = utcnow() + dt.timedelta(seconds=settings.effective_release_timeout)
        node.last_error = None
        log.info("node %s: %s -> releasing (wipe)", node.name, old)
    return node


def reap_overdue(db: Database, settings: Settings) -> list[str]:
    """Mark deploys/releases past their deadline failed (not nodes in maintenance). Returns node names."""
    now = utcnow()
    with db.read() as s:
        ids = s.scalars(select(Node.id).where(Node.state.in_([State.DEPLOYING.value, State.RELEASING.value]),
                                              Node.maintenance.is_(False), Node.deadline.is_not(None),
                                              Node.deadline < now)).all()
    done = []
    for node_id in ids:
        with db.write() as s:
            q = select(Node).where(Node.id == node_id)
            if db.is_postgres:
                q = q.with_for_update(skip_locked=True, of=Node)
            node = s.scalars(q).first()
            if (node is None or node.maintenance or node.deadline is None or node.deadline >= utcnow()
                    or State(node.state) not in AGENT_MODES):
                continue
            what = "deploy" if node.state == State.DEPLOYING.value else "release (wipe)"
            limit = settings.deploy_timeout if node.state == State.DEPLOYING.value \
                else settings.effective_release_timeout
            msg = f"{what} timed out: not finished within {limit:g} s (deadline {iso(node.deadline)})"
            add_event(s, node, "timeout", msg, {"deadline": iso(node.deadline)})
            apply(s, node, Action.TIMEOUT, request="deploy timeout", message=msg)
            node.last_error = msg
            done.append(node.name)
            log.warning("node %s: %s", node.name, msg)
    return done
