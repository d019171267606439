"""The read-only web view: the rack page, a node page and their live event streams (server-sent events).

Who may call it: whoever holds the admin token or the view token (setting ``view_token``). A browser presents
the token once (the login form, or ``?token=`` on a page), gets an HttpOnly, SameSite=Strict cookie holding an
HMAC-signed session and is redirected to a URL without the token. Without a credential every route but the
login form answers 401 and says nothing about nodes. The view only reads: its routes are GETs, besides the
login POST, which writes nothing either. It never shows a secret: no deploy token (only hashes are stored),
no private host key, no user-data (its sha256 only), fact values whose key names a secret are masked, and event
messages go through :func:`.logsafe.redact`. Every value is HTML-escaped; the page's script sets text only.

Streams are bounded: each ends after ``view_stream_seconds`` (the browser's EventSource reconnects and resumes
from its Last-Event-ID), sends a comment every ``HEARTBEAT`` seconds when idle, holds only its last event id
per client, and at most ``view_max_streams`` are open at once (more get 503). See docs/provisioner-api.md."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import html
import json
import os
import re
import threading
import time
from typing import Annotated, Optional
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from . import boundary, registry, schemas
from .errors import Invalid, NotFound
from .logsafe import redact
from .models import Event, Image, Node, NodeTag, utcnow
from .states import State

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
COOKIE = "ingot_view"
POLL = 0.5            # seconds between two looks at the event table of an open stream
HEARTBEAT = 15.0      # seconds of silence after which a stream sends a comment line
BATCH = 200           # events per look
NODE_EVENTS = 200     # events on a node page (the newest)
LOGIN_RATE = 20       # refused login attempts a minute from one address
_SECRET_KEY = re.compile(r"(?i)pass(word|wd|phrase)?|secret|token|private|credential|api[_-]?key")
_BMC_KEYS = ("address", "port", "protocol", "system_id")
NodeId = Annotated[str, Path(max_length=63, description="node id (uuid) or name")]
_STATIC = {"view.js": "text/javascript; charset=utf-8", "view.css": "text/css; charset=utf-8"}
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


class ViewDenied(Exception):
    """No valid credential: a 401 page that links to the login form."""


class ViewRedirect(Exception):
    def __init__(self, response: Response):
        super().__init__("redirect")
        self.response = response


def esc(value) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


# sessions -----------------------------------------------------------------------------------------------
class Sessions:
    """Signed session cookies ``ROLE.EXPIRY.HMAC``. The key is derived from both tokens: changing either
    token ends every session."""

    def __init__(self, admin_token: str, view_token: str, lifetime: int):
        self.admin = admin_token.encode("utf-8")
        self.view = view_token.encode("utf-8")
        self.lifetime = lifetime
        self.key = hmac.new(self.admin, b"ingot-view-session\0" + self.view, hashlib.sha256).digest()

    def role_of_token(self, token: Optional[str]) -> Optional[str]:
        if not token:
            return None
        raw = token.encode("utf-8", "replace")
        if self.admin and hmac.compare_digest(raw, self.admin):
            return "admin"
        if self.view and hmac.compare_digest(raw, self.view):
            return "viewer"
        return None

    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode("ascii"), hashlib.sha256).hexdigest()

    def cookie(self, role: str) -> str:
        body = f"{role}.{int(time.time()) + self.lifetime}"
        return f"{body}.{self._sign(body)}"

    def role_of_cookie(self, value: Optional[str]) -> Optional[str]:
        if not value or len(value) > 200:
            return None
        parts = value.split(".")
        if len(parts) != 3 or parts[0] not in ("admin", "viewer") or not parts[1].isdigit():
            return None
        if not hmac.compare_digest(self._sign(f"{parts[0]}.{parts[1]}"), parts[2]):
            return None
        if int(parts[1]) < time.time():
            return None
        return parts[0]


# data -----------------------------------------------------------------------------------------------------
def _age(when: Optional[dt.datetime], now: dt.datetime) -> str:
    if when is None:
        return ""
    sec = max(0, int((now - when).total_seconds()))
    if sec < 60:
        return f"{sec}s"
    if sec < 3600:
        return f"{sec // 60}m"
    if sec < 86400:
        return f"{sec // 3600}h{(sec % 3600) // 60:02d}m"
    return f"{sec // 86400}d{(sec % 86400) // 3600}h"


def state_counts(s) -> dict:
    return dict(s.execute(select(Node.state, func.count()).group_by(Node.state)).all())


def max_event_id(s) -> int:
    return s.scalar(select(func.max(Event.id))) or 0


def rack_rows(s, state=None, pool=None, owner=None, limit=10000) -> tuple[list, int]:
    where = []
    if state:
        where.append(Node.state == state)
    if pool:
        where.append(Node.pool == pool)
    if owner:
        where.append(Node.owner == owner)
    total = s.scalar(select(func.count()).select_from(Node).where(*where))
    rows = s.execute(select(Node.id, Node.name, Node.allocation_name, Node.owner, Node.pool, Node.state,
                            Node.state_changed_at, Node.last_error, Node.ip_address, Node.docker_url,
                            Node.maintenance)
                     .where(*where).order_by(Node.name).limit(limit)).all()
    tags: dict = {}
    if rows:
        query = select(NodeTag.node_id, NodeTag.tag).order_by(NodeTag.tag)
        if len(rows) < total or where:
            ids = [r.id for r in rows]
            found = []
            for i in range(0, len(ids), 500):
                found += s.execute(query.where(NodeTag.node_id.in_(ids[i:i + 500]))).all()
        else:
            found = s.execute(query).all()
        for node_id, tag in found:
            tags.setdefault(node_id, []).append(tag)
    return [(r, tags.get(r.id, ())) for r in rows], total


def _progress(s, node: Node) -> Optional[dict]:
    """The deploy's progress: bytes written (latest agent report since the node went deploying) of the size."""
    if node.state not in (State.DEPLOYING.value, State.DEPLOYED.value):
        return None
    size = s.scalar(select(Image.size).where(Image.name == node.image)) if node.image else None
    if node.state == State.DEPLOYED.value:
        return {"bytes_written": size, "size": size, "done": True}
    since = s.scalar(select(func.max(Event.id)).where(Event.node_id == node.id, Event.kind == "transition"))
    rows = s.scalars(select(Event.data).where(Event.node_id == node.id, Event.kind == "agent_progress",
                                              Event.id > (since or 0)).order_by(Event.id.desc()).limit(20)).all()
    written = next((d["bytes_written"] for d in rows if isinstance(d, dict) and "bytes_written" in d), 0)
    return {"bytes_written": written, "size": size, "done": False}


