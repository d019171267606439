"""ingot.metal provisioner: node registry, boot artifacts and deploy agent (FastAPI service)."""

__version__ = "0.1.0"
