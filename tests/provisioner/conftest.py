"""Fixtures of the provisioner tests: an in-process app (TestClient), the real service under uvicorn
in a subprocess on loopback, and a private PostgreSQL cluster started for the session.

The provisioner package is imported from the collection tree (provisioner/src);
its dependencies (provisioner/requirements.txt) must be installed in the interpreter running pytest."""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from ingot_provtest import ADMIN_TOKEN, Database, Server, create_app, free_port, make_settings


def pytest_configure(config):
    # starlette's TestClient warns about httpx (its own dependency); nothing to act on here
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx`")


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
    # the in-process client comes from loopback, a provisioning network of the default settings
    with TestClient(application, raise_server_exceptions=False, client=("127.0.0.1", 50000)) as c:
        yield application, c


@pytest.fixture
def app(_session_app, settings, db):
    application = _session_app[0]
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


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL database on a unix socket of a private cluster (initdb in a temp dir), stopped at the end."""
    bindir = _pg_bindir()
    if bindir is None:
        # Debian's postgresql is in bindep.txt: `make deps` installs it (a fixture installs no package)
        pytest.skip("PostgreSQL is not installed (initdb not found): run make deps")
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
