"""The one-time deploy tokens: minted with a node's boot script, resolved to their node by the agent's requests,
revoked when the deploy or release they belong to ends. Only their SHA-256 is stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Optional

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..config import Settings
from ..db import Database
from ..errors import Conflict, Forbidden, Unauthorized
from ..models import DeployToken, Node, utcnow
from ..states import AGENT_MODES, State
from .events import add_event, iso

TOKEN_PREFIX = "idt_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def revoke_tokens(s: Session, node: Node, reason: str) -> int:
    res = s.execute(update(DeployToken)
                    .where(DeployToken.node_id == node.id, DeployToken.revoked_at.is_(None))
                    .values(revoked_at=utcnow(), revoke_reason=reason[:255]))
    if res.rowcount:
        add_event(s, node, "token", f"deploy token revoked: {reason}", {"revoked": res.rowcount})
    return res.rowcount


def mint_token(s: Session, node: Node, settings: Settings) -> str:
    """A new one-time token for the deploy/release ``node`` is in. Only the hash is stored.

    While the agent of this deploy/release attempt runs (its token was used and is still valid), no new token
    is minted: a second boot-script fetch must not cancel it; the controller starts a new attempt (deploy,
    release). A token not used yet is superseded (the node booted again before its agent started)."""
    mode = AGENT_MODES[State(node.state)]
    generation = node.deploy_generation or 0
    running = s.scalars(select(DeployToken).where(
        DeployToken.node_id == node.id, DeployToken.revoked_at.is_(None), DeployToken.used_at.is_not(None),
        DeployToken.mode == mode, DeployToken.generation == generation, DeployToken.expires_at > utcnow())).first()
    if running is not None:
        raise Conflict(f"node '{node.name}' is {node.state}: the agent of this {mode} is running (its token was "
                       f"used at {iso(running.used_at)}); no second token for the same attempt (start a new "
                       f"attempt from the controller, or wait for the deadline {iso(running.expires_at)})",
                       code="agent_running")
    revoke_tokens(s, node, "superseded: the node fetched its boot script again")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = node.deadline or (utcnow() + dt.timedelta(seconds=settings.deploy_timeout))
    s.add(DeployToken(node_id=node.id, token_hash=hash_token(token), mode=mode,
                      generation=generation, created_at=utcnow(), expires_at=expires))
    add_event(s, node, "token", f"one-time {mode} token issued with the iPXE script", {"mode": mode})
    return token


def token_node(s: Session, token: Optional[str], db: Database) -> tuple[Node, DeployToken]:
    """The node a deploy token belongs to. Unknown -> 401; revoked/expired/stale -> 403."""
    if not token:
        raise Unauthorized("missing deploy token (Authorization: Bearer <one-time deploy token>)")
    row = s.scalars(select(DeployToken).where(DeployToken.token_hash == hash_token(token))).first()
    if row is None:
        raise Unauthorized("unknown deploy token")
    q = select(Node).where(Node.id == row.node_id)
    if db.is_postgres:
        q = q.with_for_update(of=Node)
    node = s.scalars(q).first()
    if row.revoked_at is not None:
        raise Forbidden(f"deploy token of node '{node.name}' was revoked ({row.revoke_reason or 'ended'})",
                        code="token_revoked")
    if row.expires_at <= utcnow():
        raise Forbidden(f"deploy token of node '{node.name}' expired", code="token_expired")
    mode = AGENT_MODES.get(State(node.state))
    if mode != row.mode or row.generation != (node.deploy_generation or 0):
        raise Forbidden(f"deploy token of node '{node.name}' does not match its state '{node.state}'",
                        code="token_revoked")
    return node, row
