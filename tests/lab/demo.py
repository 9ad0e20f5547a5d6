#!/usr/bin/python3
"""demo.py - the pgvigil demo: a lab cluster in network namespaces, shown step by step.

Run through ./run-demo, which installs what is missing and builds pgvigil first.

    demo.py BINARY          bring the lab up, show it, tear it down on Enter
    demo.py BINARY --keep   leave it running; `demo.py down` removes it
    demo.py down            tear down a lab left by --keep

It shows only what runs at this stage: PostgreSQL replication in the lab,
three pgvigil peers that find themselves, check and reload their
configuration, run hooks and stop cleanly. Every claim printed is read back
from the lab (psql output, the daemons' event tokens), not asserted.
"""

import os
import re
import signal
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import pgvlab  # noqa: E402

DEMO_DIR = "/tmp/pgvigil-demo"
VIP = pgvlab.vip_addr(0)[0]
STATE = os.path.join(DEMO_DIR, "lab.json")
BOLD = "\033[1m" if sys.stdout.isatty() else ""
DIM = "\033[2m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""


def say(msg=""):
    print(msg, flush=True)


def step(n, title):
    say()
    say(f"{BOLD}[{n}] {title}{RESET}")


def show(lines, indent="    "):
    for line in lines:
        say(f"{indent}{DIM}{line}{RESET}")


def events(pv, since=0, pattern=r"event=\S+"):
    """The daemon's event lines after offset since, without the timestamp prefix."""
    out = []
    for line in pv.log_text()[since:].splitlines():
        if re.search(pattern, line):
            out.append(re.sub(r"^\S+ \S+ UTC \[\d+\] ", "", line))
    return out


def status(lab, host, timeout=0.3):
    return lab.pgvigil_status(host, timeout)


def wait_coordinator(lab, hosts, timeout, exclude=None):
    """The host that holds a valid lease, and when it was first seen."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for h in hosts:
            st = status(lab, h) if h != exclude else None
            if st and st["lease_remaining_ms"] is not None:
                return h, time.monotonic()
        time.sleep(0.005)
    raise SystemExit(f"no coordinator within {timeout} s")


def vip_holder(lab, hosts):
    """The lab hosts whose eth0 has the VIP right now (read from the kernel)."""
    out = []
    for h in hosts:
        r = lab.run(h, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"], timeout=5)
        if f" {VIP}/" in r.stdout:
            out.append(h)
    return out


def client_neigh(lab):
    r = lab.run("client", ["ip", "neigh", "show", VIP], timeout=5)
    m = re.search(r"lladdr (\S+)", r.stdout)
    return m.group(1) if m else "none"


def mac_of(lab, host):
    r = lab.run(host, ["cat", "/sys/class/net/eth0/address"], timeout=5)
    return r.stdout.strip()


def client_reaches_vip(lab, timeout):
    """Time until the client completes a ping to the VIP (None if never)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        r = lab.run("client", ["ping", "-c1", "-W0.1", "-q", VIP], timeout=5)
        if r.returncode == 0:
            return time.monotonic() - start
    return None


def ctl_status(lab, binary, host):
    ctl = os.path.join(os.path.dirname(binary), "pgvigilctl")
    r = lab.run(host, [ctl, "-c", lab.pgvigil_dir(host)["conf"], "status"], timeout=10)
    return (r.stdout or r.stderr).rstrip().splitlines()


def down():
    if not os.path.exists(STATE):
        say(f"no demo lab recorded in {STATE}")
        return 0
    res = pgvlab.cleanup_stale(pgvlab.load_state(STATE)["prefix"], DEMO_DIR)
    say(f"demo lab removed: {res}")
    return 0


