"""The deploy agent's side: its manifest, the NoCloud seed of the deploy, and its progress and final reports
(which end the deploy or the wipe)."""

from __future__ import annotations

from typing import Optional

from sqlalchemy.orm import Session

from .. import schemas
from ..bootart import Renderer, base_cloud_config, merge_cloud_config, parse_user_data
from ..config import Settings
from ..errors import ApiError, Conflict
from ..models import DeployToken, Image, Node, utcnow
from ..states import Action
from .events import add_event
from .images import image_url
from .lifecycle import apply, clear_allocation


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
            clear_allocation(node)
    else:
        apply(s, node, Action.AGENT_FAILED, request=request, message=f"{what} failed: {message}"[:4096])
        node.last_error = f"{what} failed: {message}"[:4096]
    return {"node": node.name, "state": node.state, "token_revoked": True}
