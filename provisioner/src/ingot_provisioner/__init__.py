"""ingot.metal provisioner: node registry, boot artifacts and deploy agent (FastAPI service)."""

from . import _version

__version__ = _version.version()
