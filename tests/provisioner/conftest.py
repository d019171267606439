"""Fixtures of the provisioner tests: an in-process app (TestClient), the real service under uvicorn
in a subprocess on loopback, and a private PostgreSQL cluster started for the session.

The provisioner package is imported from the collection tree (roles/provisioner/files/provisioner);
its dependencies (requirements.txt there) must be installed in the interpreter running pytest."""

import glob
import importlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PKG_DIR = os.path.join(REPO, "roles", "provisioner", "files", "provisioner")
AGENT = os.path.join(PKG_DIR, "ingot_provisioner", "agent", "agent.sh")
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"

if PKG_DIR not in sys.path:
    sys.path.insert(0, PKG_DIR)
try:
    for _module in ("fastapi", "sqlalchemy", "alembic", "uvicorn", "httpx", "yaml", "cryptography"):
        importlib.import_module(_module)
except ImportError as exc:  # a loud collection error, never a silent skip
    raise ImportError(f"the provisioner tests need the service's dependencies: pip install -r "
                      f"{os.path.join(PKG_DIR, 'requirements.txt')} httpx ({exc})") from exc

from ingot_provisioner.api import create_app  # noqa: E402  pylint: disable=wrong-import-position
from ingot_provisioner.config import load_settings  # noqa: E402  pylint: disable=wrong-import-position
from ingot_provisioner.db import Database  # noqa: E402  pylint: disable=wrong-import-position


def pytest_configure(config):
    # starlette's TestClient warns about httpx (its own dependency); nothing to act on here
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx`")


def make_settings(tmp_path, **overrides):
    values = {"admin_token": ADMIN_TOKEN, "database_url": f"sqlite:///{tmp_path}/registry.db",
              "image_dir": str(tmp_path / "images"), "ramdisk_dir": str(tmp_path / "ramdisk"),
              "public_url": "http://127.0.0.1:9", "timeout_check_interval": 0.2}
    values.update(overrides)
    return load_settings(None, env={}, overrides=values)


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory):
    """A registry migrated once per session; each test gets a copy (migrating costs more than a test)."""
    path = tmp_path_factory.mktemp("template") / "registry.db"
    database = Database(f"sqlite:///{path}")
    database.migrate()
    with database.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.dispose()
    return path


@pytest.fixture
def db(settings, migrated_template):
    target = settings.database_url[len("sqlite:///"):]
    shutil.copyfile(migrated_template, target)
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def _session_app(tmp_path_factory):
    """One FastAPI app for the in-process tests (building one costs ~50 ms); rebound to each test's registry."""
    from fastapi.testclient import TestClient

    tmp = tmp_path_factory.mktemp("app")
    first = make_settings(tmp)
    application = create_app(first, Database(first.database_url), start_reaper=False)
    with TestClient(application, raise_server_exceptions=False) as c:
        yield application, c


@pytest.fixture
def app(_session_app, settings, db):
    application, _ = _session_app
    application.state.ctx.bind(settings, db)
    application.state.internal_errors = 0
    return application


@pytest.fixture
def client(app, _session_app):
    yield _session_app[1]
    assert app.state.internal_errors == 0, "an unexpected error reached the catch-all 500 handler"


@pytest.fixture
def admin():
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


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
                status, _ = http("GET", self.url + "/api/v1/health", timeout=2)
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


@pytest.fixture
def server_factory(tmp_path):
    servers = []

    def factory(workdir=None, wait=True, **kwargs):
        """A started server; with wait=False only launched (call .start() to wait for it)."""
        srv = Server(workdir or tmp_path, **kwargs)
        servers.append(srv)
        return srv.start() if wait else srv.launch()

    yield factory
    for srv in servers:
        srv.stop()


# --- PostgreSQL: a private cluster for the session ---------------------------------------------------
def _pg_bindir():
    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return os.path.dirname(initdb)
    found = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(found)) if found else None


def _install_postgresql():
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root or no apt-get: cannot install Debian's postgresql"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if res.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600, check=False)
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if res.returncode != 0:
        return f"apt-get install postgresql failed: {res.stderr.strip()[-500:]}"
    return None


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL database on a unix socket of a private cluster (initdb in a temp dir), stopped at the end."""
    bindir = _pg_bindir()
    if bindir is None:
        problem = _install_postgresql()
        bindir = _pg_bindir()
        if bindir is None:
            pytest.skip(f"PostgreSQL unavailable: {problem or 'initdb not found after installing postgresql'}")
    base = tempfile.mkdtemp(prefix="ingot-pg-")
    os.chmod(base, 0o755)
    data, sock = os.path.join(base, "data"), os.path.join(base, "sock")
    os.makedirs(sock)
    run_as = []
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL: running as root and there is no postgres user to run the cluster")
        for path in (base, sock):
            os.chown(path, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(run_as + [f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                             "--no-sync"], check=True, capture_output=True, timeout=120)
    opts = (f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
            f"-c full_page_writes=off -c max_connections=200")
    subprocess.run(run_as + [f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(base, "pg.log"),
                             "-w", "-t", "60", "start"], check=True, capture_output=True, timeout=120)
    try:
        subprocess.run(run_as + [f"{bindir}/psql", "-h", sock, "-p", str(port), "-U", "postgres", "-q", "-c",
                                 "CREATE DATABASE ingot"], check=True, capture_output=True, timeout=60)
        yield f"postgresql://postgres@/ingot?host={sock}&port={port}"
    finally:
        subprocess.run(run_as + [f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_url):
    """A clean schema in the session's PostgreSQL database."""
    database = Database(postgres_url)
    with database.engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    database.migrate()
    yield database
    database.dispose()