def stream_batch(s, since: int, node_id: Optional[str]) -> list[dict]:
    q = (select(Event.id, Event.time, Event.kind, Event.message, Event.data, Node.id, Node.name, Node.state,
                Node.state_changed_at, Node.last_error, Node.ip_address, Node.docker_url, Node.owner,
                Node.allocation_name, Node.image, Node.maintenance, Image.size)
         .join(Node, Node.id == Event.node_id).outerjoin(Image, Image.name == Node.image)
         .where(Event.id > since))
    if node_id is not None:
        q = q.where(Event.node_id == node_id)
    out = []
    for (ev_id, when, kind, message, data, nid, name, state, changed, error, ip, docker, owner, alloc, image,
         maint, size) in s.execute(q.order_by(Event.id).limit(BATCH)).all():
        data = data if isinstance(data, dict) else {}
        shown = state
        if kind == "transition" and data.get("to") in State._value2member_map_:
            shown = data["to"]
        progress = None
        if kind == "agent_progress" and isinstance(data.get("bytes_written"), int):
            progress = {"bytes_written": data["bytes_written"], "size": size, "done": False}
        elif kind == "transition" and shown == State.DEPLOYED.value:
            progress = {"bytes_written": size, "size": size, "done": True}
        elif kind == "transition" and shown == State.DEPLOYING.value:
            progress = {"bytes_written": 0, "size": size, "done": False}
        out.append({
            "event": {"id": ev_id, "time": registry.iso(when), "kind": kind, "message": redact(message)},
            "node": {"id": nid, "name": name, "state": shown, "state_changed_at": registry.iso(changed),
                     "last_error": redact(error) if error else None, "ip_address": ip, "docker_url": docker,
                     "owner": owner, "allocation_name": alloc, "image": image, "maintenance": bool(maint)},
            "transition": kind == "transition",
            "progress": progress,
        })
    return out


