"""System tests of the hardware watchdog feeder ([failover] watchdog_device).

The machine has no /dev/watchdog, so the device is a FIFO the test reads:
every byte the daemon writes is a keepalive, the magic close 'V' disarms.
The daemon runs alone in a lab namespace (its two other peers are only
configured), the way the other system tests start it; assertions are on
event tokens (doc/events.md), exit codes and the bytes in the FIFO.
"""

import os
import select
import signal
import subprocess
import time

import pytest

import pgvlab

TIMEOUT_S = 2                  # watchdog_timeout of these tests
PERIOD = TIMEOUT_S / 4         # the feeding period it implies: 0.5 s


def config(lab, device, timeout=f"{TIMEOUT_S}s"):
    return (f"[cluster]\nname = lab\nstate_dir = @STATE_DIR@\nkey_file = {lab.cluster_key()}\n"
            f"[failover]\nwatchdog_device = {device}\nwatchdog_timeout = {timeout}\n"
            "[peer.1]\naddress = 192.0.2.1\n[peer.2]\naddress = 192.0.2.2\n"
            "[peer.3]\naddress = 192.0.2.3\n")


def collect(fd, seconds):
    """Every byte that arrives on fd within `seconds`; stops early at EOF."""
    out = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        out += chunk
    return out


def wait_bytes(fd, n, timeout):
    """Reads until n bytes arrived (or EOF); fails after timeout."""
    out = b""
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            out += chunk
    assert len(out) >= n, f"only {len(out)} of {n} bytes within {timeout}s: {out!r}"
    return out


def read_to_eof(fd, timeout):
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                return out, True
            out += chunk
    return out, False


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def wait_state(pid, states, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc_state(pid) in states:
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} not in state {states} within {timeout}s")


class Reader:
    """The reading end of the test's FIFO; closed once, by the test or at the end."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@pytest.fixture
def fifo(lab):
    """A FIFO in the lab's workdir, already open for reading (non-blocking),
    so the daemon's non-blocking open for writing finds a reader."""
    path = os.path.join(lab.workdir, "watchdog.fifo")
    os.mkfifo(path, 0o600)
    reader = Reader(path)
    try:
        yield reader
    finally:
        reader.close()


@pytest.fixture
def gw1(lab):
    lab.add_host("gw1", *pgvlab.peer_addr(1))
    return lab


def test_hw_watchdog_fed_at_its_period_silent_when_frozen_disarmed_by_clean_stop(
        gw1, fifo, pgvigil_bin):
    lab = gw1
    path, rfd = fifo.path, fifo.fd
    pv = lab.start_pgvigil("gw1", pgvigil_bin, config(lab, path))
    armed = pgvlab.wait_log_event(pv, "hw-watchdog-armed", 10)
    assert (armed["device"], armed["timeout_s"], armed["period_ms"], armed["kind"]) == \
        (path, str(TIMEOUT_S), str(int(PERIOD * 1000)), "fifo")
    pgvlab.wait_log_event(pv, "daemon-started", 10)
    assert armed["pos"] < pgvlab.log_events(pv, "daemon-started")[0]["pos"]

    # Keepalives at the period: 4 s hold 8 of them at 0.5 s. A 1 s period
    # would give 4, a spinning timer hundreds; allow for a slow machine.
    collect(rfd, 0.1)
    got = collect(rfd, 4 * 1.0)
    assert set(got) == {ord(".")}, got
    assert 5 <= len(got) <= 10, f"{len(got)} keepalives in 4 s at a {PERIOD} s period"

    # The loop frozen: not one byte for many periods (a real watchdog
    # would reset the host after TIMEOUT_S).
    pv.signal(signal.SIGSTOP)
    wait_state(pv.pid, ("T", "t"))
    collect(rfd, 0.05)             # a byte written just before the stop
    silent = collect(rfd, 5 * PERIOD)
    assert silent == b"", f"{len(silent)} bytes from a stopped daemon"

    # Running again: keepalives again, the overdue one at once.
    pv.signal(signal.SIGCONT)
    again = wait_bytes(rfd, 3, 10 * PERIOD + 5)
    assert set(again) == {ord(".")}, again

    # SIGTERM: exit 0, the last byte is the magic close, then EOF.
    mark = pv.mark()
    assert pv.stop() == 0
    rest, eof = read_to_eof(rfd, 5)
    assert eof, "the daemon did not close the device"
    assert rest.endswith(b"V") and rest.count(b"V") == 1, rest
    dis = pgvlab.wait_log_event(pv, "hw-watchdog-disarmed", 5, since=mark, device=path)
    assert int(dis["feeds"]) >= len(got) + len(again)
    assert dis["failures"] == "0"
    stopped = pgvlab.log_events(pv, "daemon-stopped", since=mark)
    assert stopped and dis["pos"] < stopped[0]["pos"]


