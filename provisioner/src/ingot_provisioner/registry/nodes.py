"""The inventory: registering, reading, listing, updating and deleting nodes (their MACs, tags, facts, BMC)."""

from __future__ import annotations

import hashlib
import json
from typing import Optional

from sqlalchemy import String, func, insert, or_, select, type_coerce
from sqlalchemy.orm import Session

from .. import schemas
from ..db import Database
from ..errors import Conflict, Invalid, NotFound
from ..models import Event, Mac, Node, NodeTag, new_id, utcnow
from ..states import DELETABLE, State
from .events import add_event, iso


def node_dict(node: Node) -> dict:
    return {
        "id": node.id, "name": node.name, "macs": node.mac_list, "state": node.state,
        "maintenance": node.maintenance, "maintenance_reason": node.maintenance_reason,
        "pool": node.pool, "tags": node.tags, "facts": node.facts or {}, "bmc": node.bmc,
        "owner": node.owner, "allocation_name": node.allocation_name, "image": node.image,
        "hostname": node.hostname, "ip_address": node.ip_address,
        "ssh_host_keys": node.ssh_host_keys or {}, "docker_url": node.docker_url,
        "last_error": node.last_error, "deadline": iso(node.deadline),
        "created_at": iso(node.created_at), "updated_at": iso(node.updated_at),
        "state_changed_at": iso(node.state_changed_at),
        # what the current deploy was given (single-node answers only: lists leave them out)
        "ssh_keys": list(node.ssh_authorized_keys or []),
        "user_data_sha256": hashlib.sha256(node.user_data.encode("utf-8")).hexdigest() if node.user_data else None,
    }


def get_node(s: Session, ident: str, *, for_update: bool = False, db: Optional[Database] = None) -> Node:
    q = select(Node).where(or_(Node.id == ident, Node.name == ident))
    if for_update and db is not None and db.is_postgres:
        q = q.with_for_update(of=Node)
    node = s.scalars(q).first()
    if node is None:
        raise NotFound(f"node '{ident}' not found")
    return node


def set_facts(node: Node, facts: dict) -> None:
    node.facts = dict(facts)
    for key in ("cpus", "memory_mib", "disk_gib"):
        value = facts.get(key)
        setattr(node, key, value if isinstance(value, int) and not isinstance(value, bool) else None)


def _sync_rows(rows: list, current: dict, wanted: list, make) -> None:
    """Make a node's child rows (``current``: by key) exactly ``wanted``: drop the others, add the missing."""
    for key in list(current):
        if key not in wanted:
            rows.remove(current[key])
    for key in wanted:
        if key not in current:
            rows.append(make(key))


def set_tags(node: Node, tags: list[str]) -> None:
    _sync_rows(node.tag_rows, {t.tag: t for t in node.tag_rows}, sorted(set(tags)), lambda tag: NodeTag(tag=tag))


def set_macs(s: Session, node: Node, macs: list[str]) -> None:
    wanted = sorted(set(macs))
    taken = s.execute(select(Mac.mac, Node.name).join(Node).where(Mac.mac.in_(wanted), Mac.node_id != node.id)).all()
    if taken:
        raise Conflict("MAC " + ", ".join(f"{m} is taken by node '{n}'" for m, n in taken))
    _sync_rows(node.macs, {m.mac: m for m in node.macs}, wanted, lambda mac: Mac(mac=mac))


_LIST_COLUMNS = ("id", "name", "state", "maintenance", "maintenance_reason", "pool", "facts", "bmc", "owner",
                 "allocation_name", "image", "hostname", "ip_address", "ssh_host_keys", "docker_url", "last_error",
                 "deadline", "created_at", "updated_at", "state_changed_at")
_TIME_COLUMNS = frozenset({"deadline", "created_at", "updated_at", "state_changed_at"})
_JSON_COLUMNS = frozenset({"facts", "bmc", "ssh_host_keys"})


def _json_text(value: Optional[str]):
    return None if value is None or value == "null" else json.loads(value)


def _same(value):
    return value


def _sqlite_iso(value: Optional[str]) -> Optional[str]:
    """'2026-11-26 15:19:12.173721' (naive UTC, as UTCDateTime stores it) -> '2026-11-26T15:19:12.173721Z'."""
    if value is None:
        return None
    return value.replace(" ", "T", 1) + "Z"