# rendering ----------------------------------------------------------------------------------------------
def _page(base: str, title: str, body_attrs: str, content: str, script: bool = True) -> str:
    js = f'<script src="{esc(base)}/static/view.js" defer></script>' if script else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{esc(title)}</title><link rel="stylesheet" href="{esc(base)}/static/view.css">{js}</head>'
            f'<body data-base="{esc(base)}" {body_attrs}>{content}</body></html>\n')


def _header(base: str, title: str, role: Optional[str]) -> str:
    who = f'<span class="who">{esc(role)} (read-only view)</span> <a href="{esc(base)}/logout">log out</a>' \
        if role else ""
    return (f'<header><h1><a href="{esc(base)}/">ingot.metal</a> · {esc(title)}</h1>'
            f'<span id="live" class="live" title="live updates">static</span> {who}</header>')


def _state(state: str) -> str:
    return f'<span class="state st-{esc(state)}">{esc(state)}</span>'


def render_rack(base: str, role: str, rows: list, total: int, counts: dict, since: int, filters: dict) -> str:
    now = utcnow()
    parts = [_header(base, "rack", role)]
    parts.append('<nav id="counts" class="counts">')
    all_count = sum(counts.values())
    parts.append(f'<a class="count" href="{esc(base)}/">all <b id="count-all">{all_count}</b></a>')
    for st in State:
        parts.append(f'<a class="count st-{st.value}" href="{esc(base)}/?state={st.value}">{st.value} '
                     f'<b id="count-{st.value}" data-state="{st.value}">{counts.get(st.value, 0)}</b></a>')
    parts.append("</nav>")
    options = "".join(f'<option value="{st.value}"{" selected" if filters.get("state") == st.value else ""}>'
                      f'{st.value}</option>' for st in State)
    parts.append(f'<form class="filters" method="get" action="{esc(base)}/">'
                 f'<label>state <select name="state"><option value="">any</option>{options}</select></label> '
                 f'<label>pool <input name="pool" value="{esc(filters.get("pool"))}" maxlength="63"></label> '
                 f'<label>owner <input name="owner" value="{esc(filters.get("owner"))}" maxlength="128"></label> '
                 f'<button type="submit">filter</button></form>')
    shown = f"{len(rows)} of {total} nodes" if len(rows) < total else f"{total} nodes"
    parts.append(f'<p class="shown" id="shown">{shown}</p>')
    parts.append('<table id="nodes" class="nodes"><thead><tr><th>name</th><th>allocation</th><th>owner</th>'
                 '<th>pool</th><th>tags</th><th>state</th><th>state age</th><th>last error</th><th>IP</th>'
                 '<th>Docker URL</th></tr></thead><tbody>')
    row_parts = []
    for r, tags in rows:
        nid = esc(r.id)
        maint = ' <span class="maint">maintenance</span>' if r.maintenance else ""
        changed = r.state_changed_at
        row_parts.append(
            f'<tr id="node-{nid}" data-id="{nid}"><td><a href="{esc(base)}/nodes/{nid}">{esc(r.name)}</a></td>'
            f'<td class="c-alloc">{esc(r.allocation_name)}</td><td class="c-owner">{esc(r.owner)}</td>'
            f'<td>{esc(r.pool)}</td><td>{esc(" ".join(tags))}</td>'
            f'<td class="c-state">{_state(r.state)}{maint}</td>'
            f'<td class="c-age" data-since="{esc(registry.iso(changed))}">{_age(changed, now)}</td>'
            f'<td class="c-error">{esc(redact(r.last_error)) if r.last_error else ""}</td>'
            f'<td class="c-ip">{esc(r.ip_address)}</td><td class="c-docker">{esc(r.docker_url)}</td></tr>')
    parts.append("".join(row_parts))
    parts.append("</tbody></table>")
    return _page(base, "ingot.metal rack", f'data-view="rack" data-since="{since}"', "".join(parts))


def _masked(key: str, value) -> str:
    if _SECRET_KEY.search(str(key)):
        return "***"
    if isinstance(value, (dict, list)):
        return json.dumps(_mask_nested(value), sort_keys=True)
    return "" if value is None else str(value)