def test_hw_watchdog_left_armed_by_kill_9(gw1, fifo, pgvigil_bin):
    lab = gw1
    path, rfd = fifo.path, fifo.fd
    pv = lab.start_pgvigil("gw1", pgvigil_bin, config(lab, path))
    pgvlab.wait_log_event(pv, "daemon-started", 10)
    wait_bytes(rfd, 2, 10)
    mark = pv.mark()
    pv.signal(signal.SIGKILL)
    assert pv.wait(10) == -signal.SIGKILL
    rest, eof = read_to_eof(rfd, 5)
    assert eof
    # No magic close: a real watchdog stays armed and resets the host.
    assert b"V" not in rest
    assert pgvlab.log_events(pv, "hw-watchdog-disarmed", since=mark) == []


def test_hw_watchdog_lost_reader_logged_once_then_resumed(gw1, fifo, pgvigil_bin):
    lab = gw1
    path, rfd = fifo.path, fifo.fd
    pv = lab.start_pgvigil("gw1", pgvigil_bin, config(lab, path))
    pgvlab.wait_log_event(pv, "daemon-started", 10)
    wait_bytes(rfd, 1, 10)
    # The reader goes away: every write fails (EPIPE), logged once.
    fifo.close()
    failed = pgvlab.wait_log_event(pv, "hw-watchdog-feed-failed", 10, device=path)
    time.sleep(6 * PERIOD)         # several more failed periods
    assert len(pgvlab.log_events(pv, "hw-watchdog-feed-failed")) == 1
    assert failed["failures"] == "1" and "pipe" in failed["reason"].lower()
    # A reader again: the next write succeeds, and that is logged once.
    fd2 = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        resumed = pgvlab.wait_log_event(pv, "hw-watchdog-feed-resumed", 10, device=path)
        assert int(resumed["failures"]) >= 4
        wait_bytes(fd2, 2, 10)
        assert pv.alive()
        assert pv.stop() == 0
        dis = pgvlab.log_events(pv, "hw-watchdog-disarmed")
        assert dis and dis[0]["failures"] == resumed["failures"]
    finally:
        os.close(fd2)


@pytest.mark.parametrize("case", ["missing", "fifo-without-reader", "not-a-watchdog"])
def test_hw_watchdog_that_cannot_be_armed_stops_the_start(gw1, pgvigil_bin, case):
    lab = gw1
    if case == "missing":
        path, message = os.path.join(lab.workdir, "no-such-watchdog"), "No such file or directory"
    elif case == "fifo-without-reader":
        path, message = os.path.join(lab.workdir, "lonely.fifo"), "No such device or address"
        os.mkfifo(path, 0o600)
    else:
        path, message = "/dev/null", "is not a watchdog device"
    pv = lab.start_pgvigil("gw1", pgvigil_bin, config(lab, path))
    # Exit 1 (a start error), promptly: a FIFO nobody reads must not hang it.
    assert pv.wait(15) == 1
    log = pv.log_text()
    err = [ln for ln in log.splitlines() if f'"{path}"' in ln and message in ln]
    assert err, log
    assert "hint: " in log
    assert "event=hw-watchdog-armed" not in log
    assert "event=daemon-started" not in log
    # The control socket and the state lock were released: a start with a
    # device that works succeeds right after.
    if case == "fifo-without-reader":
        rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            mark = pv.mark()
            pv = lab.start_pgvigil("gw1", pgvigil_bin, config(lab, path))
            pgvlab.wait_log_event(pv, "daemon-started", 10, since=mark)
            wait_bytes(rfd, 1, 10)
            assert pv.stop() == 0
        finally:
            os.close(rfd)


def test_hw_watchdog_timeout_not_above_stall_threshold_is_refused(gw1, pgvigil_bin, tmp_path):
    conf = tmp_path / "p.conf"
    conf.write_text(config(gw1, "/dev/watchdog", timeout="1s").replace(
        "[peer.1]", "[watchdog]\nstall_threshold = 1s\nelection_timeout_min = 3s\n"
        "election_timeout_max = 4s\nlease = 2s\n[peer.1]"))
    r = subprocess.run([pgvigil_bin, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2
    assert "watchdog_timeout (1s) must be longer than stall_threshold (1s)" in r.stderr
