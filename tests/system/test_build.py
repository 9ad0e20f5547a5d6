"""The build: configure's dependency errors and make install.

These need no lab; they run the real configure and make of the build that
PGVIGIL_BIN belongs to.
"""

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_configure_names_the_debian_package_of_a_missing_library(tmp_path):
    # A pkg-config that knows every library but libmnl.
    fake = tmp_path / "pkg-config"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = libmnl ] && exit 1; done\n'
                    'exec pkg-config "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    build = tmp_path / "build"
    build.mkdir()
    r = subprocess.run([str(REPO / "configure"), f"PKG_CONFIG={fake}"], cwd=build,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "libmnl not found; install the Debian package libmnl-dev" in r.stderr
    assert not (build / "Makefile").exists()


def test_configure_rejects_an_unknown_option(tmp_path):
    r = subprocess.run([str(REPO / "configure"), "--with-magic"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "unknown option '--with-magic'" in r.stderr


def test_make_install_puts_files_under_destdir(pgvigil_bin, tmp_path):
    build = Path(pgvigil_bin).parent
    if not (build / "Makefile").exists():
        pytest.fail(f"{build} has no Makefile: PGVIGIL_BIN must point into a configured build")
    dest = tmp_path / "stage"
    r = subprocess.run(["make", "-s", "-C", str(build), "install", f"DESTDIR={dest}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    prefix = re.search(r"^prefix\s*=\s*(\S+)", (build / "Makefile").read_text(), re.M).group(1)
    root = Path(str(dest) + prefix)
    assert os.access(root / "sbin" / "pgvigil", os.X_OK)
    assert (root / "share" / "man" / "man8" / "pgvigil.8").is_file()
    assert (root / "share" / "man" / "man5" / "pgvigil.conf.5").is_file()
    assert (root / "etc" / "pgvigil" / "pgvigil.conf.sample").is_file()
