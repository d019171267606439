"""The service's version is the ingot.metal collection's: the ``version`` of galaxy.yml, its one source.

Run from a checkout (``provisioner/src/ingot_provisioner`` under the collection root), it is read from
galaxy.yml; installed from the wheel, from the wheel's metadata, which ``provisioner/setup.py`` took from
galaxy.yml with :func:`galaxy_version` when ``make collection`` built it."""

import os
import re

DISTRIBUTION = "ingot-provisioner"
_SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PROJECT = os.path.dirname(_SRC)
CHECKOUT_GALAXY = os.path.join(os.path.dirname(_PROJECT), "galaxy.yml")
_VERSION_LINE = re.compile(r"""version:\s*(['"]?)([0-9][0-9A-Za-z.+-]*)\1\s*(#.*)?$""")


def galaxy_version(path):
    """The top-level ``version:`` of the galaxy.yml at ``path``."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = _VERSION_LINE.match(line.rstrip("\n"))
            if match:
                return match.group(2)
    raise RuntimeError(f"{path}: no top-level 'version: X.Y.Z' line")


def version():
    if os.path.isfile(os.path.join(_PROJECT, "pyproject.toml")) and os.path.isfile(CHECKOUT_GALAXY):
        return galaxy_version(CHECKOUT_GALAXY)
    from importlib.metadata import PackageNotFoundError, version as dist_version  # pylint: disable=import-outside-toplevel
    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError as exc:
        raise RuntimeError(f"ingot_provisioner at {_SRC} is neither in a checkout of ingot.metal (no {CHECKOUT_GALAXY}) "
                           f"nor installed from its wheel (no {DISTRIBUTION} distribution): install the wheel "
                           "that `make collection` builds") from exc
