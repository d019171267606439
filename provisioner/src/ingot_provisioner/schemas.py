"""Request and response models of the API (pydantic 2). Requests are strict and forbid unknown fields."""

from __future__ import annotations

import ipaddress
import json
import math
import re
import unicodedata
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from typing_extensions import NotRequired, TypedDict

from .states import State

NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
OWNER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:/+=-]{0,127}$"
IMAGE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$"
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
# the MAC rule as a JSON Schema pattern too (no back-reference: one separator throughout)
MAC_PATTERN = r"^(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$|^(?:[0-9a-fA-F]{2}-){5}[0-9a-fA-F]{2}$"
_MAC_RE = re.compile(MAC_PATTERN)
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_SSH_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(256|384|521)|"
                         r"sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) "
                         r"[A-Za-z0-9+/]+={0,3}( [^\r\n\x00]{0,255})?$")
_URL_RE = re.compile(r"^https?://[^\s\"'<>\\]{1,2000}$")
_IMAGE_FILE_RE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._+/-]{0,254}$")
_DOCKER_URL_RE = re.compile(r"^(tcp|https?|ssh|unix)://[^\s\"'<>\\]{1,240}$")

MAX_FACTS_BYTES = 16 * 1024
MAX_USER_DATA = 64 * 1024
# integers the registry stores: the columns are 32-bit on PostgreSQL, so the same bound on both databases
MAX_INT32 = 2**31 - 1
# any other integer in facts (JSON): what SQLite's and PostgreSQL's JSON keep without loss
MIN_INT64, MAX_INT64 = -(2**63), 2**63 - 1
# control characters (C0, DEL, C1), format characters (bidi overrides, zero-width), line/paragraph separators
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def check_text(value: str) -> str:
    """Refuse control characters: newlines, NUL, ESC, bidi overrides... (they end up in files and logs)."""
    for ch in value:
        if unicodedata.category(ch) in _CONTROL_CATEGORIES:
            raise ValueError(f"contains the control character U+{ord(ch):04X} (no control, format or "
                             f"line-break characters)")
    return value


def normalise_mac(value: str) -> str:
    if not _MAC_RE.fullmatch(value):
        raise ValueError("not a MAC address (expected six hex pairs separated by ':' or '-')")
    return value.replace("-", ":").lower()


def validate_hostname(value: str) -> str:
    if not _HOSTNAME_RE.fullmatch(value):
        raise ValueError("not a valid hostname (RFC 1123 labels of letters, digits and '-')")
    return value.lower()


def _ssh_key(value: str) -> str:
    value = value.strip(" ")
    if not _SSH_KEY_RE.fullmatch(value):
        raise ValueError("not an OpenSSH public key line ('ssh-ed25519 AAAA... comment')")
    return value


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("not an IP address") from None


def _image_url(value: str) -> str:
    check_text(value)
    if _URL_RE.fullmatch(value) or _IMAGE_FILE_RE.fullmatch(value.lstrip("/")):
        return value
    raise ValueError("must be an http(s) URL or a file name in the image store (no '..')")


def _docker_url(value: str) -> str:
    check_text(value)
    if not _DOCKER_URL_RE.fullmatch(value):
        raise ValueError("must be a URL like tcp://HOST:2376 without whitespace")
    return value


def _depth(obj, level=0) -> int:
    if isinstance(obj, dict):
        return max([_depth(v, level + 1) for v in obj.values()] or [level + 1])
    if isinstance(obj, list):
        return max([_depth(v, level + 1) for v in obj] or [level + 1])
    return level


def _fact_values(obj, where: str) -> None:
    """Every key and value of facts: no NaN/Infinity, integers in range, strings without control characters."""
    if isinstance(obj, dict):
        for key, item in obj.items():
            if not isinstance(key, str) or not 0 < len(key) <= 64:
                raise ValueError(f"{where}: fact names are 1-64 characters")
            try:
                check_text(key)
            except ValueError as exc:
                raise ValueError(f"{where}: fact name {key[:64]!r} {exc}") from None
            _fact_values(item, f"{where}.{key}")
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            _fact_values(item, f"{where}.{i}")
    elif isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"{where}: {obj} is not a finite number (NaN and Infinity are not JSON)")
    elif isinstance(obj, int) and not isinstance(obj, bool):
        if not MIN_INT64 <= obj <= MAX_INT64:
            raise ValueError(f"{where}: integer out of the 64-bit range")
    elif isinstance(obj, str):
        try:
            check_text(obj)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


