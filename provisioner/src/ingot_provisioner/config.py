"""Service configuration: a YAML file, overridden by ``INGOT_PROVISIONER_<KEY>`` environment variables."""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

ENV_PREFIX = "INGOT_PROVISIONER_"
DEFAULT_CONFIG = "/etc/ingot-provisioner/config.yml"
_URL_RE = re.compile(r"^https?://[^\s\"'<>\\]+$")
_VIEW_PATH_RE = re.compile(r"^(/[a-z0-9][a-z0-9_-]{0,62}){1,4}$")
_RESERVED_PATHS = ("/api", "/boot", "/discovery", "/images", "/ramdisk", "/agent", "/docs", "/redoc", "/openapi.json")


class ConfigError(Exception):
    pass


class Settings(BaseModel):
    """Every key of the configuration file (all optional but the admin token)."""

    model_config = ConfigDict(extra="forbid")

    listen_address: str = Field("127.0.0.1", description="address uvicorn binds")
    port: int = Field(8080, ge=1, le=65535)
    database_url: str = Field("sqlite:////var/lib/ingot-provisioner/registry.db",
                              description="SQLAlchemy URL: sqlite:///PATH (default) or postgresql://...")
    admin_token: Optional[SecretStr] = Field(None, description="bearer token of the admin API")
    admin_token_file: Optional[str] = Field(None, description="file holding the admin token (first line)")
    image_dir: str = Field("/var/lib/ingot-provisioner/images", description="image store served at /images/")
    ramdisk_dir: str = Field("/var/lib/ingot-provisioner/ramdisk", description="deploy ramdisk served at /ramdisk/")
    public_url: Optional[str] = Field(None, description="base URL nodes use (iPXE scripts, manifests); "
                                      "default http://LISTEN_ADDRESS:PORT")
    deploy_timeout: float = Field(1800, gt=0, description="seconds a deploy may take")
    release_timeout: Optional[float] = Field(None, gt=0, description="seconds a release (wipe) may take; "
                                             "default deploy_timeout")
    timeout_check_interval: float = Field(5, ge=0.05, le=300,
                                          description="seconds between the rounds of the worker that fails deploys "
                                                      "and releases past their deadline (0.05 to 300)")
    agent_target: str = Field("/disk", description="default ingot.target of the deploy agent")
    ramdisk_kernel_url: Optional[str] = Field(None, description="default PUBLIC_URL/ramdisk/vmlinuz")
    ramdisk_initrd_url: Optional[str] = Field(None, description="default PUBLIC_URL/ramdisk/initrd.img")
    ramdisk_args: str = Field("", description="extra kernel arguments of the deploy ramdisk")
    template_dir: Optional[str] = Field(None, description="directory of template overrides (same names)")
    root_login: bool = Field(True, description="cloud-init disable_root: false (root gets the SSH keys)")
    sqlite_synchronous: Literal["NORMAL", "FULL", "EXTRA"] = "FULL"
    sqlite_busy_timeout_ms: int = Field(30000, ge=0)
    auto_migrate: bool = Field(True, description="apply schema migrations when serve starts")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    provisioning_networks: list[str] = Field(
        ["127.0.0.0/8", "::1/128"], min_length=1, max_length=256,
        description="CIDRs (or ADDRESS/NETMASK) of the networks whose clients may use the unauthenticated boot, "
                    "discovery, image, ramdisk and agent routes; any other client gets 403. Default: loopback only")
    dhcp_lease_file: Optional[str] = Field(
        None, description="dnsmasq lease file of the provisioner's own DHCP: a deploy token is handed only to the "
                          "address leased to the booting MAC (when the file has a lease for it)")
    discovery_rate_limit: int = Field(30, ge=1, le=100000,
                                      description="discovery reports per minute from one source address")
    max_discovered_nodes: int = Field(1000, ge=1, le=1000000,
                                      description="discovery registers no new node while this many are discovered")
    view_enabled: bool = Field(True, description="serve the read-only web view (rack and node pages) at view_path")
    view_path: str = Field("/ui", description="path prefix of the web view (lower case, e.g. /ui)")
    view_token: Optional[SecretStr] = Field(None, description="read-only token of the web view (the admin token "
                                            "is accepted too)")
    view_token_file: Optional[str] = Field(None, description="file holding the view token (first line)")
    view_session_seconds: int = Field(43200, ge=60, le=30 * 86400,
                                      description="lifetime of the view's login cookie (HMAC-signed session)")
    view_stream_seconds: float = Field(300, ge=1, le=3600,
                                       description="an event stream (SSE) of the view ends after this long; the "
                                                   "browser reconnects and resumes from its last event")
    view_max_streams: int = Field(32, ge=1, le=10000, description="event streams open at once (more get 503)")

    @field_validator("provisioning_networks")
    @classmethod
    def _networks(cls, v):
        out = []
        for item in v:
            try:
                out.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not a network (CIDR like 10.252.0.0/24, or ADDRESS/NETMASK)") from None
        return out

    @field_validator("public_url", "ramdisk_kernel_url", "ramdisk_initrd_url")
    @classmethod
    def _url(cls, v):
        if v is not None:
            v = v.rstrip("/")
            if not _URL_RE.match(v):
                raise ValueError("must be an http(s) URL without whitespace or quotes")
        return v

    @field_validator("view_path")
    @classmethod
    def _view_path(cls, v):
        v = v.rstrip("/")
        if not _VIEW_PATH_RE.match(v):
            raise ValueError("must be a path like /ui (lower-case letters, digits, '-' and '_')")
        if any(v == p or v.startswith(p + "/") for p in _RESERVED_PATHS):
            raise ValueError(f"{v} is a path of the API ({', '.join(_RESERVED_PATHS)})")
        return v

    @field_validator("ramdisk_args", "agent_target")
    @classmethod
    def _one_line(cls, v):
        if any(c in v for c in "\r\n\"'\\") or "\x00" in v:
            raise ValueError("must be one line without quotes or backslashes")
        return v

    # derived values -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        host = self.listen_address
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def kernel_url(self) -> str:
        return self.ramdisk_kernel_url or f"{self.base_url}/ramdisk/vmlinuz"

    @property
    def initrd_url(self) -> str:
        return self.ramdisk_initrd_url or f"{self.base_url}/ramdisk/initrd.img"

    @property
    def effective_release_timeout(self) -> float:
        return self.release_timeout or self.deploy_timeout

    @property
    def networks(self) -> tuple:
        return tuple(ipaddress.ip_network(n) for n in self.provisioning_networks)

    def admin_token_value(self) -> str:
        return self.admin_token.get_secret_value() if self.admin_token else ""

    def view_token_value(self) -> str:
        return self.view_token.get_secret_value() if self.view_token else ""


