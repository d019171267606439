"""ingot_lab: virtual metal for the ingot.metal collection.

The first piece is a virtual BMC (``ingot_lab.vbmc``) speaking IPMI 2.0 lanplus on loopback, built on
pyghmi's BMC server side, one process serving many BMCs.  Run it as ``lab/ingot-lab vbmc ...`` or
``PYTHONPATH=lab python -m ingot_lab vbmc ...``; tests use :func:`ingot_lab.testing.start_lab`.
"""

__version__ = '0.1.0'
