"""Boot artifacts: iPXE scripts and cloud-init NoCloud seeds, rendered from Jinja2 templates in a
SANDBOXED environment (templates may be overridden by files in ``template_dir``), and the pinned
SSH host keys generated for each deploy."""

from __future__ import annotations

import copy
import re

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: cloud-config keys the provisioner owns: user-data may not set them (host key pinning).
PROTECTED_KEYS = ("ssh_keys", "ssh_deletekeys", "ssh_genkeytypes")
SSHD_HOSTKEY_CONF = "/etc/ssh/sshd_config.d/10-ingot-hostkeys.conf"
_UNSAFE_IPXE = re.compile(r"[\s\"'\\$;&|<>`{}]")


class UserDataError(ValueError):
    pass


def _ipxe_word(value) -> str:
    """A value placed in an iPXE command line: one word, no spaces, quotes, settings expansion."""
    value = str(value)
    if not value or _UNSAFE_IPXE.search(value):
        raise ValueError(f"refusing to put {value[:40]!r} into an iPXE script")
    return value


def _ipxe_args(value) -> str:
    value = str(value)
    for word in value.split():
        _ipxe_word(word)
    return " ".join(value.split())


class _CloudDumper(yaml.SafeDumper):
    """Multi-line strings (keys, file contents) as literal blocks."""


def _str_presenter(dumper, data):
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_CloudDumper.add_representer(str, _str_presenter)


def _to_yaml(value) -> str:
    return yaml.dump(value, Dumper=_CloudDumper, default_flow_style=False, sort_keys=False, width=4096,
                     allow_unicode=False)


def _yaml_scalar(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=4096)
    return text[:-5] if text.endswith("\n...\n") else text.rstrip("\n")


class Renderer:
    def __init__(self, template_dir: str | None = None):
        loaders = []
        if template_dir:
            loaders.append(FileSystemLoader(template_dir))
        loaders.append(PackageLoader("ingot_provisioner", "templates"))
        self.env = ImmutableSandboxedEnvironment(loader=ChoiceLoader(loaders), undefined=StrictUndefined,
                                                 autoescape=False, keep_trailing_newline=True,
                                                 trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(ipxe_word=_ipxe_word, ipxe_args=_ipxe_args, to_yaml=_to_yaml,
                                yaml_scalar=_yaml_scalar)

    def render(self, name: str, **context) -> str:
        return self.env.get_template(name).render(**context)


# SSH host keys --------------------------------------------------------------------------------
def generate_host_keys(comment: str = "") -> tuple[dict, dict]:
    """A fresh ed25519 host key: ({"ed25519": public line}, {"ed25519": private PEM})."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    if comment:
        public = f"{public} {comment}"
    return {"ed25519": public}, {"ed25519": private}


# cloud-config ---------------------------------------------------------------------------------
def parse_user_data(text: str | None) -> dict:
    """Parse extra user-data: cloud-config YAML (a mapping; ``#cloud-config`` header optional)."""
    if text is None or not text.strip():
        return {}
    stripped = text.lstrip()
    if stripped.startswith("#!") or stripped.startswith("Content-Type:") or stripped.startswith("#include"):
        raise UserDataError("user_data must be cloud-config YAML (a mapping); scripts, MIME and #include "
                            "are not supported: use runcmd or write_files")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserDataError(f"user_data is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserDataError(f"user_data must be a cloud-config mapping, got {type(data).__name__}")
    bad = [k for k in PROTECTED_KEYS if k in data]
    if bad:
        raise UserDataError(f"user_data may not set {', '.join(bad)}: the provisioner pins the SSH host keys")
    return data


def merge_cloud_config(base: dict, extra: dict) -> dict:
    """Merge ``extra`` into ``base``: mappings recursively, lists concatenated (base first), other values
    from ``extra``; the protected keys always keep the base's values."""
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if key in PROTECTED_KEYS:
            continue
        if key in result and isinstance(result[key], dict) and isinstance(value, dict):
            result[key] = merge_cloud_config(result[key], value)
        elif key in result and isinstance(result[key], list) and isinstance(value, list):
            result[key] = result[key] + copy.deepcopy(value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def base_cloud_config(*, hostname: str, ssh_keys: list[str], host_public: dict, host_private: dict,
                      root_login: bool) -> dict:
    cfg: dict = {
        "hostname": hostname.split(".")[0],
        "preserve_hostname": False,
        "ssh_pwauth": False,
        "ssh_authorized_keys": list(ssh_keys),
        # the node presents exactly the pinned key: old keys deleted, none generated,
        # sshd told to load only the ed25519 key
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {"ed25519_private": host_private["ed25519"], "ed25519_public": host_public["ed25519"]},
        "write_files": [{
            "path": SSHD_HOSTKEY_CONF,
            "owner": "root:root",
            "permissions": "0644",
            "content": "# written by the ingot.metal provisioner: present only the pinned host key\n"
                       "HostKey /etc/ssh/ssh_host_ed25519_key\n",
        }],
    }
    if "." in hostname:
        cfg["fqdn"] = hostname
    if root_login:
        cfg["disable_root"] = False
    return cfg