def list_nodes(s: Session, *, state=None, pool=None, owner=None, limit=1000, offset=0) -> dict:
    """The node list, built from plain rows (no ORM objects): 10,000 nodes are one request of the inventory."""
    table = Node.__table__
    where = []
    if state:
        where.append(table.c.state == state)
    if pool:
        where.append(table.c.pool == pool)
    if owner:
        where.append(table.c.owner == owner)
    total = s.scalar(select(func.count()).select_from(table).where(*where))
    sqlite = s.get_bind().dialect.name == "sqlite"
    if sqlite:
        # SQLite keeps UTC timestamps as text: format them directly instead of parsing them into datetimes
        # (and JSON as text, parsed below: SQLAlchemy's per-row processing costs more than the query)
        cols = [type_coerce(table.c[c], String) if c in _TIME_COLUMNS or c in _JSON_COLUMNS else table.c[c]
                for c in _LIST_COLUMNS]
        when, load = _sqlite_iso, _json_text
    else:
        cols = [table.c[c] for c in _LIST_COLUMNS]
        when, load = iso, _same
    rows = s.execute(select(*cols).where(*where).order_by(table.c.name).limit(limit).offset(offset)).all()
    if not rows:
        return {"items": [], "total": total}
    macs: dict = {}
    tags: dict = {}
    if len(rows) == total:  # the whole registry (the inventory's case): no IN list needed
        mac_rows = s.execute(select(Mac.node_id, Mac.mac)).all()
        tag_rows = s.execute(select(NodeTag.node_id, NodeTag.tag)).all()
    else:
        ids = [r.id for r in rows]
        mac_rows, tag_rows = [], []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            mac_rows += s.execute(select(Mac.node_id, Mac.mac).where(Mac.node_id.in_(chunk))).all()
            tag_rows += s.execute(select(NodeTag.node_id, NodeTag.tag).where(NodeTag.node_id.in_(chunk))).all()
    for node_id, mac in mac_rows:
        macs.setdefault(node_id, []).append(mac)
    for node_id, tag in tag_rows:
        tags.setdefault(node_id, []).append(tag)
    items = []
    for (node_id, name, state_, maint, maint_reason, pool_, facts, bmc, owner_, alloc, image, hostname, ip, keys,
         docker_url, last_error, deadline, created, updated, changed) in rows:
        node_macs = macs.get(node_id, [])
        node_tags = tags.get(node_id, [])
        if len(node_macs) > 1:
            node_macs.sort()
        if len(node_tags) > 1:
            node_tags.sort()
        items.append({
            "id": node_id, "name": name, "macs": node_macs, "state": state_, "maintenance": bool(maint),
            "maintenance_reason": maint_reason, "pool": pool_, "tags": node_tags, "facts": load(facts) or {},
            "bmc": load(bmc), "owner": owner_, "allocation_name": alloc, "image": image, "hostname": hostname,
            "ip_address": ip, "ssh_host_keys": load(keys) or {}, "docker_url": docker_url, "last_error": last_error,
            "deadline": when(deadline), "created_at": when(created), "updated_at": when(updated),
            "state_changed_at": when(changed),
        })
    return {"items": items, "total": total}


def create_node(s: Session, req: schemas.NodeCreate) -> Node:
    if s.scalar(select(Node.id).where(Node.name == req.name)):
        raise Conflict(f"node name '{req.name}' is taken")
    now = utcnow()
    node = Node(name=req.name, state=req.state, pool=req.pool, bmc=req.bmc.model_dump() if req.bmc else None,
                created_at=now, updated_at=now, state_changed_at=now, maintenance=False, deploy_generation=0)
    set_facts(node, req.facts)
    s.add(node)
    set_macs(s, node, req.macs)
    set_tags(node, req.tags)
    s.flush()
    add_event(s, node, "created", f"node registered in state {req.state}",
              {"macs": node.mac_list, "pool": req.pool, "tags": node.tags})
    return node


