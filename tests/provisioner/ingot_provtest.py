"""Helpers of the provisioner tests (and of bench_agent.py): constants, settings, stdlib HTTP, and the real
service under uvicorn in a subprocess. A module of its own (not conftest) so that its name is unique when
several test suites run in one pytest session."""

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# the service's source (src layout); its project folder holds requirements.txt
PROJECT_DIR = os.path.join(REPO, "provisioner")
PKG_DIR = os.path.join(PROJECT_DIR, "src")
AGENT = os.path.join(PKG_DIR, "ingot_provisioner", "agent", "agent.sh")
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"

# PKG_DIR is on sys.path through pytest.ini's pythonpath (and the Makefile's BENCH_PATH for benchmarks)
try:
    for _module in ("fastapi", "sqlalchemy", "alembic", "uvicorn", "httpx", "yaml", "cryptography"):
        importlib.import_module(_module)
except ImportError as exc:  # a loud collection error, never a silent skip
    raise ImportError(f"the provisioner tests need the service's dependencies: pip install -r "
                      f"{os.path.join(PROJECT_DIR, 'requirements.txt')} httpx ({exc})") from exc

from ingot_provisioner.api import create_app  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from ingot_provisioner.config import load_settings  # noqa: E402  pylint: disable=wrong-import-position
from ingot_provisioner.db import Database  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import


__all__ = ["ADMIN_TOKEN", "AGENT", "PKG_DIR", "Database", "Server", "create_app", "free_port", "http",
           "make_settings"]


def make_settings(tmp_path, **overrides):
    values = {"admin_token": ADMIN_TOKEN, "database_url": f"sqlite:///{tmp_path}/registry.db",
              "image_dir": str(tmp_path / "images"), "ramdisk_dir": str(tmp_path / "ramdisk"),
              "public_url": "http://127.0.0.1:9", "timeout_check_interval": 0.2}
    values.update(overrides)
    return load_settings(None, env={}, overrides=values)


# --- HTTP helpers (stdlib, usable from threads) ------------------------------------------------------
def http(method, url, body=None, token=None, timeout=30):
    """(status, parsed JSON or text) of one request; never raises for HTTP errors."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, raw, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
    if "json" in ctype and raw:
        return status, json.loads(raw)
    return status, raw.decode("utf-8", "replace")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m ingot_provisioner serve`` in a subprocess, configured by environment variables."""

    def __init__(self, workdir, database_url=None, **config):
        self.workdir = str(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env.update({
            "PYTHONPATH": PKG_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "INGOT_PROVISIONER_ADMIN_TOKEN": ADMIN_TOKEN,
            "INGOT_PROVISIONER_DATABASE_URL": database_url or f"sqlite:///{self.workdir}/registry.db",
            "INGOT_PROVISIONER_IMAGE_DIR": os.path.join(self.workdir, "images"),
            "INGOT_PROVISIONER_RAMDISK_DIR": os.path.join(self.workdir, "ramdisk"),
            "INGOT_PROVISIONER_LISTEN_ADDRESS": "127.0.0.1",
            "INGOT_PROVISIONER_PORT": str(self.port),
            "INGOT_PROVISIONER_PUBLIC_URL": self.url,
            "INGOT_PROVISIONER_CONFIG": os.path.join(self.workdir, "no-config.yml"),
        })
        for key, value in config.items():
            self.env["INGOT_PROVISIONER_" + key.upper()] = str(value)
        self.proc = None
        self.log_path = os.path.join(self.workdir, f"server-{self.port}.log")

    def launch(self):
        os.makedirs(os.path.join(self.workdir, "images"), exist_ok=True)
        self._log = open(self.log_path, "ab")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen([sys.executable, "-m", "ingot_provisioner", "serve"], env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def start(self, timeout=60):
        if self.proc is None:
            self.launch()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"provisioner exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status = http("GET", self.url + "/api/v1/health", timeout=2)[0]
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"provisioner did not answer within {timeout} s:\n{self.log()}")

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()

    # admin API shortcuts
    def api(self, method, path, body=None, token=ADMIN_TOKEN, timeout=30):
        return http(method, self.url + path, body, token=token, timeout=timeout)
