"""Fixtures for pgvigil system tests: a network-namespace lab with real PostgreSQL 15.

Run as root with Debian's interpreter (that is where python3-pytest lives):
    /usr/bin/python3 -m pytest -v tests/system

Environment:
    PGVIGIL_BIN              the daemon under test (default <repo>/pgvigil)
    PGVLAB_KEEP=1            keep every lab's workdir (logs, data dirs) after the test
    PGVLAB_KEEP_ON_FAILURE=1 keep the workdir only of labs whose test failed
    PGVLAB_VERBOSE=1         log lab operations to stderr
"""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))

import pgvlab  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def lab_prerequisites():
    """The lab needs root and Debian's PostgreSQL 15; a missing piece is a failure, not a skip."""
    if os.geteuid() != 0:
        pytest.fail("system tests build network namespaces and must run as root", pytrace=False)
    postgres = Path(pgvlab.PG_BINDIR) / "postgres"
    if not os.access(postgres, os.X_OK):
        pytest.fail(f"{postgres} not found: install the Debian package {pgvlab.PG_PACKAGE} "
                    f"(apt-get install -y {pgvlab.PG_PACKAGE})", pytrace=False)
    for tool, pkg in (("ip", "iproute2"), ("setpriv", "util-linux"), ("ping", "iputils-ping")):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin")):
            pytest.fail(f"{tool} not found: install the Debian package {pkg}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item._pgvlab_failed = True


def _dump_logs(lab, out=sys.stderr):
    for inst in lab.pg.values():
        tail = "\n".join(inst.log_text().splitlines()[-30:])
        print(f"----- postgres {inst.host} ({inst.logfile}) -----\n{tail}", file=out)
    for pv in lab.pgvigil.values():
        print(f"----- pgvigil {pv.host} ({pv.log_path}) -----\n{pv.log_tail(60)}", file=out)


@pytest.fixture
def lab(request):
    """A fresh lab per test, torn down even when the test fails."""
    lab = pgvlab.Lab()
    try:
        yield lab
    finally:
        if getattr(request.node, "_pgvlab_failed", False):
            _dump_logs(lab)
            if os.environ.get("PGVLAB_KEEP_ON_FAILURE") == "1":
                lab.keep = True
        lab.teardown()


@pytest.fixture
def pg_cluster(lab):
    """Lab with a PostgreSQL 15 primary on 'db1', a streaming standby on 'db2'
    (slot 'db2') and a 'client' host.  Returns the Lab."""
    lab.add_host("db1", *pgvlab.pg_addr(1))
    lab.add_host("db2", *pgvlab.pg_addr(2))
    lab.add_host("client", *pgvlab.client_addr())
    lab.add_postgres_primary("db1")
    lab.add_postgres_standby("db2", "db1")
    return lab


@pytest.fixture
def pgvigil_bin():
    """Path of the daemon under test; missing binary is a failure, never a skip."""
    path = os.environ.get("PGVIGIL_BIN") or str(REPO / "pgvigil")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"pgvigil binary not found or not executable: {path} "
                    "(build it with ./configure && make, or set PGVIGIL_BIN)", pytrace=False)
    return path
