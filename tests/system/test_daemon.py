"""System tests of the daemon's wiring: real processes in lab namespaces.

Each test builds its own lab (see conftest.py) and asserts on event tokens
(doc/events.md), exit codes and files, never on prose.
"""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import pgvlab

REPO = Path(__file__).resolve().parents[2]


def three_peers(lab):
    for i in (1, 2, 3):
        lab.add_host(f"gw{i}", *pgvlab.peer_addr(i))
    return [(1, "gw1"), (2, "gw2"), (3, "gw3")]


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def read_pid(path, timeout=5.0):
    wait_for(lambda: os.path.exists(path) and open(path).read().strip(), timeout, path)
    return int(open(path).read().strip())


def test_peers_start_in_namespaces_and_find_themselves(lab, pgvigil_bin):
    peers = three_peers(lab)
    conf = lab.pgvigil_config(peers)
    procs = [lab.start_pgvigil(h, pgvigil_bin, conf) for _, h in peers]
    for (pid_, _), pv in zip(peers, procs):
        pv.wait_log(rf"event=daemon-started peer={pid_} cluster=lab boot=1 ")
    # The boot counter is durable: a restart counts.
    assert procs[0].stop() == 0
    again = lab.start_pgvigil("gw1", pgvigil_bin, conf)
    again.wait_log(r"event=daemon-started peer=1 cluster=lab boot=2 ")
    state = Path(again.state_dir, "pgvigil.state").read_text()
    assert "boot_count=2\n" in state and "peer_id=1\n" in state
    assert re.search(r"^sha256 [0-9a-f]{64}$", state, re.M)