def _facts(value: dict) -> dict:
    _fact_values(value, "facts")
    if len(json.dumps(value)) > MAX_FACTS_BYTES:
        raise ValueError(f"facts larger than {MAX_FACTS_BYTES} bytes of JSON")
    if _depth(value) > 5:
        raise ValueError("facts nested deeper than 5 levels")
    for key in ("cpus", "memory_mib", "disk_gib"):
        if key in value and value[key] is not None and (
                isinstance(value[key], bool) or not isinstance(value[key], int)
                or not 0 <= value[key] <= MAX_INT32):
            raise ValueError(f"facts.{key} must be an integer from 0 to {MAX_INT32}")
    return value


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]
Owner = Annotated[str, StringConstraints(pattern=OWNER_PATTERN, max_length=128)]
Tag = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]
ImageName = Annotated[str, StringConstraints(pattern=IMAGE_NAME_PATTERN, max_length=128)]
Mac = Annotated[str, StringConstraints(max_length=17), AfterValidator(normalise_mac),
                WithJsonSchema({"type": "string", "minLength": 17, "maxLength": 17, "pattern": MAC_PATTERN,
                                "description": "six hex pairs separated by ':' or '-' (one separator throughout); "
                                               "stored lower-case with ':'"})]
Hostname = Annotated[str, StringConstraints(max_length=253), AfterValidator(validate_hostname)]
SshKey = Annotated[str, StringConstraints(max_length=16384), AfterValidator(_ssh_key)]
IpAddress = Annotated[str, StringConstraints(max_length=64), AfterValidator(_ip)]
FACTS_RULES = (f"a JSON object of at most {MAX_FACTS_BYTES} bytes and 5 levels; names 1-64 characters; no NaN or "
               f"Infinity; integers within 64 bits; no control characters in names or strings; cpus, memory_mib "
               f"and disk_gib (allocation filters on them) integers from 0 to {MAX_INT32}")
_INT32 = {"type": "integer", "minimum": 0, "maximum": MAX_INT32}
Facts = Annotated[dict[str, Any], AfterValidator(_facts),
                  WithJsonSchema({"type": "object", "description": FACTS_RULES, "maxProperties": 4096,
                                  "properties": {"cpus": _INT32, "memory_mib": _INT32, "disk_gib": _INT32},
                                  "propertyNames": {"minLength": 1, "maxLength": 64}})]
OneLine = Annotated[str, AfterValidator(check_text)]
Sha256 = Annotated[str, StringConstraints(pattern=SHA256_PATTERN), AfterValidator(str.lower)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Bmc(Request):
    address: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:\[\]_-]+$")]
    port: int = Field(623, ge=1, le=65535)
    protocol: Literal["ipmi", "redfish"] = "ipmi"
    system_id: Optional[Annotated[str, StringConstraints(max_length=255, pattern=r"^[A-Za-z0-9._/-]+$")]] = None


class NodeCreate(Request):
    name: Name
    macs: list[Mac] = Field(default_factory=list, max_length=32)
    bmc: Optional[Bmc] = None
    pool: Name = "default"
    tags: list[Tag] = Field(default_factory=list, max_length=64)
    facts: Facts = Field(default_factory=dict)
    state: Literal["ready", "discovered"] = "ready"


class NodeBulkCreate(Request):
    nodes: list[NodeCreate] = Field(min_length=1, max_length=10000)


class NodePatch(Request):
    pool: Optional[Name] = None
    tags: Optional[list[Tag]] = Field(None, max_length=64)
    facts: Optional[Facts] = None
    bmc: Optional[Bmc] = None
    macs: Optional[list[Mac]] = Field(None, max_length=32)
    maintenance: Optional[bool] = None
    maintenance_reason: Optional[Annotated[str, StringConstraints(max_length=1024), AfterValidator(check_text)]] = None
    docker_url: Optional[Annotated[str, StringConstraints(max_length=255), AfterValidator(_docker_url)]] = None
    ip_address: Optional[IpAddress] = None