def demo(binary, keep):
    if os.path.exists(STATE):
        say(f"removing the lab a previous demo left in {DEMO_DIR}")
        down()
    lab = pgvlab.Lab(workdir=DEMO_DIR)
    t0 = time.monotonic()

    step(1, "the lab: network namespaces on a private bridge (never linked to this host)")
    peers = [(i, f"gw{i}") for i in (1, 2, 3)]
    for i, h in peers:
        lab.add_host(h, *pgvlab.peer_addr(i))
    lab.add_host("db1", *pgvlab.pg_addr(1))
    lab.add_host("db2", *pgvlab.pg_addr(2))
    lab.add_host("client", *pgvlab.client_addr())
    for name, h in lab.hosts.items():
        say(f"    {name:7} {lab.ns(name):18} {h.ipv4:14} {h.ipv6}")

    step(2, "PostgreSQL 15: primary on db1, streaming standby on db2 (pg_basebackup)")
    lab.add_postgres_primary("db1")
    lab.add_postgres_standby("db2", "db1")
    rep = lab.psql("db1", "SELECT application_name || ' ' || client_addr || ' ' || state "
                          "FROM pg_stat_replication")
    show([f"db1 pg_stat_replication: {rep}"])
    show([f"db2 pg_is_in_recovery(): {lab.psql('db2', 'SELECT pg_is_in_recovery()')}"])

    step(3, "replication is real: the client writes on db1, the row appears on db2")
    token = uuid.uuid4().hex[:12]
    lab.run("client", [lab.pg_bin("psql"), "-XAtq", "-h", lab.addr("db1"), "-U", "postgres",
                       "-c", "CREATE TABLE IF NOT EXISTS demo(t text, at timestamptz DEFAULT now());"
                             f"INSERT INTO demo(t) VALUES ('{token}')"],
            check=True, timeout=20)
    start = time.monotonic()
    seen = ""
    while time.monotonic() - start < 10 and seen != token:
        try:
            seen = lab.psql("db2", f"SELECT t FROM demo WHERE t = '{token}'")
        except pgvlab.LabError:
            seen = ""   # the CREATE TABLE has not been replayed yet
        if seen != token:
            time.sleep(0.02)
    if seen != token:
        raise SystemExit("the row did not reach the standby within 10 s")
    show([f"wrote {token} through 192.0.2.11 from the client; "
          f"read it on db2 after {1000 * (time.monotonic() - start):.0f} ms"])

    step(4, "configuration check: pgvigil -t")
    out = os.path.join(lab.workdir, "notify.log")
    conf = lab.pgvigil_config(peers, backends=[(1, "db1"), (2, "db2")],
                              extra_sections=f"[vip]\naddress = {VIP}\ninterface = eth0\n",
                              hooks={"notify_command": f"echo $(date +%%T) peer %i: %e >> {out}",
                                     "hook_timeout": "2s", "hook_kill_grace": "500ms"})
    conf_path = os.path.join(lab.workdir, "pgvigil.conf")
    with open(conf_path, "w") as f:
        f.write(conf.replace("@STATE_DIR@", "/var/lib/pgvigil"))
    r = subprocess.run([binary, "-t", "-c", conf_path], capture_output=True, text=True, timeout=10)
    show([f"$ pgvigil -t -c pgvigil.conf  ->  {r.stdout.strip()} (exit {r.returncode})"])
    bad_path = os.path.join(lab.workdir, "broken.conf")
    with open(bad_path, "w") as f:
        f.write(conf.replace("@STATE_DIR@", "var/lib/pgvigil").replace("port = 5480", "port = 0", 1)
                + "[vip]\naddress = 192.0.2.200\n")
    r = subprocess.run([binary, "-t", "-c", bad_path], capture_output=True, text=True, timeout=10)
    show([f"$ pgvigil -t -c broken.conf  ->  exit {r.returncode}"]
         + [f"  {line}" for line in r.stderr.splitlines()])

    step(5, "three pgvigil peers start; each finds its [peer.N] by its own address")
    t_start = time.monotonic()
    pvs = {h: lab.start_pgvigil(h, binary, conf) for _, h in peers}
    for i, h in peers:
        pvs[h].wait_log(rf"event=daemon-started peer={i} ")
        show(events(pvs[h], pattern=r"event=daemon-started"))

    step(6, "they elect a coordinator by majority (encrypted UDP heartbeats, terms, leases)")
    hosts = [h for _, h in peers]
    coord, t_elect = wait_coordinator(lab, hosts, 10)
    show([f"{coord} holds the coordinator lease {1000 * (t_elect - t_start):.0f} ms after start "
          "(a starting peer first waits election_timeout_min: it may have echoed a lease it forgot)"])
    time.sleep(0.3)
    show(["$ pgvigilctl status   (on gw1)"] + ctl_status(lab, binary, "gw1"))

    step(7, f"the coordinator holds the VIP {VIP}; the client reaches it")
    show([f"VIP on: {', '.join(vip_holder(lab, hosts)) or 'nobody'} (read from each host's kernel)"])
    t = client_reaches_vip(lab, 5)
    show([f"client: ping {VIP} ok" if t is not None else "client: ping failed",
          f"client neighbour entry: {VIP} at {client_neigh(lab)} = {coord}'s MAC {mac_of(lab, coord)}"])

    step(8, "the coordinator's host is lost (kill -9 and its link cut): VIP moves")
    old = coord
    t0 = time.monotonic()
    pvs[old].signal(signal.SIGKILL)
    lab.isolate(old)
    coord, t1 = wait_coordinator(lab, hosts, 10, exclude=old)
    t2 = client_reaches_vip(lab, 10)
    st = status(lab, coord)
    show([f"{coord} holds the lease {1000 * (t1 - t0):.0f} ms after the loss (term {st['term']})",
          f"client reaches the VIP again {1000 * (time.monotonic() - t0):.0f} ms after the loss"
          if t2 is not None else "client could not reach the VIP",
          f"client neighbour entry: {VIP} at {client_neigh(lab)} = {coord}'s MAC {mac_of(lab, coord)} "
          "(moved by the gratuitous ARP)"])
    show([f"{old}'s kernel still has the VIP: {old in vip_holder(lab, [old])} "
          "(a killed daemon cannot remove it; its link is cut, so nobody reaches it)"])
    lab.heal(old)
    mark = pvs[old].mark()
    pvs[old] = lab.start_pgvigil(old, binary, conf)
    pvs[old].wait_log(r"event=role-changed role=follower .*reason=\"following\"", timeout=10,
                      since=mark)
    purged = [line for line in events(pvs[old], mark, r"event=vip-purged")]
    show(purged + [f"{old} restarted: it removed the VIP the crash left (nobody is entitled at start) "
                   f"and follows {coord}; VIP on: {', '.join(vip_holder(lab, hosts))}"])

    step(9, "clean stop of the coordinator hands over at once, VIP included")
    old = coord
    t0 = time.monotonic()
    pvs[old].signal(signal.SIGTERM)
    coord, t1 = wait_coordinator(lab, hosts, 10, exclude=old)
    t2 = client_reaches_vip(lab, 10)
    show([f"{coord} holds the lease {1000 * (t1 - t0):.0f} ms after SIGTERM of {old} (no election timeout); "
          f"client reaches the VIP at {1000 * (time.monotonic() - t0):.0f} ms; VIP on: "
          f"{', '.join(vip_holder(lab, hosts))}"])
    assert pvs[old].wait(10) == 0
    mark = pvs[old].mark()
    pvs[old] = lab.start_pgvigil(old, binary, conf)
    pvs[old].wait_log(r"reason=\"following\"", timeout=10, since=mark)

    step(10, "SIGHUP reload is all or nothing")
    pv = pvs["gw2"]
    good = open(pv.conf_path).read()
    with open(pv.conf_path, "w") as f:
        f.write(good + "\nthis line is not INI\n")
    mark = pv.mark()
    pv.signal(signal.SIGHUP)
    pv.wait_log(r"event=config-reload-failed", since=mark)
    show(events(pv, mark, r"error|event=config"))
    with open(pv.conf_path, "w") as f:
        f.write(good.replace("log_level = info", "log_level = debug"))
    mark = pv.mark()
    pv.signal(signal.SIGHUP)
    pv.wait_log(r"event=config-reloaded", since=mark)
    show(events(pv, mark, r"event=config"))

    step(11, "hooks: notify_command ran on every event (shell-quoted placeholders, own process group)")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = open(out).read().splitlines() if os.path.exists(out) else []
        if len(lines) >= 5:
            break
        time.sleep(0.05)
    show(lines)

    step(12, "a hook that hangs is killed at its timeout, with its grandchild")
    hung = os.path.join(lab.workdir, "hung.conf")
    with open(hung, "w") as f:
        f.write(good.replace(f"echo $(date +%%T) peer %i: %e >> {out}",
                             "trap '' TERM; sleep 600 & echo grandchild $!; wait"))
    os.replace(hung, pv.conf_path)
    mark = pv.mark()
    pv.signal(signal.SIGHUP)
    pv.wait_log(r"event=hook-finished hook=notify .*outcome=timeout", since=mark, timeout=10)
    show(events(pv, mark, r"event=hook|hook notify\["))
    gc = int(pv.wait_log(r"hook notify\[\d+\]: grandchild (\d+)", since=mark).group(1))
    gone = not os.path.exists(f"/proc/{gc}")
    show([f"grandchild {gc} (sleep 600): {'gone' if gone else 'STILL RUNNING'}"])

    step(13, "clean stop: SIGTERM")
    for _, h in peers:
        mark = pvs[h].mark()
        rc = pvs[h].stop()
        show(events(pvs[h], mark, r"event=daemon-stop") + [f"exit status {rc}"])

    say()
    say(f"{BOLD}The lab came up and ran in {time.monotonic() - t0:.1f} s.{RESET} "
        "The next stage adds PostgreSQL failover to this drill.")
    say(f"Logs and data: {lab.workdir}")
    if keep:
        # The daemons were stopped in step 9; restart them so the lab keeps running.
        for _, h in peers:
            lab.start_pgvigil(h, binary, good if h == "gw2" else conf)
        state = lab.detach()
        say(f"The lab keeps running (PostgreSQL on db1/db2, pgvigil on gw1-gw3). "
            f"Enter a host with: ip netns exec {lab.ns('client')} bash")
        say(f"Remove it with: ./run-demo down   (state: {state})")
        return 0
    if sys.stdin.isatty():
        try:
            input("Press Enter to tear the lab down... ")
        except EOFError:
            pass
    lab.teardown()
    say("lab torn down: namespaces, processes and files removed")
    return 0


def main(argv):
    if len(argv) >= 1 and argv[0] == "down":
        return down()
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    return demo(os.path.abspath(argv[0]), "--keep" in argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