def _mask_nested(value):
    if isinstance(value, dict):
        return {k: "***" if _SECRET_KEY.search(str(k)) else _mask_nested(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_nested(v) for v in value]
    return value


def _bytes(n: Optional[int]) -> str:
    return "?" if n is None else f"{n:,}"


def render_node(base: str, role: str, node: Node, progress: Optional[dict], events: list, since: int) -> str:
    now = utcnow()
    bmc = node.bmc or {}
    record = [
        ("name", esc(node.name)), ("id", esc(node.id)),
        ("state", f'<span id="n-state">{_state(node.state)}</span>'),
        ("state age", f'<span id="n-age" data-since="{esc(registry.iso(node.state_changed_at))}">'
                      f'{_age(node.state_changed_at, now)}</span>'),
        ("maintenance", esc(f"yes: {node.maintenance_reason or ''}" if node.maintenance else "no")),
        ("pool", esc(node.pool)), ("tags", esc(" ".join(node.tags))),
        ("owner", f'<span id="n-owner">{esc(node.owner)}</span>'),
        ("allocation", f'<span id="n-alloc">{esc(node.allocation_name)}</span>'),
        ("image", f'<span id="n-image">{esc(node.image)}</span>'), ("hostname", esc(node.hostname)),
        ("IP", f'<span id="n-ip">{esc(node.ip_address)}</span>'),
        ("Docker URL", f'<span id="n-docker">{esc(node.docker_url)}</span>'),
        ("last error", f'<span id="n-error">{esc(redact(node.last_error)) if node.last_error else ""}</span>'),
        ("MACs", esc(" ".join(node.mac_list))),
        ("BMC", esc(" ".join(f"{k}={bmc[k]}" for k in _BMC_KEYS if bmc.get(k) is not None))),
        ("SSH host keys (public)", "<br>".join(esc(f"{k}: {v}") for k, v in sorted((node.ssh_host_keys or {}).items()))),
        ("SSH keys given", esc(len(node.ssh_authorized_keys or []))),
        ("user-data sha256", esc(hashlib.sha256(node.user_data.encode("utf-8")).hexdigest() if node.user_data
                                 else "")),
        ("deadline", esc(registry.iso(node.deadline))), ("created", esc(registry.iso(node.created_at))),
        ("updated", f'<span id="n-updated">{esc(registry.iso(node.updated_at))}</span>'),
    ]
    facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(_masked(k, v))}</td></tr>"
                    for k, v in sorted((node.facts or {}).items()))
    written = (progress or {}).get("bytes_written") or 0
    size = (progress or {}).get("size")
    bar_max = size if size else max(written, 1)
    hidden = "" if progress else " hidden"
    progress_html = (f'<section id="progress-box" class="progress"{hidden}><h2>deploy progress</h2>'
                     f'<progress id="progress" max="{bar_max}" value="{min(written, bar_max)}"></progress> '
                     f'<span id="progress-text">{_bytes(written)} of {_bytes(size)} bytes</span></section>')
    ev_rows = "".join(
        f'<tr data-id="{e.id}"><td>{esc(registry.iso(e.time))}</td><td>{esc(e.kind)}</td>'
        f'<td>{esc(redact(e.message))}</td></tr>' for e in events)
    content = (_header(base, node.name, role)
               + '<p><a href="' + esc(base) + '/">← rack</a></p><div class="cols"><div>'
               + "<section><h2>record</h2><table class=\"record\">"
               + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in record)
               + "</table></section>"
               + f"<section><h2>facts</h2><table class=\"record\">{facts}</table></section></div><div>" + progress_html
               + '<section><h2>events</h2><table id="events" class="events"><thead><tr><th>time</th><th>kind</th>'
               + f"<th>message</th></tr></thead><tbody>{ev_rows}</tbody></table></section></div></div>")
    return _page(base, f"ingot.metal node {node.name}",
                 f'data-view="node" data-node="{esc(node.id)}" data-since="{since}"', content)


