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


def test_make_install_lists_every_file_and_uninstall_removes_them(pgvigil_bin, tmp_path):
    """A packager's install (prefix /usr, configuration in /etc, state in
    /var) under DESTDIR: exactly these files, the unit with its paths filled
    in; uninstall leaves no file behind."""
    build = Path(pgvigil_bin).parent
    if not (build / "Makefile").exists():
        pytest.fail(f"{build} has no Makefile: PGVIGIL_BIN must point into a configured build")
    dest = tmp_path / "stage"
    dirs = ["prefix=/usr", "exec_prefix=/usr", "bindir=/usr/bin", "sbindir=/usr/sbin",
            "libexecdir=/usr/libexec", "sysconfdir=/etc", "localstatedir=/var",
            "datarootdir=/usr/share", "mandir=/usr/share/man",
            "systemdunitdir=/lib/systemd/system"]
    r = subprocess.run(["make", "-s", "-C", str(build), "install", f"DESTDIR={dest}", *dirs],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    want = {
        "usr/sbin/pgvigil", "usr/bin/pgvigilctl",
        "usr/share/man/man8/pgvigil.8", "usr/share/man/man8/pgvigilctl.8",
        "usr/share/man/man5/pgvigil.conf.5",
        "etc/pgvigil/pgvigil.conf.sample",
        "lib/systemd/system/pgvigil.service",
        "usr/share/doc/pgvigil/examples/haproxy.cfg.sample",
    }
    want |= {f"usr/libexec/pgvigil/{p.name}" for p in (REPO / "hooks" / "scripts").iterdir()
             if p.is_file()}
    want |= {f"usr/share/doc/pgvigil/{p.name}" for p in (REPO / "doc").glob("*.md")}
    if (REPO / "etc" / "grafana-pgvigil.json").exists():
        want.add("usr/share/doc/pgvigil/examples/grafana-pgvigil.json")
    got = {str(p.relative_to(dest)) for p in dest.rglob("*") if not p.is_dir()}
    assert got == want, f"missing: {sorted(want - got)}; unexpected: {sorted(got - want)}"
    for f in ("usr/sbin/pgvigil", "usr/bin/pgvigilctl", "usr/libexec/pgvigil/pgvigil-promote",
              "usr/libexec/pgvigil/pgvigil-pgbouncer"):
        assert os.access(dest / f, os.X_OK), f
    unit = (dest / "lib/systemd/system/pgvigil.service").read_text()
    assert "@" not in re.sub(r"(?m)^#.*$", "", unit), unit
    assert "ExecStart=/usr/sbin/pgvigil -c /etc/pgvigil/pgvigil.conf\n" in unit
    assert "ExecStopPost=/usr/sbin/pgvigil --release-vip -c /etc/pgvigil/pgvigil.conf\n" in unit
    assert "ReadWritePaths=/var/lib/pgvigil\n" in unit

    r = subprocess.run(["make", "-s", "-C", str(build), "uninstall", f"DESTDIR={dest}", *dirs],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    left = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if not p.is_dir())
    assert left == [], left