def create_nodes_bulk(s: Session, nodes: list[schemas.NodeCreate]) -> int:
    """Register many nodes in one transaction (all or nothing), with set-based checks and inserts."""
    names = [n.name for n in nodes]
    macs = [m for n in nodes for m in set(n.macs)]
    for label, values in (("node name", names), ("MAC", macs)):
        seen, dups = set(), set()
        for v in values:
            (dups if v in seen else seen).add(v)
        if dups:
            raise Conflict(f"{label} given twice in the request: {', '.join(sorted(dups)[:5])}")
    for i in range(0, len(names), 500):
        taken = s.scalars(select(Node.name).where(Node.name.in_(names[i:i + 500]))).all()
        if taken:
            raise Conflict(f"node name '{taken[0]}' is taken")
    for i in range(0, len(macs), 500):
        taken = s.execute(select(Mac.mac, Node.name).join(Node).where(Mac.mac.in_(macs[i:i + 500]))).first()
        if taken:
            raise Conflict(f"MAC {taken[0]} is taken by node '{taken[1]}'")
    now = utcnow()
    node_rows, mac_rows, tag_rows, event_rows = [], [], [], []
    for n in nodes:
        node_id = new_id()
        facts = dict(n.facts)
        node_rows.append({
            "id": node_id, "name": n.name, "state": n.state, "maintenance": False, "pool": n.pool, "facts": facts,
            "cpus": _int_fact(facts, "cpus"), "memory_mib": _int_fact(facts, "memory_mib"),
            "disk_gib": _int_fact(facts, "disk_gib"), "bmc": n.bmc.model_dump() if n.bmc else None,
            "deploy_generation": 0, "created_at": now, "updated_at": now, "state_changed_at": now})
        mac_rows += [{"mac": m, "node_id": node_id} for m in sorted(set(n.macs))]
        tag_rows += [{"node_id": node_id, "tag": t} for t in sorted(set(n.tags))]
        event_rows.append({"node_id": node_id, "time": now, "kind": "created",
                           "message": f"node registered in state {n.state} (bulk)",
                           "data": {"macs": sorted(set(n.macs)), "pool": n.pool, "tags": sorted(set(n.tags))}})
    s.execute(insert(Node), node_rows)
    if mac_rows:
        s.execute(insert(Mac), mac_rows)
    if tag_rows:
        s.execute(insert(NodeTag), tag_rows)
    s.execute(insert(Event), event_rows)
    return len(node_rows)


def _int_fact(facts: dict, key: str) -> Optional[int]:
    value = facts.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def update_node(s: Session, node: Node, req: schemas.NodePatch) -> Node:
    fields = req.model_dump(exclude_unset=True)
    changes = {}
    for key, value in fields.items():
        if key == "tags":
            if value is None:
                value = []
            if sorted(set(value)) != node.tags:
                changes[key] = sorted(set(value))
                set_tags(node, value)
        elif key == "macs":
            value = value or []
            if sorted(set(value)) != node.mac_list:
                changes[key] = sorted(set(value))
                set_macs(s, node, value)
        elif key == "facts":
            value = value or {}
            if value != (node.facts or {}):
                changes[key] = "updated"
                set_facts(node, value)
        elif key == "maintenance":
            if value is None:
                raise Invalid("maintenance must be true or false")
            if bool(value) != node.maintenance:
                node.maintenance = bool(value)
                changes[key] = bool(value)
                if not value and "maintenance_reason" not in fields:
                    node.maintenance_reason = None
        elif key == "pool":
            if value is None:
                raise Invalid("pool may not be null")
            if value != node.pool:
                changes[key] = node.pool = value
        elif key == "bmc":
            if value != node.bmc:
                node.bmc = value
                changes[key] = value
        elif getattr(node, key) != value:
            setattr(node, key, value)
            changes[key] = value
    if changes:
        node.updated_at = utcnow()
        if "maintenance" in changes:
            on = changes["maintenance"]
            reason = node.maintenance_reason
            add_event(s, node, "maintenance", ("maintenance on" if on else "maintenance off")
                      + (f": {reason}" if on and reason else ""), {"maintenance": on, "reason": reason})
        other = {k: v for k, v in changes.items() if k != "maintenance"}
        if other:
            add_event(s, node, "updated", "updated " + ", ".join(sorted(other)), other)
    return node


def delete_node(s: Session, node: Node, force: bool) -> None:
    if State(node.state) not in DELETABLE and not force:
        raise Conflict(f"node '{node.name}' is in state '{node.state}': delete refused (only discovered or "
                       f"ready nodes are deleted without force=true)")
    s.delete(node)