def render_login(base: str, message: str = "") -> str:
    msg = f'<p class="error">{esc(message)}</p>' if message else ""
    content = (_header(base, "log in", None) + msg
               + f'<form class="login" method="post" action="{esc(base)}/login">'
               '<label>admin or view token <input type="password" name="token" autocomplete="current-password" '
               'required maxlength="512"></label> <button type="submit">log in</button></form>')
    return _page(base, "ingot.metal view: log in", 'data-view="login"', content, script=False)


def _sse(name: str, data: dict, ev_id: Optional[int] = None) -> str:
    head = f"id: {ev_id}\n" if ev_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _since(value: Optional[str]) -> Optional[int]:
    if value and value.isascii() and value.isdigit() and int(value) <= schemas.MAX_INT32:
        return int(value)
    return None


# routes ---------------------------------------------------------------------------------------------------
def router(ctx) -> APIRouter:  # noqa: C901 - the routes of the view, one closure each
    """The view's routes under ``ctx.settings.view_path`` (fixed when the app is built)."""
    base = ctx.settings.view_path
    state = {"streams": 0}
    lock = threading.Lock()
    login_limit = boundary.RateLimit(LOGIN_RATE)

    def sessions() -> Sessions:
        key = (ctx.settings.admin_token_value(), ctx.settings.view_token_value(), ctx.settings.view_session_seconds)
        cached = state.get("sessions")
        if cached is None or cached[0] != key:
            cached = (key, Sessions(*key))
            state["sessions"] = cached
        return cached[1]

    def set_cookie(response: Response, request: Request, role: str) -> Response:
        ses = sessions()
        response.set_cookie(COOKIE, ses.cookie(role), max_age=ses.lifetime, path=base, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    def checked_login(request: Request, token: str) -> Optional[str]:
        """The role of a token presented to log in; refused attempts are limited per client address."""
        peer = request.client.host if request.client else "(unknown)"
        what = f"{request.method} {request.url.path}"
        login_limit.check(peer, what)
        role = sessions().role_of_token(token.strip())
        if role is None:
            login_limit.hit(peer, what)
        return role

    def viewer(request: Request) -> str:
        ses = sessions()
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            role = ses.role_of_token(auth[7:].strip())
            if role:
                return role
            raise ViewDenied()
        token = request.query_params.get("token")
        if token is not None and request.method == "GET":
            role = checked_login(request, token)
            if not role:
                raise ViewDenied()
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(rest) if rest else "")
            raise ViewRedirect(set_cookie(RedirectResponse(target, status_code=303, headers=HEADERS),
                                          request, role))
        role = ses.role_of_cookie(request.cookies.get(COOKIE))
        if role:
            return role
        raise ViewDenied()

    view = APIRouter(prefix=base, include_in_schema=False)

    @view.get("/login")
    def login_form():
        return HTMLResponse(render_login(base), headers=HEADERS)

    @view.post("/login")
    async def login(request: Request):
        try:
            form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
        except ValueError:
            form = {}
        role = checked_login(request, (form.get("token") or [""])[0])
        if not role:
            return HTMLResponse(render_login(base, "wrong token"), status_code=401, headers=HEADERS)
        return set_cookie(RedirectResponse(base + "/", status_code=303, headers=HEADERS), request, role)

    @view.get("/logout")
    def logout():
        response = RedirectResponse(base + "/login", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path=base)
        return response

    @view.get("/")
    def rack(role: str = Depends(viewer), state_: Optional[str] = Query(None, alias="state", max_length=20),
             pool: Optional[str] = Query(None, max_length=63), owner: Optional[str] = Query(None, max_length=128),
             limit: int = Query(10000, ge=1, le=100000)):
        if state_ and state_ not in State._value2member_map_:
            raise Invalid(f"state: must be one of {', '.join(s.value for s in State)}")
        with ctx.db.read() as s:
            since = max_event_id(s)
            rows, total = rack_rows(s, state_ or None, pool or None, owner or None, limit)
            counts = state_counts(s)
        filters = {"state": state_, "pool": pool, "owner": owner}
        return HTMLResponse(render_rack(base, role, rows, total, counts, since, filters), headers=HEADERS)

    @view.get("/nodes/{node_id}")
    def node_page(node_id: NodeId, role: str = Depends(viewer)):
        with ctx.db.read() as s:
            since = max_event_id(s)
            node = registry.get_node(s, node_id)
            progress = _progress(s, node)
            events = list(reversed(s.scalars(select(Event).where(Event.node_id == node.id)
                                             .order_by(Event.id.desc()).limit(NODE_EVENTS)).all()))
            page = render_node(base, role, node, progress, events, since)
        return HTMLResponse(page, headers=HEADERS)

    def static_file(name: str) -> Response:
        with open(os.path.join(WEB_DIR, name), "rb") as fh:
            return Response(fh.read(), media_type=_STATIC[name], headers=HEADERS)

    @view.get("/static/view.css")
    def style():
        """The style sheet, open like the login form that uses it (nothing about nodes is in it)."""
        return static_file("view.css")

    @view.get("/static/{name}")
    def static(name: str, _role: str = Depends(viewer)):
        if name not in _STATIC:
            raise NotFound(f"no static file '{name[:64]}' in the view")
        return static_file(name)

    def open_stream(request: Request, node_id: Optional[str], since_param: Optional[str]):
        if state["streams"] >= ctx.settings.view_max_streams:
            return PlainTextResponse(f"too many open event streams ({ctx.settings.view_max_streams}); retry later",
                                     status_code=503, headers={**HEADERS, "Retry-After": "5"})
        since = _since(request.headers.get("last-event-id"))
        if since is None:
            since = _since(since_param)
        if since is None:
            with ctx.db.read() as s:
                since = max_event_id(s)
        lifetime = ctx.settings.view_stream_seconds

        def fetch(after):
            with ctx.db.read() as s:
                batch = stream_batch(s, after, node_id)
                counts = state_counts(s) if node_id is None and any(b["transition"] for b in batch) else None
            return batch, counts

        async def gen():
            last = since
            with lock:  # counted once it runs: a response never started holds no slot
                if state["streams"] >= ctx.settings.view_max_streams:
                    yield _sse("end", {"last": last, "reason": "too many open event streams"}, last)
                    return
                state["streams"] += 1
            try:
                end = time.monotonic() + lifetime
                quiet = time.monotonic()
                yield f"retry: 2000\n: stream of events after {last}, for {lifetime:g} s\n\n"
                while time.monotonic() < end:
                    if await request.is_disconnected():
                        return
                    batch, counts = await run_in_threadpool(fetch, last)
                    for item in batch:
                        last = item["event"]["id"]
                        yield _sse("node", item, last)
                    if counts is not None:
                        yield _sse("counts", counts)
                    if batch:
                        quiet = time.monotonic()
                    elif time.monotonic() - quiet >= HEARTBEAT:
                        quiet = time.monotonic()
                        yield ": keep-alive\n\n"
                    if len(batch) < BATCH:
                        await asyncio.sleep(POLL)
                yield _sse("end", {"last": last, "reason": "stream lifetime reached; reconnect"}, last)
            finally:
                with lock:
                    state["streams"] -= 1

        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={**HEADERS, "X-Accel-Buffering": "no"})

    @view.get("/events")
    def rack_events(request: Request, _role: str = Depends(viewer),
                    since: Optional[str] = Query(None, max_length=12)):
        return open_stream(request, None, since)

    @view.get("/nodes/{node_id}/events")
    def node_events(request: Request, node_id: NodeId, _role: str = Depends(viewer),
                    since: Optional[str] = Query(None, max_length=12)):
        with ctx.db.read() as s:
            nid = registry.get_node(s, node_id).id
        return open_stream(request, nid, since)

    return view


def install(app, ctx) -> None:
    """Mount the view (when ``view_enabled``) and its error pages."""
    if not ctx.settings.view_enabled:
        return
    base = ctx.settings.view_path

    @app.exception_handler(ViewDenied)
    async def _denied(_request, _exc):
        body = _page(base, "ingot.metal view: login required", 'data-view="denied"',
                     _header(base, "login required", None)
                     + f'<p>This view needs the admin token or the view token: <a href="{esc(base)}/login">'
                       "log in</a>.</p>", script=False)
        return HTMLResponse(body, status_code=401, headers={**HEADERS, "WWW-Authenticate": "Bearer"})

    @app.exception_handler(ViewRedirect)
    async def _redirect(_request, exc):
        return exc.response

    app.include_router(router(ctx))
