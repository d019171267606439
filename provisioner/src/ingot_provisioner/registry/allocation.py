"""Allocation: claiming one ready node that matches the constraints for an (owner, name), atomically."""

from __future__ import annotations

import logging

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError

from .. import schemas
from ..db import Database
from ..errors import Conflict, NoNodeAvailable
from ..models import Node, NodeTag
from ..states import Action, State
from .lifecycle import apply
from .nodes import node_dict

log = logging.getLogger("ingot_provisioner.registry")


def _constraints_text(req: schemas.AllocationRequest) -> str:
    parts = [f"pool={req.pool or '(any)'}", f"tags={sorted(set(req.tags))}"]
    for key in ("min_cpus", "min_memory_mib", "min_disk_gib"):
        if getattr(req, key) is not None:
            parts.append(f"{key}={getattr(req, key)}")
    return ", ".join(parts)


def allocate(db: Database, req: schemas.AllocationRequest, request: str) -> tuple[dict, bool]:
    """Claim one ready node for (owner, name), atomically. Returns (node, created)."""
    for _attempt in range(3):
        try:
            with db.write() as s:
                if db.is_postgres:
                    # requests for the same (owner, name) queue up here, so the second one sees the first's
                    # node instead of skipping its locked row and finding nothing
                    s.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"{req.owner}|{req.name}"))))
                existing = s.scalars(select(Node).where(Node.owner == req.owner,
                                                        Node.allocation_name == req.name)).first()
                if existing is not None:
                    return node_dict(existing), False
                q = select(Node.id).where(Node.state == State.READY.value, Node.maintenance.is_(False))
                if req.pool:
                    q = q.where(Node.pool == req.pool)
                for tag in sorted(set(req.tags)):
                    q = q.where(exists().where(NodeTag.node_id == Node.id, NodeTag.tag == tag))
                if req.min_cpus is not None:
                    q = q.where(Node.cpus >= req.min_cpus)
                if req.min_memory_mib is not None:
                    q = q.where(Node.memory_mib >= req.min_memory_mib)
                if req.min_disk_gib is not None:
                    q = q.where(Node.disk_gib >= req.min_disk_gib)
                q = q.order_by(Node.name).limit(1)
                if db.is_postgres:
                    # claim the row in the same transaction that sets the owner; concurrent
                    # allocators skip it instead of waiting for it
                    q = q.with_for_update(skip_locked=True, of=Node)
                node_id = s.scalar(q)
                if node_id is None:
                    raise NoNodeAvailable(f"no node available for owner '{req.owner}' name '{req.name}': "
                                          f"no ready node outside maintenance matches {_constraints_text(req)}")
                node = s.get(Node, node_id)
                apply(s, node, Action.ALLOCATE, request=request,
                      message=f"allocated to owner '{req.owner}' as '{req.name}'",
                      data={"owner": req.owner, "name": req.name})
                node.owner, node.allocation_name = req.owner, req.name
                s.flush()
                return node_dict(node), True
        except IntegrityError:
            # a concurrent request claimed a node for the same (owner, name) first: return that one
            log.info("allocation race for (%s, %s): returning the winner", req.owner, req.name)
            continue
    raise Conflict(f"allocation for owner '{req.owner}' name '{req.name}' kept conflicting; retry")
