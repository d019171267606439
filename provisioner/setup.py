"""Build script of the ingot-provisioner wheel (``make collection``): pyproject.toml holds the metadata, this
only gives the version, the collection's (../galaxy.yml), read by the function the service uses at run time."""

import importlib.util
import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_ingot_provisioner_version",
                                               os.path.join(HERE, "src", "ingot_provisioner", "_version.py"))
_version = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_version)

setup(version=_version.galaxy_version(os.path.join(HERE, os.pardir, "galaxy.yml")))