def _coerce_env(name: str, raw: str):
    field = Settings.model_fields[name]
    ann = str(field.annotation)
    if "bool" in ann:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: not a boolean: {raw!r}")
    if ann.startswith("list["):
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def load_settings(path: str | None = None, env: dict | None = None, overrides: dict | None = None) -> Settings:
    """Read ``path`` (YAML mapping; a missing file is an error only when ``path`` was given explicitly),
    apply ``INGOT_PROVISIONER_*`` environment variables and ``overrides``, validate, read the token file."""
    env = os.environ if env is None else env
    data: dict = {}
    explicit = path is not None
    path = path or env.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"configuration {path}: must be a YAML mapping, got {type(loaded).__name__}")
        data.update(loaded)
    elif explicit:
        raise ConfigError(f"configuration file {path} does not exist")
    for name in Settings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env and env[key] != "":
            data[name] = _coerce_env(name, env[key])
    data.update(overrides or {})
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid configuration ({path}): {problems}") from None
    for name in ("admin_token", "view_token"):
        token_file = getattr(settings, name + "_file")
        if not getattr(settings, name) and token_file:
            setattr(settings, name, SecretStr(_read_token_file(name + "_file", token_file)))
    return settings


def _read_token_file(key: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.readline().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {key} {path}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"{key} {path} is empty")
    return token


def check_settings(settings: Settings) -> list[str]:
    """Problems that prevent serving (empty list when the configuration is usable)."""
    problems = []
    token = settings.admin_token_value()
    if not token:
        problems.append("no admin token: set admin_token, admin_token_file or INGOT_PROVISIONER_ADMIN_TOKEN")
    elif len(token) < 16:
        problems.append("the admin token is shorter than 16 characters")
    view_token = settings.view_token_value()
    if view_token and len(view_token) < 16:
        problems.append("the view token is shorter than 16 characters")
    url = settings.database_url
    if not (url.startswith("sqlite:") or url.startswith("postgresql") or url.startswith("postgres://")):
        problems.append("database_url must be sqlite:///PATH or postgresql://...")
    elif url.startswith("postgres"):
        try:
            import psycopg  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        except ImportError:
            problems.append("database_url is PostgreSQL but psycopg is not installed: pip install 'psycopg[binary]'")
    return problems
