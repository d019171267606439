"""The node registry: every operation of the API as a function over a database transaction.

All state changes go through :func:`apply` (and so through the table in :mod:`.states`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
from typing import Optional

from sqlalchemy import String, exists, func, insert, or_, select, type_coerce, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import boundary, schemas
from .bootart import Renderer, UserDataError, base_cloud_config, generate_host_keys, merge_cloud_config, \
    parse_user_data
from .config import Settings
from .db import Database
from .errors import ApiError, Conflict, Forbidden, Invalid, NoNodeAvailable, NotFound, Unauthorized
from .models import DeployToken, Event, Image, Mac, Node, NodeTag, new_id, utcnow
from .states import AGENT_MODES, DELETABLE, Action, State, check

log = logging.getLogger("ingot_provisioner.registry")
TOKEN_PREFIX = "idt_"


def iso(value: Optional[dt.datetime]) -> Optional[str]:
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


# serialisation --------------------------------------------------------------------------------
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


def image_dict(image: Image) -> dict:
    return {"name": image.name, "url": image.url, "sha256": image.sha256, "format": image.format,
            "size": image.size, "created_at": iso(image.created_at)}


def event_dict(ev: Event) -> dict:
    return {"id": ev.id, "time": iso(ev.time), "kind": ev.kind, "message": ev.message, "data": ev.data}


# helpers ---------------------------------------------------------------------------------------
def add_event(s: Session, node: Node, kind: str, message: str, data: Optional[dict] = None) -> None:
    s.add(Event(node_id=node.id, kind=kind, message=message, data=data, time=utcnow()))


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


def revoke_tokens(s: Session, node: Node, reason: str) -> int:
    res = s.execute(update(DeployToken)
                    .where(DeployToken.node_id == node.id, DeployToken.revoked_at.is_(None))
                    .values(revoked_at=utcnow(), revoke_reason=reason[:255]))
    if res.rowcount:
        add_event(s, node, "token", f"deploy token revoked: {reason}", {"revoked": res.rowcount})
    return res.rowcount


def get_node(s: Session, ident: str, *, for_update: bool = False, db: Optional[Database] = None) -> Node:
    q = select(Node).where(or_(Node.id == ident, Node.name == ident))
    if for_update and db is not None and db.is_postgres:
        q = q.with_for_update(of=Node)
    node = s.scalars(q).first()
    if node is None:
        raise NotFound(f"node '{ident}' not found")
    return node


def _set_facts(node: Node, facts: dict) -> None:
    node.facts = dict(facts)
    for key in ("cpus", "memory_mib", "disk_gib"):
        value = facts.get(key)
        setattr(node, key, value if isinstance(value, int) and not isinstance(value, bool) else None)


def _set_tags(node: Node, tags: list[str]) -> None:
    wanted = sorted(set(tags))
    current = {t.tag: t for t in node.tag_rows}
    for tag in list(current):
        if tag not in wanted:
            node.tag_rows.remove(current[tag])
    for tag in wanted:
        if tag not in current:
            node.tag_rows.append(NodeTag(tag=tag))


def _set_macs(s: Session, node: Node, macs: list[str]) -> None:
    wanted = sorted(set(macs))
    taken = s.execute(select(Mac.mac, Node.name).join(Node).where(Mac.mac.in_(wanted), Mac.node_id != node.id)).all()
    if taken:
        raise Conflict("MAC " + ", ".join(f"{m} is taken by node '{n}'" for m, n in taken))
    current = {m.mac: m for m in node.macs}
    for mac in list(current):
        if mac not in wanted:
            node.macs.remove(current[mac])
    for mac in wanted:
        if mac not in current:
            node.macs.append(Mac(mac=mac))


# nodes ----------------------------------------------------------------------------------------
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
    _set_facts(node, req.facts)
    s.add(node)
    _set_macs(s, node, req.macs)
    _set_tags(node, req.tags)
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
                _set_tags(node, value)
        elif key == "macs":
            value = value or []
            if sorted(set(value)) != node.mac_list:
                changes[key] = sorted(set(value))
                _set_macs(s, node, value)
        elif key == "facts":
            value = value or {}
            if value != (node.facts or {}):
                changes[key] = "updated"
                _set_facts(node, value)
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


def enroll(s: Session, node: Node, req: Optional[schemas.Enroll], request: str) -> Node:
    apply(s, node, Action.ENROLL, request=request, message="enrolled: discovered -> ready")
    if req is not None:
        if req.pool is not None:
            node.pool = req.pool
        if req.tags is not None:
            _set_tags(node, req.tags)
    return node


# allocation -----------------------------------------------------------------------------------
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


def release(s: Session, node: Node, req: Optional[schemas.Release], settings: Settings, request: str) -> Node:
    wipe = True if req is None else req.wipe
    action = Action.RELEASE if wipe else Action.RELEASE_NOWIPE
    old = node.state
    new = apply(s, node, action, request=request,
                message=f"release requested by owner '{node.owner}' ({'wipe' if wipe else 'no wipe'})")
    if new == State.READY:
        _clear_allocation(node)
    elif new == State.RELEASING:
        node.deadline = utcnow() + dt.timedelta(seconds=settings.effective_release_timeout)
        node.last_error = None
        log.info("node %s: %s -> releasing (wipe)", node.name, old)
    return node


def _clear_allocation(node: Node) -> None:
    node.owner = node.allocation_name = node.image = node.hostname = None
    node.ssh_authorized_keys = node.user_data = None
    node.ssh_host_keys = node.ssh_host_keys_private = None
    node.ip_address = node.docker_url = None
    node.deadline = None


# deploy ---------------------------------------------------------------------------------------
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


# images ---------------------------------------------------------------------------------------
def create_image(s: Session, req: schemas.ImageCreate) -> Image:
    if s.get(Image, req.name) is not None:
        raise Conflict(f"image '{req.name}' exists")
    image = Image(name=req.name, url=req.url, sha256=req.sha256, format=req.format, size=req.size,
                  created_at=utcnow())
    s.add(image)
    s.flush()
    return image


def _image_users(s: Session, name: str) -> list[str]:
    """Nodes whose running deploy reads image ``name`` (their agents fetch it by this catalog entry)."""
    return list(s.scalars(select(Node.name).where(Node.image == name, Node.state == State.DEPLOYING.value)
                          .order_by(Node.name).limit(21)).all())


def _refuse_in_use(s: Session, name: str, what: str) -> None:
    users = _image_users(s, name)
    if users:
        more = " and more" if len(users) > 20 else ""
        raise Conflict(f"image '{name}' is in use: node(s) {', '.join(users[:20])}{more} are deploying it; {what} "
                       f"refused (wait for the deploy to end, or release the node)", code="image_in_use")


def delete_image(s: Session, name: str) -> None:
    image = get_image(s, name)
    _refuse_in_use(s, name, "delete")
    s.delete(image)


def put_image(s: Session, name: str, req: schemas.ImageCreate) -> tuple[Image, int]:
    """Create or replace image ``name`` in one transaction. Returns (image, 201 created | 200 replaced/same)."""
    if req.name != name:
        raise Invalid(f"body.name '{req.name}' differs from the image '{name}' of the URL")
    image = s.get(Image, name)
    if image is None:
        return create_image(s, req), 201
    fields = {"url": req.url, "sha256": req.sha256, "format": req.format, "size": req.size}
    if any(getattr(image, k) != v for k, v in fields.items()):
        _refuse_in_use(s, name, "replacing it")
        for key, value in fields.items():
            setattr(image, key, value)
        image.created_at = utcnow()
        s.flush()
    return image, 200


def get_image(s: Session, name: str) -> Image:
    image = s.get(Image, name)
    if image is None:
        raise NotFound(f"image '{name}' not found")
    return image


def image_url(image: Image, settings: Settings) -> str:
    if image.url.startswith(("http://", "https://")):
        return image.url
    return f"{settings.base_url}/images/{image.url.lstrip('/')}"


# boot ------------------------------------------------------------------------------------------
def node_by_mac(s: Session, mac: str) -> Optional[Node]:
    return s.scalars(select(Node).join(Mac).where(Mac.mac == mac)).first()


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


def ipxe_script(db: Database, renderer: Renderer, settings: Settings, mac: str, peer: Optional[str] = None) -> str:
    common = {"base_url": settings.base_url, "kernel_url": settings.kernel_url, "initrd_url": settings.initrd_url,
              "ramdisk_args": settings.ramdisk_args, "target": settings.agent_target}
    with db.read() as s:
        node = node_by_mac(s, mac)
        # unknown, or registered by an admin but never inspected (ingot.metal.discover registers a node with its
        # BMC and MACs, then PXE-boots it): the agent reports its hardware; once it has, a discovered node boots
        # its local disk like any node that is not being deployed or wiped
        if node is None or (node.state == State.DISCOVERED.value and not node.maintenance
                            and "cpus" not in (node.facts or {})):
            return renderer.render("ipxe-discover.ipxe.j2", mac=mac, **common)
        if State(node.state) not in AGENT_MODES:
            return renderer.render("ipxe-local.ipxe.j2", node=node.name, state=node.state,
                                   maintenance=node.maintenance)
        name = node.name
    boundary.check_lease(settings.dhcp_lease_file, mac, peer, name)
    with db.write() as s:
        node = node_by_mac(s, mac)
        if node is None or State(node.state) not in AGENT_MODES:  # changed meanwhile: ask again
            return ipxe_script(db, renderer, settings, mac, peer)
        token = mint_token(s, node, settings)
        target = str((node.facts or {}).get("deploy_target") or settings.agent_target)
        common["target"] = target
        return renderer.render("ipxe-agent.ipxe.j2", node=node.name, state=node.state,
                               mode=AGENT_MODES[State(node.state)], token=token, **common)


def discovery(s: Session, req: schemas.Discovery, settings: Settings) -> tuple[dict, int]:
    """Register an unknown machine as ``discovered``, or refresh the facts of a still-discovered one.

    A BMC address is set by the first report only: a later report never changes it (an admin does, with
    PATCH). No new node while ``max_discovered_nodes`` are discovered."""
    macs = sorted(set(req.macs))
    rows = s.execute(select(Mac.mac, Mac.node_id).where(Mac.mac.in_(macs))).all()
    node_ids = {r.node_id for r in rows}
    if len(node_ids) > 1:
        raise Conflict("the reported MACs belong to more than one node: " + ", ".join(sorted(r.mac for r in rows)))
    bmc = req.bmc.model_dump() if req.bmc is not None else None
    if node_ids:
        node = s.get(Node, node_ids.pop())
        if node.state != State.DISCOVERED.value or node.maintenance:
            why = "in maintenance" if node.maintenance else node.state
            add_event(s, node, "discovery", f"discovery report ignored: node is {why}", {"macs": macs})
            return {"id": node.id, "name": node.name, "state": node.state}, 200
        _set_facts(node, req.facts)
        if bmc is not None and node.bmc is None:
            node.bmc = bmc
        elif bmc is not None and bmc != node.bmc:
            add_event(s, node, "discovery", "BMC in the discovery report ignored: only an admin changes a known "
                      "BMC (PATCH the node)", {"reported": bmc, "kept": node.bmc})
            log.warning("discovery for node %s reported BMC %s:%s, kept %s:%s (only an admin changes it)",
                        node.name, bmc.get("address"), bmc.get("port"), (node.bmc or {}).get("address"),
                        (node.bmc or {}).get("port"))
        _set_macs(s, node, sorted(set(node.mac_list) | set(macs)))
        node.updated_at = utcnow()
        add_event(s, node, "discovery", "facts updated by discovery", {"facts": req.facts, "macs": macs})
        return {"id": node.id, "name": node.name, "state": node.state}, 201
    count = s.scalar(select(func.count()).select_from(Node).where(Node.state == State.DISCOVERED.value))
    if count >= settings.max_discovered_nodes:
        raise ApiError(f"discovery of {', '.join(macs)} refused: {count} nodes are already discovered (limit "
                       f"max_discovered_nodes={settings.max_discovered_nodes}); enroll or delete them first",
                       status=429, code="too_many_discovered", headers={"Retry-After": "60"})
    name = "node-" + macs[0].replace(":", "")
    if s.scalar(select(Node.id).where(Node.name == name)):
        name = f"{name}-{secrets.token_hex(2)}"
    node = create_node(s, schemas.NodeCreate.model_construct(
        name=name, macs=macs, bmc=req.bmc, pool="default", tags=[], facts=req.facts, state="discovered"))
    add_event(s, node, "discovery", "registered by discovery", {"facts": req.facts, "macs": macs})
    return {"id": node.id, "name": node.name, "state": node.state}, 201


# agent -----------------------------------------------------------------------------------------
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


def seed_files(s: Optional[Session], node: Node, renderer: Renderer, settings: Settings,
               *names: str) -> dict:
    """The NoCloud seed files ``names`` (default both). user-data carries the pinned host key's private half,
    which leaves the service at most once per deploy: handing it out (with a session ``s``) drops it from
    the registry, and a second request is a 409."""
    names = names or ("meta-data", "user-data")
    ctx = {"node": node.name, "generation": node.deploy_generation or 0,
           "instance_id": f"{node.id}-{node.deploy_generation or 0}", "hostname": node.hostname or node.name}
    out = {}
    if "meta-data" in names:
        out["meta-data"] = renderer.render("meta-data.j2", **ctx)
    if "user-data" in names:
        if node.ssh_host_keys and not node.ssh_host_keys_private:
            raise Conflict(f"node '{node.name}': the seed with the pinned host key of this deploy was already handed "
                           f"out (it leaves the service once per deploy); deploy again for a new key",
                           code="host_key_handed_out")
        extra = parse_user_data(node.user_data)
        base = base_cloud_config(hostname=node.hostname or node.name, ssh_keys=node.ssh_authorized_keys or [],
                                 host_public=node.ssh_host_keys or {}, host_private=node.ssh_host_keys_private or {},
                                 root_login=settings.root_login)
        if "hostname" in extra and str(extra["hostname"]).lower() != base["hostname"]:
            raise ApiError(f"node '{node.name}': user_data hostname conflicts with the deploy hostname",
                           status=409, code="conflict")
        cloud = merge_cloud_config(base, extra)
        out["user-data"] = renderer.render("user-data.j2", cloud_config=cloud, **ctx)
        if s is not None and node.ssh_host_keys_private:
            node.ssh_host_keys_private = None
            add_event(s, node, "host_keys", "the pinned host key's private half was handed to the agent (once per "
                      "deploy; the registry keeps only the public half now)")
    return out


def manifest(s: Session, node: Node, row: DeployToken, renderer: Renderer, settings: Settings,
             with_seed: bool = True) -> dict:
    if row.used_at is None:
        row.used_at = utcnow()
    target = str((node.facts or {}).get("deploy_target") or settings.agent_target)
    out = {"mode": row.mode, "node": node.name, "target": target, "image": None, "seed": None,
           "report_url": f"{settings.base_url}/agent/report"}
    if row.mode == "deploy":
        image = s.get(Image, node.image) if node.image else None
        if image is None:
            raise Conflict(f"node '{node.name}' is deploying image '{node.image}', which is no longer in the catalog")
        out["image"] = {"name": image.name, "url": image_url(image, settings), "sha256": image.sha256,
                        "format": image.format, "size": image.size}
        if with_seed:
            out["seed"] = seed_files(s, node, renderer, settings)
    add_event(s, node, "agent", f"agent fetched the {row.mode} manifest")
    return out


def report(s: Session, node: Node, row: DeployToken, req: schemas.AgentReport, peer: Optional[str],
           request: str) -> dict:
    message = req.message.replace("\x00", "")
    data = {"status": req.status, "mode": row.mode}
    for key in ("bytes_written", "sha256", "ip_address"):
        if getattr(req, key) is not None:
            data[key] = getattr(req, key)
    if row.used_at is None:
        row.used_at = utcnow()
    if req.status == "progress":
        add_event(s, node, "agent_progress", message or "progress", data)
        node.updated_at = utcnow()
        return {"node": node.name, "state": node.state, "token_revoked": False}
    what = "deploy" if row.mode == "deploy" else "wipe"
    status = req.status
    if status == "succeeded" and row.mode == "deploy" and req.sha256 and node.image:
        image = s.get(Image, node.image)
        if image is not None and req.sha256 != image.sha256:
            status = "failed"
            message = (f"agent reported success but sha256 {req.sha256} of image '{image.name}' is not the "
                       f"catalog's {image.sha256}: {message}")
    add_event(s, node, "agent_report", f"agent: {what} {status}: {message}"[:4096], data)
    if status == "succeeded":
        apply(s, node, Action.AGENT_SUCCEEDED, request=request, message=f"{what} succeeded")
        node.last_error = None
        if row.mode == "deploy":
            if req.ip_address or (not node.ip_address and peer):
                node.ip_address = req.ip_address or peer
        else:
            _clear_allocation(node)
    else:
        apply(s, node, Action.AGENT_FAILED, request=request, message=f"{what} failed: {message}"[:4096])
        node.last_error = f"{what} failed: {message}"[:4096]
    return {"node": node.name, "state": node.state, "token_revoked": True}


# timeouts --------------------------------------------------------------------------------------
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


def events(s: Session, node: Node, since: Optional[str], limit: int) -> dict:
    q = select(Event).where(Event.node_id == node.id)
    if since:
        if since.isascii() and since.isdigit():
            if int(since) > schemas.MAX_INT32:
                raise Invalid(f"since: event id {since[:20]} is out of range (at most {schemas.MAX_INT32})")
            q = q.where(Event.id > int(since))
        else:
            try:
                when = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise Invalid(f"since must be an event id or an ISO 8601 time, got {since[:40]!r}") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            try:
                when = when.astimezone(dt.timezone.utc)
            except OverflowError:
                raise Invalid(f"since: time {since[:40]!r} is out of range") from None
            q = q.where(Event.time > when)
    rows = s.scalars(q.order_by(Event.id).limit(limit)).all()
    return {"items": [event_dict(e) for e in rows]}
