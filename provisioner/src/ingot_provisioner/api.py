"""The HTTP API (FastAPI): admin endpoints, boot and discovery, deploy agent endpoints.

Contract: docs/provisioner-api.md of the collection. Errors are JSON ``{"detail", "code"}``; malformed
input is a 4xx, never a 500."""


import hmac
import json
import logging
import os
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Optional

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, boundary, periodic, registry, schemas, view
from .bootart import Renderer
from .config import Settings
from .db import Database
from .errors import ApiError, NotFound, Unauthorized
from .logsafe import register_secret
from .states import IllegalTransition, State

log = logging.getLogger("ingot_provisioner.api")
AGENT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent", "agent.sh")
_bearer = HTTPBearer(auto_error=False, description="admin token")
_agent_bearer = HTTPBearer(auto_error=False, scheme_name="deployToken", description="one-time deploy token")
_ERROR_TEXT = {400: "malformed JSON body", 401: "missing or wrong token", 403: "refused (see the trust boundary)",
               404: "no such node, image, file or endpoint", 409: "conflict with the registry's state",
               413: "body larger than max_body_bytes", 422: "invalid request (detail names each field)",
               429: "too many requests (Retry-After)"}


def errors(*codes: int) -> dict:
    """OpenAPI responses of these error statuses: JSON {"detail", "code"}, like every error of the service."""
    return {code: {"model": schemas.ErrorOut, "description": _ERROR_TEXT[code]} for code in codes}


def text(media_type: str, description: str, fmt: Optional[str] = None) -> dict:
    schema = {"type": "string"} if fmt is None else {"type": "string", "format": fmt}
    return {"description": description, "content": {media_type: {"schema": schema}}}


ERRORS = errors(400, 401, 404, 409, 413, 422)
BULK_MAX_BODY = 32 * 1024 * 1024
NodeId = Annotated[str, Path(max_length=63, description="node id (uuid) or name")]


def _error(status: int, code: str, detail: str, headers=None) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


def _fmt_validation(errors) -> tuple[int, str, str]:
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            return 400, "invalid_json", f"malformed JSON body: {ctx.get('error', 'cannot parse')}"
    return 422, "validation_error", "invalid request: " + _fields(errors)


def _fields(errors) -> str:
    """'body.macs.0: not a MAC; body.bogus: unknown field' (ten at most): where and what, never the value."""
    parts = []
    for err in errors[:10]:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path"):
            where = loc[0] + ("." + ".".join(loc[1:]) if len(loc) > 1 else "")
        else:
            where = ".".join(loc) or "(request)"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{where}: {msg}")
    more = f" (+{len(errors) - 10} more)" if len(errors) > 10 else ""
    return "; ".join(parts) + more