def test_config_check_prints_every_error_with_file_and_line(lab, pgvigil_bin, tmp_path):
    good = tmp_path / "good.conf"
    good.write_text("[cluster]\nname = lab\nkey_file = /etc/pgvigil/cluster.key\n"
                    "[peer.1]\naddress = 192.0.2.1\n[peer.2]\naddress = 192.0.2.2\n"
                    "[peer.3]\naddress = 192.0.2.3\nwitness = yes\n")
    r = subprocess.run([pgvigil_bin, "-t", "-c", str(good)], capture_output=True,
                       text=True, timeout=10)
    assert (r.returncode, r.stdout) == (0, "configuration OK\n")

    bad = tmp_path / "bad.conf"
    bad.write_text("[cluster]\nname = lab\nlog_level = loud\n[peer.1]\n"
                   "address = 192.0.2.1\nport = 0\nwhat = ever\n")
    # Every error, in file order, each with its line; nothing else.
    r = subprocess.run([pgvigil_bin, "-t", "-c", str(bad)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        f'{bad}:1: section [cluster] lacks the required setting "key_file"',
        f'{bad}:3: invalid value "loud" for "log_level": expected one of error|warning|info|debug',
        f'{bad}:6: value 0 for "port" is out of range (1 to 65535)',
        f'{bad}:7: unknown setting "what" in section [peer.1]',
    ]
    # The daemon itself refuses the same file with the same errors, exit 2.
    r = subprocess.run([pgvigil_bin, "-c", str(bad)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2
    assert f'{bad}:3: invalid value "loud"' in r.stderr


def test_sighup_with_broken_file_keeps_running_configuration(lab, pgvigil_bin):
    peers = three_peers(lab)
    out = os.path.join(lab.workdir, "notify.out")
    conf = lab.pgvigil_config(peers, hooks={"notify_command": f"echo %e >> {out}"})
    pv = lab.start_pgvigil("gw1", pgvigil_bin, conf)
    pv.wait_log(r"event=daemon-started peer=1 ")

    Path(pv.conf_path).write_text(Path(pv.conf_path).read_text() + "\nthis is not ini\n")
    mark = pv.mark()
    pv.signal(signal.SIGHUP)
    pv.wait_log(r"event=config-reload-failed errors=1 ", since=mark)
    assert re.search(rf"{re.escape(pv.conf_path)}:\d+: syntax error", pv.log_text()[mark:])
    # Still running on the old configuration, and still answering signals.
    assert pv.alive()

    fixed = conf.replace("@STATE_DIR@", pv.state_dir).replace(
        "log_level = info", "log_level = debug").replace(
        "[peer.1]\naddress = 192.0.2.1\nport = 5480", "[peer.1]\naddress = 192.0.2.1\nport = 5490")
    Path(pv.conf_path).write_text(fixed)
    mark = pv.mark()
    pv.signal(signal.SIGHUP)
    pv.wait_log(r"event=config-reloaded restart_pending=1", since=mark)
    assert 'setting "peer.1.port" changed' in pv.log_text()[mark:]
    # The notify hook saw each event, in order.
    wait_for(lambda: os.path.exists(out) and len(open(out).read().split()) == 3, 10,
             "three notify events")
    assert open(out).read().split() == ["daemon-started", "config-reload-failed",
                                        "config-reloaded"]
    # log_level was reloaded: the debug line about the hook's pid appears.
    assert pv.stop() == 0


def test_sigterm_stops_cleanly_and_releases_the_state_directory(lab, pgvigil_bin):
    peers = three_peers(lab)
    conf = lab.pgvigil_config(peers)
    pv = lab.start_pgvigil("gw2", pgvigil_bin, conf)
    pv.wait_log(r"event=daemon-started peer=2 ")
    # A second daemon on the same state directory is refused.
    d = lab.pgvigil_dir("gw2")
    r = lab.run("gw2", [pgvigil_bin, "-c", d["conf"]], timeout=15)
    assert r.returncode == 1
    assert "is in use by another pgvigil" in r.stderr
    # SIGTERM: exit 0 (under ASan this also proves nothing leaked).
    assert pv.stop() == 0
    log = pv.log_text()
    assert "event=daemon-stopping signal=TERM" in log
    assert re.search(r"event=daemon-stopped peer=2$", log, re.M)
    again = lab.start_pgvigil("gw2", pgvigil_bin, conf)
    again.wait_log(r"event=daemon-started peer=2 cluster=lab boot=2 ")


def test_corrupt_state_file_stops_the_start(lab, pgvigil_bin):
    peers = three_peers(lab)
    conf = lab.pgvigil_config(peers)
    pv = lab.start_pgvigil("gw1", pgvigil_bin, conf)
    pv.wait_log(r"event=daemon-started peer=1 ")
    assert pv.stop() == 0
    state = Path(pv.state_dir, "pgvigil.state")
    state.write_text(state.read_text().replace("boot_count=1", "boot_count=9"))
    mark = pv.mark()
    pv = lab.start_pgvigil("gw1", pgvigil_bin, conf)
    assert pv.wait(15) == 1
    log = pv.log_text()[mark:]
    assert "is corrupt: its checksum does not match its content" in log
    assert "event=daemon-started" not in log
    # Nothing was rewritten: the operator still has the file to inspect.
    assert "boot_count=9" in state.read_text()


def test_identity_by_address_and_by_id(lab, pgvigil_bin):
    lab.add_host("gw1", *pgvlab.peer_addr(1))
    # No configured peer address is local to gw1: refused, exit 2.
    conf = (f"[cluster]\nname = lab\nstate_dir = @STATE_DIR@\nkey_file = {lab.cluster_key()}\n"
            "[peer.4]\naddress = 192.0.2.4\n[peer.5]\naddress = 192.0.2.5\n"
            "[peer.6]\naddress = 192.0.2.6\n")
    pv = lab.start_pgvigil("gw1", pgvigil_bin, conf)
    assert pv.wait(15) == 2
    assert "none of the peer addresses" in pv.log_text()
    # --id naming an unknown peer is refused too.
    conf_ok = conf.replace("192.0.2.4", "192.0.2.1")
    mark = pv.mark()
    pv = lab.start_pgvigil("gw1", pgvigil_bin, conf_ok, extra_args=("--id", "7"))
    assert pv.wait(15) == 2
    assert "--id 7 does not name a [peer.N] section" in pv.log_text()[mark:]
    mark = pv.mark()
    pv = lab.start_pgvigil("gw1", pgvigil_bin, conf_ok)
    pv.wait_log(r"event=daemon-started peer=4 ", since=mark)
    assert pv.stop() == 0


def test_hook_sleeping_forever_is_killed_with_its_grandchild(lab, pgvigil_bin):
    peers = three_peers(lab)
    wd = lab.workdir
    # The hook records its own pid and its background grandchild's, then hangs
    # and ignores SIGTERM so that only the SIGKILL after the grace ends it.
    cmd = (f"trap '' TERM; echo $$ > {wd}/hook.pid; sleep 1000 & echo $! > {wd}/gc.pid; "
           "echo started; while :; do sleep 1; done")
    conf = lab.pgvigil_config(peers, hooks={"notify_command": cmd, "hook_timeout": "1s",
                                            "hook_kill_grace": "500ms"})
    pv = lab.start_pgvigil("gw1", pgvigil_bin, conf)
    pv.wait_log(r"event=daemon-started peer=1 ")
    hook_pid = read_pid(f"{wd}/hook.pid")
    gc_pid = read_pid(f"{wd}/gc.pid")
    assert pid_alive(hook_pid) and pid_alive(gc_pid)
    pv.wait_log(r"hook notify\[\d+\]: started")
    pv.wait_log(r"event=hook-timeout hook=notify ", timeout=5)
    m = pv.wait_log(r"event=hook-finished hook=notify pid=(\d+) outcome=timeout .*duration_ms=(\d+)",
                    timeout=5)
    assert int(m.group(1)) == hook_pid
    assert 1400 <= int(m.group(2)) < 5000     # 1 s timeout + 0.5 s grace
    # Neither the hook nor its grandchild survives, and neither is a zombie.
    wait_for(lambda: not pid_alive(hook_pid) and not pid_alive(gc_pid), 5,
             "hook and grandchild gone")
    assert not os.path.exists(f"/proc/{gc_pid}")
    # The daemon kept running its loop throughout and stops cleanly.
    assert pv.alive()
    assert pv.stop() == 0


def test_hook_still_running_at_stop_is_killed(lab, pgvigil_bin):
    peers = three_peers(lab)
    wd = lab.workdir
    cmd = f"echo $$ > {wd}/hook.pid; sleep 1000 & echo $! > {wd}/gc.pid; wait"
    conf = lab.pgvigil_config(peers, hooks={"notify_command": cmd, "hook_timeout": "1h",
                                            "hook_kill_grace": "1s"})
    pv = lab.start_pgvigil("gw1", pgvigil_bin, conf)
    hook_pid = read_pid(f"{wd}/hook.pid")
    gc_pid = read_pid(f"{wd}/gc.pid")
    assert pv.stop() == 0
    assert "outcome=cancelled" in pv.log_text()
    wait_for(lambda: not pid_alive(hook_pid) and not pid_alive(gc_pid), 5,
             "hook and grandchild gone after stop")


def test_doc_check_fails_when_a_setting_is_undocumented(pgvigil_bin, tmp_path):
    src = tmp_path / "src"
    for sub in ("etc", "doc", "core", "hooks", "ctl"):
        shutil.copytree(REPO / sub, src / sub)
    check = str(REPO / "tests" / "check-docs")
    ok = subprocess.run([check, pgvigil_bin, str(src)], capture_output=True, text=True,
                        timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    sample = src / "etc" / "pgvigil.conf.sample"
    text = sample.read_text()
    stripped = re.sub(r"^#?\s*hook_kill_grace\s*=.*$", "", text, flags=re.M)
    assert stripped != text
    sample.write_text(stripped)
    bad = subprocess.run([check, pgvigil_bin, str(src)], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 1
    assert "hook_kill_grace" in bad.stdout + bad.stderr

