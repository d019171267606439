"""What a booting machine asks for: its iPXE script (with a fresh deploy token when it is to run the agent), and
discovery (an unknown machine registers itself as ``discovered``)."""

from __future__ import annotations

import logging
import secrets
from typing import Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import boundary, schemas
from ..bootart import Renderer
from ..config import Settings
from ..db import Database
from ..errors import ApiError, Conflict
from ..models import Mac, Node, utcnow
from ..states import AGENT_MODES, State
from .events import add_event
from .nodes import create_node, set_facts, set_macs
from .tokens import mint_token

log = logging.getLogger("ingot_provisioner.registry")


def node_by_mac(s: Session, mac: str) -> Optional[Node]:
    return s.scalars(select(Node).join(Mac).where(Mac.mac == mac)).first()


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
        set_facts(node, req.facts)
        if bmc is not None and node.bmc is None:
            node.bmc = bmc
        elif bmc is not None and bmc != node.bmc:
            add_event(s, node, "discovery", "BMC in the discovery report ignored: only an admin changes a known "
                      "BMC (PATCH the node)", {"reported": bmc, "kept": node.bmc})
            log.warning("discovery for node %s reported BMC %s:%s, kept %s:%s (only an admin changes it)",
                        node.name, bmc.get("address"), bmc.get("port"), (node.bmc or {}).get("address"),
                        (node.bmc or {}).get("port"))
        set_macs(s, node, sorted(set(node.mac_list) | set(macs)))
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