class BodyLimit:
    """Refuse request bodies larger than ``max_bytes`` with 413 before any handler reads them.

    The refused body is read and thrown away (up to ``DRAIN_MAX`` bytes) before the answer: a server that
    answers and closes while the client still sends resets the connection, and clients such as Python's
    urllib then see a reset instead of the 413."""

    DRAIN_MAX = 64 * 1024 * 1024

    def __init__(self, app, max_bytes: int, per_path: Optional[dict] = None):
        self.app, self.default, self.per_path = app, max_bytes, per_path or {}

    async def _refuse(self, limit, scope, receive, send, more):
        drained = 0
        while more and drained <= self.DRAIN_MAX:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away: nobody to answer
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)
        headers = {"Connection": "close"}
        return await _error(413, "payload_too_large", f"request body larger than {limit} bytes",
                            headers)(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.per_path.get(scope.get("path"), self.default)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    return await self._refuse(limit, scope, receive, send, True)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > limit:
                return await self._refuse(limit, scope, receive, send, more)
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await self.app(scope, _replay([body], receive), send)


def _replay(messages, receive):
    async def _receive():
        if messages:
            return messages.pop(0)
        return await receive()
    return _receive


class BigFileResponse(FileResponse):
    chunk_size = 1024 * 1024


def _file_under(root: str, path: str, missing: str) -> BigFileResponse:
    """The regular file PATH inside the folder ROOT (symbolic links resolved first, so a link or a ``..`` that
    leads out of ROOT is not found), or 404 with MISSING."""
    root = os.path.realpath(root)
    full = os.path.realpath(os.path.join(root, path))
    if not full.startswith(root + os.sep) or not os.path.isfile(full):
        raise NotFound(missing)
    return BigFileResponse(full, media_type="application/octet-stream")


class Context:
    """What the handlers use: settings, database, renderer (rebindable, so tests reuse one app)."""

    def bind(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        self.renderer = Renderer(settings.template_dir)
        self.admin_token = settings.admin_token_value().encode()
        self.networks = settings.networks
        self.discovery_limit = boundary.RateLimit(settings.discovery_rate_limit)
        register_secret(settings.admin_token_value())
        register_secret(settings.view_token_value())


def create_app(settings: Settings, db: Optional[Database] = None, *, start_reaper: bool = True) -> FastAPI:
    if db is None:
        db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous,
                      busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    ctx = Context()
    ctx.bind(settings, db)
    deploy_timeouts = periodic.deploy_timeouts(ctx)

    @asynccontextmanager
    async def lifespan(_app):
        if start_reaper:
            deploy_timeouts.start()
        try:
            yield
        finally:
            deploy_timeouts.stop()

    app = FastAPI(title="ingot.metal provisioner", version=__version__, lifespan=lifespan,
                  description="Node registry, boot artifacts and deploy agent of the ingot.metal collection "
                              "(contract: docs/provisioner-api.md).")
    app.state.ctx = ctx
    app.state.deploy_timeouts = deploy_timeouts
    app.state.internal_errors = 0

    # errors ------------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return _error(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(IllegalTransition)
    async def _illegal(_request, exc: IllegalTransition):
        return _error(409, "illegal_transition", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        status, code, detail = _fmt_validation(exc.errors())
        return _error(status, code, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 401: "unauthorized"}
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}"
        if exc.status_code == 405:
            detail = f"method {request.method} not allowed on {request.url.path}"
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), detail,
                      getattr(exc, "headers", None))

    def internal_error(request, why: str, exc: Optional[Exception] = None) -> JSONResponse:
        app.state.internal_errors += 1
        ref = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s %s: %s", ref, request.method, request.url.path, why, exc_info=exc)
        return _error(500, "internal_error", f"internal error (reference {ref}; see the service log)")

    @app.exception_handler(ResponseValidationError)
    async def _bad_response(request, exc: ResponseValidationError):
        # where and what, never the values: a response may carry a seed with a private host key
        return internal_error(request, "the response does not fit its model: " + _fields(exc.errors()))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        return internal_error(request, type(exc).__name__, exc)

    app.add_middleware(BodyLimit, max_bytes=ctx.settings.max_body_bytes,
                       per_path={"/api/v1/nodes/bulk": max(ctx.settings.max_body_bytes, BULK_MAX_BODY)})

    # auth ----------------------------------------------------------------------------------------
    def require_admin(cred: Annotated[Optional[HTTPAuthorizationCredentials], Depends(_bearer)]):
        if cred is None or not cred.credentials:
            raise Unauthorized("missing admin token (Authorization: Bearer <admin token>)")
        if not ctx.admin_token or not hmac.compare_digest(cred.credentials.encode("utf-8", "replace"), ctx.admin_token):
            raise Unauthorized("wrong admin token")

    def agent_token(cred: Annotated[Optional[HTTPAuthorizationCredentials], Depends(_agent_bearer)]) -> Optional[str]:
        return cred.credentials if cred else None

    def what(request: Request) -> str:
        return f"{request.method} {request.url.path}"

    def peer(request: Request) -> Optional[str]:
        return request.client.host if request.client else None

    def provisioning_network(request: Request):
        """The boot, discovery, image, ramdisk and agent routes answer only the provisioning networks."""
        boundary.check_network(peer(request), ctx.networks, what(request))

    # admin API -----------------------------------------------------------------------------------
    public = APIRouter(prefix="/api/v1")
    admin = APIRouter(prefix="/api/v1", dependencies=[Depends(require_admin)], responses=ERRORS)

    @public.get("/health", response_model=schemas.Health, tags=["admin"])
    def health():
        return {"status": "ok", "version": __version__}

    @admin.get("/nodes", response_model=schemas.NodeList, tags=["nodes"])
    def list_nodes(state: Optional[State] = None,
                   pool: Annotated[Optional[str], Query(max_length=63)] = None,
                   owner: Annotated[Optional[str], Query(max_length=128)] = None,
                   limit: Annotated[int, Query(ge=1, le=100000)] = 1000,
                   offset: Annotated[int, Query(ge=0, le=10**9)] = 0):
        with ctx.db.read() as s:
            return registry.list_nodes(s, state=state.value if state else None, pool=pool, owner=owner,
                                       limit=limit, offset=offset)

    @admin.post("/nodes", status_code=201, response_model=schemas.NodeOut, tags=["nodes"])
    def create_node(body: schemas.NodeCreate):
        with ctx.db.write() as s:
            node = registry.create_node(s, body)
            out = registry.node_dict(node)
        log.info("node %s registered (%s)", out["name"], out["state"])
        return out

    @admin.post("/nodes/bulk", status_code=201, response_model=schemas.BulkOut, tags=["nodes"])
    def create_nodes_bulk(body: schemas.NodeBulkCreate):
        with ctx.db.write() as s:
            created = registry.create_nodes_bulk(s, body.nodes)
        log.info("%d nodes registered (bulk)", created)
        return {"created": created}

    @admin.get("/nodes/{node_id}", response_model=schemas.NodeOut, tags=["nodes"])
    def get_node(node_id: NodeId):
        with ctx.db.read() as s:
            return registry.node_dict(registry.get_node(s, node_id))

    @admin.patch("/nodes/{node_id}", response_model=schemas.NodeOut, tags=["nodes"])
    def patch_node(node_id: NodeId, body: schemas.NodePatch):
        with ctx.db.write() as s:
            node = registry.update_node(s, registry.get_node(s, node_id, for_update=True, db=ctx.db), body)
            s.flush()
            return registry.node_dict(node)

    @admin.delete("/nodes/{node_id}", status_code=204, tags=["nodes"])
    def delete_node(node_id: NodeId, force: bool = False):
        with ctx.db.write() as s:
            registry.delete_node(s, registry.get_node(s, node_id, for_update=True, db=ctx.db), force)
        return Response(status_code=204)

    @admin.post("/nodes/{node_id}/enroll", response_model=schemas.NodeOut, tags=["lifecycle"])
    def enroll(node_id: NodeId, request: Request, body: Optional[schemas.Enroll] = None):
        with ctx.db.write() as s:
            node = registry.enroll(s, registry.get_node(s, node_id, for_update=True, db=ctx.db), body, what(request))
            s.flush()
            return registry.node_dict(node)

    @admin.post("/allocations", status_code=201, response_model=schemas.NodeOut, tags=["lifecycle"],
                responses={200: {"model": schemas.NodeOut, "description": "already allocated to (owner, name)"}})
    def allocate(body: schemas.AllocationRequest, request: Request, response: Response):
        out, created = registry.allocate(ctx.db, body, what(request))
        if created:
            log.info("node %s allocated to %s/%s", out["name"], body.owner, body.name)
        response.status_code = 201 if created else 200
        return out

    @admin.post("/nodes/{node_id}/release", response_model=schemas.NodeOut, tags=["lifecycle"])
    def release(node_id: NodeId, request: Request, body: Optional[schemas.Release] = None):
        with ctx.db.write() as s:
            node = registry.release(s, registry.get_node(s, node_id, for_update=True, db=ctx.db), body, ctx.settings,
                                    what(request))
            s.flush()
            return registry.node_dict(node)

    @admin.post("/nodes/{node_id}/deploy", response_model=schemas.NodeOut, tags=["lifecycle"])
    def deploy(node_id: NodeId, body: schemas.DeployRequest, request: Request):
        with ctx.db.write() as s:
            node = registry.deploy(s, registry.get_node(s, node_id, for_update=True, db=ctx.db), body, ctx.settings,
                                   what(request))
            s.flush()
            out = registry.node_dict(node)
        log.info("node %s deploying image %s", out["name"], body.image)
        return out

    @admin.get("/nodes/{node_id}/events", response_model=schemas.EventList, tags=["nodes"])
    def node_events(node_id: NodeId, since: Annotated[Optional[str], Query(max_length=64)] = None,
                    limit: Annotated[int, Query(ge=1, le=100000)] = 1000):
        with ctx.db.read() as s:
            return registry.events(s, registry.get_node(s, node_id), since, limit)

    @admin.get("/images", response_model=schemas.ImageList, tags=["images"])
    def list_images():
        with ctx.db.read() as s:
            return registry.list_images(s)

    @admin.post("/images", status_code=201, response_model=schemas.ImageOut, tags=["images"])
    def create_image(body: schemas.ImageCreate):
        with ctx.db.write() as s:
            return registry.image_dict(registry.create_image(s, body))

    @admin.get("/images/{name}", response_model=schemas.ImageOut, tags=["images"])
    def get_image(name: Annotated[str, Path(max_length=128)]):
        with ctx.db.read() as s:
            return registry.image_dict(registry.get_image(s, name))

    @admin.put("/images/{name}", response_model=schemas.ImageOut, tags=["images"],
               responses={201: {"model": schemas.ImageOut, "description": "created"}})
    def put_image(name: Annotated[str, Path(max_length=128)], body: schemas.ImageCreate, response: Response):
        with ctx.db.write() as s:
            image, response.status_code = registry.put_image(s, name, body)
            return registry.image_dict(image)

    @admin.delete("/images/{name}", status_code=204, tags=["images"])
    def delete_image(name: Annotated[str, Path(max_length=128)]):
        with ctx.db.write() as s:
            registry.delete_image(s, name)
        return Response(status_code=204)

    # boot and discovery ----------------------------------------------------------------------------
    boot = APIRouter(tags=["boot"], dependencies=[Depends(provisioning_network)])

    @boot.get("/boot/ipxe", response_class=Response,
              responses={200: text("text/plain", "an iPXE script"), **errors(403, 409, 422)})
    def ipxe(mac: Annotated[schemas.Mac, Query(max_length=17, description="the booting NIC's MAC")],
             request: Request):
        return PlainTextResponse(registry.ipxe_script(ctx.db, ctx.renderer, ctx.settings, mac, peer(request)),
                                 headers={"Cache-Control": "no-store"})

    @boot.post("/discovery", status_code=201, response_model=schemas.DiscoveryOut,
               responses={200: {"model": schemas.DiscoveryOut, "description": "known node: nothing changed"},
                          **errors(400, 403, 409, 413, 422, 429)})
    def discovery(body: schemas.Discovery, request: Request, response: Response):
        ctx.discovery_limit.hit(peer(request) or "(unknown)", what(request))
        with ctx.db.write() as s:
            out, response.status_code = registry.discovery(s, body, ctx.settings)
        if response.status_code == 201:
            log.info("discovery: node %s (%s)", out["name"], ", ".join(body.macs))
        return out

    @boot.get("/images/{path:path}", response_class=Response,
              responses={200: text("application/octet-stream", "an image file", "binary"), **errors(403, 404, 422)})
    def image_file(path: Annotated[str, Path(max_length=1024)]):
        return _file_under(ctx.settings.image_dir, path, f"no image file '{path}' in the image store")

    @boot.get("/ramdisk/{path:path}", response_class=Response,
              responses={200: text("application/octet-stream", "a file of the deploy ramdisk", "binary"),
                         **errors(403, 404, 422)})
    def ramdisk_file(path: Annotated[str, Path(max_length=1024)]):
        return _file_under(ctx.settings.ramdisk_dir, path, f"no ramdisk file '{path}'")

    # deploy agent ------------------------------------------------------------------------------------
    agent = APIRouter(prefix="/agent", tags=["agent"], dependencies=[Depends(provisioning_network)])

    @agent.get("/agent.sh", response_class=Response,
               responses={200: text("text/x-shellscript", "the deploy agent (POSIX sh)"), **errors(403)})
    def agent_script():
        return FileResponse(AGENT_SCRIPT, media_type="text/x-shellscript")

    @agent.get("/manifest", response_model=schemas.Manifest,
               responses={200: {"description": "the manifest: JSON, or key=value lines with format=env",
                                "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **errors(401, 403, 409, 422)})
    def manifest(token: Annotated[Optional[str], Depends(agent_token)],
                 format: Annotated[str, Query(pattern="^(json|env)$")] = "json"):  # noqa: A002
        with ctx.db.write() as s:
            node, row = registry.token_node(s, token, ctx.db)
            out = registry.manifest(s, node, row, ctx.renderer, ctx.settings, with_seed=format == "json")
        if format == "env":
            return PlainTextResponse(_env_manifest(out))
        return out

    @agent.get("/seed/{name}", response_class=Response,
               responses={200: text("text/plain", "a NoCloud seed file"), **errors(401, 403, 404, 409, 422)})
    def seed(name: Annotated[str, Path(pattern="^(meta-data|user-data)$")],
             token: Annotated[Optional[str], Depends(agent_token)]):
        with ctx.db.write() as s:
            node, row = registry.token_node(s, token, ctx.db)
            if row.mode != "deploy":
                raise NotFound(f"node '{node.name}' is {node.state}: no seed in {row.mode} mode")
            return PlainTextResponse(registry.seed_files(s, node, ctx.renderer, ctx.settings, name)[name])

    @agent.post("/report", response_model=schemas.ReportOut, responses=errors(400, 401, 403, 409, 413, 422))
    def report(body: schemas.AgentReport, request: Request, token: Annotated[Optional[str], Depends(agent_token)]):
        with ctx.db.write() as s:
            node, row = registry.token_node(s, token, ctx.db)
            out = registry.report(s, node, row, body, peer(request), what(request))
        if body.status != "progress":
            log.info("node %s: agent reported %s (%s)", out["node"], body.status, out["state"])
        return out

    app.include_router(public)
    app.include_router(admin)
    app.include_router(boot)
    app.include_router(agent)
    view.install(app, ctx)
    return app


def _env_manifest(out: dict) -> str:
    """The manifest as ``key=value`` lines for the POSIX sh agent (values are single words)."""
    lines = [f"mode={out['mode']}", f"node={out['node']}", f"target={out['target']}",
             f"report_url={out['report_url']}"]
    image = out.get("image")
    if image:
        lines += [f"image_name={image['name']}", f"image_url={image['url']}", f"image_sha256={image['sha256']}",
                  f"image_format={image['format']}", f"image_size={image['size'] if image['size'] is not None else ''}"]
    for line in lines:
        if any(c in line for c in "\r\n\x00") or " " in line:
            raise ApiError("manifest value not representable as one word", status=409, code="conflict")
    return "\n".join(lines) + "\n"