class Enroll(Request):
    pool: Optional[Name] = None
    tags: Optional[list[Tag]] = Field(None, max_length=64)


class AllocationRequest(Request):
    owner: Owner
    name: Name
    pool: Optional[Name] = None
    tags: list[Tag] = Field(default_factory=list, max_length=64)
    min_cpus: Optional[int] = Field(None, ge=0, le=MAX_INT32)
    min_memory_mib: Optional[int] = Field(None, ge=0, le=MAX_INT32)
    min_disk_gib: Optional[int] = Field(None, ge=0, le=MAX_INT32)


class Release(Request):
    wipe: bool = True


class DeployRequest(Request):
    image: ImageName
    ssh_keys: list[SshKey] = Field(default_factory=list, max_length=100)
    user_data: Optional[Annotated[str, StringConstraints(max_length=MAX_USER_DATA)]] = None
    hostname: Optional[Hostname] = None


class ImageCreate(Request):
    name: ImageName
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048), AfterValidator(_image_url)]
    sha256: Sha256
    format: Literal["tar", "tar.gz", "raw"]
    size: Optional[int] = Field(None, ge=0, le=1 << 50)


class Discovery(Request):
    macs: list[Mac] = Field(min_length=1, max_length=32)
    facts: Facts = Field(default_factory=dict)
    bmc: Optional[Bmc] = None


class AgentReport(Request):
    status: Literal["progress", "succeeded", "failed"]
    message: Annotated[str, StringConstraints(max_length=4096)] = ""
    bytes_written: Optional[int] = Field(None, ge=0, le=1 << 60)
    sha256: Optional[Sha256] = None
    ip_address: Optional[IpAddress] = None


# responses: every JSON route declares its model (response_model), and FastAPI checks each answer against it
# (one that does not fit is a 500, logged with the fields at fault). Nodes are TypedDicts: a list of 10,000 is
# checked in half the time model instances take --------------------------------------------------------------
class NodeOut(TypedDict):
    id: str
    name: str
    macs: list[str]
    state: State
    maintenance: bool
    maintenance_reason: Optional[str]
    pool: str
    tags: list[str]
    facts: dict[str, Any]
    bmc: Optional[dict[str, Any]]
    owner: Optional[str]
    allocation_name: Optional[str]
    image: Optional[str]
    hostname: Optional[str]
    ip_address: Optional[str]
    ssh_host_keys: dict[str, str]
    docker_url: Optional[str]
    last_error: Optional[str]
    deadline: Optional[str]
    created_at: str
    updated_at: str
    state_changed_at: str
    ssh_keys: NotRequired[Annotated[Optional[list[str]],
                                    Field(description="SSH keys of the current deploy (not in lists)")]]
    user_data_sha256: NotRequired[Annotated[Optional[str],
                                            Field(description="SHA-256 of the current deploy's user_data (not in "
                                                              "lists)")]]


class NodeList(TypedDict):
    items: list[NodeOut]
    total: int


class BulkOut(BaseModel):
    created: int


class EventOut(BaseModel):
    id: int
    time: str
    kind: str
    message: str
    data: Optional[dict[str, Any]]


class EventList(BaseModel):
    items: list[EventOut]


class ImageOut(BaseModel):
    name: str
    url: str
    sha256: str
    format: str
    size: Optional[int]
    created_at: str


class ImageList(BaseModel):
    items: list[ImageOut]


class ErrorOut(BaseModel):
    detail: str
    code: str


class Health(BaseModel):
    status: str
    version: str


class DiscoveryOut(BaseModel):
    id: str
    name: str
    state: State


class ManifestImage(BaseModel):
    name: str
    url: str
    sha256: str
    format: str
    size: Optional[int]


class Manifest(BaseModel):
    mode: Literal["deploy", "wipe"]
    node: str
    target: str
    image: Optional[ManifestImage]
    seed: Optional[dict[str, str]]
    report_url: str


class ReportOut(BaseModel):
    node: str
    state: State
    token_revoked: bool
