#!/usr/bin/python3
"""bench_vip.py - how long clients are cut off when the VIP moves.

Run as root (it builds a lab of network namespaces, see tests/lab):

    bench/bench_vip.py [--runs 20] [--bin build/release/pgvigil] [--only pgvigil|keepalived]

Each run builds a fresh lab: peers gw1..gw3 (192.0.2.1-3) and a client
(192.0.2.100). Every peer namespace runs a tiny TCP listener on
0.0.0.0:5432 that answers each connection with its host name and closes it,
so it accepts through the VIP as soon as its kernel has the address. In the
client namespace a prober starts a TCP connect to 192.0.2.200:5432 every
10 ms (non-blocking, several in flight, 50 ms timeout each: connect plus the
name) and prints a timestamped line per attempt. The figure of a run is the
time from the fault (t0, taken just before the first step of it) to the
first answered connect from a host other than the old holder.

Scenarios:
  pgvigil host crash   3 peers, default settings; SIGKILL of the holder's
                       daemon, then its veth set down on the bridge side
                       (lab.isolate link mode): its kernel keeps the VIP, but
                       nothing reaches it any more.
  pgvigil clean stop   SIGTERM of the holder's daemon (it releases the VIP and
                       hands over).
  keepalived crash     keepalived 2.2.7 (Debian package) in each peer namespace,
                       one vrrp_instance, priorities 150/100/50, advert_int 1,
                       unicast between the lab addresses, no authentication.
                       Fault on the MASTER: every keepalived process of that
                       namespace is frozen (SIGSTOP) then killed (SIGKILL), by
                       pid, so no child can shut down gracefully; then its veth
                       down, as above.
  keepalived clean stop   SIGTERM of the MASTER's keepalived (it sends
                       priority 0 and removes the VIP), for comparison with
                       the pgvigil clean stop.

Everything runs inside lab namespaces through lab.popen()/lab.run(), is
tracked and stopped by pid, and has a deadline. Nothing is aimed at a lab
address from the root namespace. Prints markdown tables with p50/p99
(nearest-rank), min and max. Timings are not asserted: a measurement, not a
test.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tests", "lab"))
import pgvlab  # noqa: E402

PYTHON = "/usr/bin/python3"
VIP = pgvlab.vip_addr(0)[0]
PORT = 5432
PEERS = [(1, "gw1"), (2, "gw2"), (3, "gw3")]
CLIENT = "client"
RUN_DEADLINE = 15.0          # per run: a fault not healed by then counts as a failed run

LISTENER_PY = r"""
import socket, sys, time
name, port, maxsec = sys.argv[1].encode(), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(256)
print("ready", flush=True)
end = time.monotonic() + maxsec
while True:
    left = end - time.monotonic()
    if left <= 0:
        break
    s.settimeout(left)
    try:
        c, _ = s.accept()
    except socket.timeout:
        break
    try:
        c.sendall(name)
    except OSError:
        pass
    c.close()
"""

# "<t_start> <t_end> ok <host>" / "<t_start> <t_end> fail <why>" per attempt.
PROBER_PY = r"""
import errno, selectors, socket, sys, time
vip, port = sys.argv[1], int(sys.argv[2])
period, tmo, maxsec = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
sel = selectors.DefaultSelector()
out = sys.stdout
print("ready", flush=True)
now = time.monotonic()
end, nxt = now + maxsec, now
live = {}
def done(s, ok, what):
    t0 = live.pop(s)[0]
    try:
        sel.unregister(s)
    except (KeyError, ValueError):
        pass
    s.close()
    out.write("%.6f %.6f %s %s\n" % (t0, time.monotonic(), "ok" if ok else "fail", what))
    out.flush()
while True:
    now = time.monotonic()
    if now >= end:
        break
    if now >= nxt:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((vip, port))
        live[s] = [now, "connecting"]
        if rc in (0, errno.EINPROGRESS):
            sel.register(s, selectors.EVENT_WRITE)
        else:
            done(s, False, errno.errorcode.get(rc, str(rc)))
        nxt += period
        if nxt < now:
            nxt = now + period
    for s, (t0, st) in list(live.items()):
        if now - t0 > tmo:
            done(s, False, "timeout-" + st)
    wait = nxt - time.monotonic()
    if live:
        wait = min(wait, min(t0 + tmo for t0, _ in live.values()) - time.monotonic())
    for key, ev in sel.select(max(0.0, wait)):
        s = key.fileobj
        if s not in live:
            continue
        if live[s][1] == "connecting":
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                done(s, False, errno.errorcode.get(err, str(err)))
                continue
            live[s][1] = "reading"
            sel.modify(s, selectors.EVENT_READ)
        else:
            try:
                data = s.recv(64)
            except OSError as e:
                done(s, False, "recv-" + errno.errorcode.get(e.errno, str(e.errno)))
                continue
            done(s, bool(data), data.decode(errors="replace") or "eof")
"""


class NsProc:
    """A helper in a lab namespace, output to a file in the lab workdir."""

    def __init__(self, lab, host, name, argv):
        self.lab = lab
        self.path = os.path.join(lab.workdir, f"{name}.{host}.out")
        with open(self.path, "wb") as f:
            self.proc = lab.popen(host, argv, stdout=f, stderr=f, kind="bench")
        deadline = time.monotonic() + 10
        while "ready" not in self.lines():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} on {host} did not start: {self.lines()[-5:]}")
            time.sleep(0.01)

    def lines(self):
        try:
            with open(self.path, errors="replace") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def results(self):
        out = []
        for ln in self.lines():
            f = ln.split()
            if len(f) == 4 and f[2] in ("ok", "fail"):
                out.append((float(f[0]), float(f[1]), f[2] == "ok", f[3]))
        return out


def make_lab():
    lab = pgvlab.Lab()
    for i, h in PEERS:
        lab.add_host(h, *pgvlab.peer_addr(i))
    lab.add_host(CLIENT, *pgvlab.client_addr())
    for _, h in PEERS:
        NsProc(lab, h, "listener", [PYTHON, "-c", LISTENER_PY, h, str(PORT), "120"])
    return lab


def kernel_holders(lab):
    out = []
    for _, h in PEERS:
        r = lab.run(h, [pgvlab.IP, "-o", "-4", "addr", "show", "dev", "eth0"], timeout=10)
        if f" {VIP}/" in r.stdout:
            out.append(h)
    return out


def wait_steady(lab, prober, timeout=20.0, need=0.5):
    """Exactly one namespace has the VIP and the prober has been answered by
    it, without a failure, for `need` seconds. Returns that host."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hs = kernel_holders(lab)
        if len(hs) == 1:
            res = prober.results()
            now = time.monotonic()
            recent = [r for r in res if r[0] >= now - need - 0.1]
            if recent and recent[0][0] <= now - need and \
                    all(r[2] and r[3] == hs[0] for r in recent):
                return hs[0]
        time.sleep(0.1)
    raise RuntimeError(f"no steady VIP holder within {timeout}s (kernel holders "
                       f"{kernel_holders(lab)}, last probes {prober.lines()[-3:]})")


def first_answer(prober, t0, old, timeout=RUN_DEADLINE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ts, te, ok, who in prober.results():
            if ok and te >= t0 and who != old:
                return te - t0, who
        time.sleep(0.02)
    return None, None


def descendants(pid):
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = pgvlab._proc_stat(int(name))
            if st:
                kids.setdefault(st[1], []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


# --------------------------------------------------------------------------
# pgvigil

def run_pgvigil(binary, fault):
    lab = make_lab()
    try:
        conf = lab.pgvigil_config(PEERS, log_level="info",
                                  extra_sections=f"[vip]\naddress = {VIP}\ninterface = eth0\n")
        pvs = {h: lab.start_pgvigil(h, binary, conf) for _, h in PEERS}
        prober = NsProc(lab, CLIENT, "prober",
                        [PYTHON, "-c", PROBER_PY, VIP, str(PORT), "0.010", "0.050", "90"])
        old = wait_steady(lab, prober)
        st = lab.pgvigil_status(old)
        if not (st and st["vip"]["state"] == "held"):
            raise RuntimeError(f"{old} has the VIP but reports {st and st['vip']}")
        t0 = time.monotonic()
        if fault == "crash":
            lab.stop(pvs[old].proc, signal.SIGKILL, 5.0)
            lab.isolate(old, "link")
        else:
            pvs[old].signal(signal.SIGTERM)
        took, who = first_answer(prober, t0, old)
        return took, old, who
    finally:
        lab.teardown()


# --------------------------------------------------------------------------
# keepalived

KEEPALIVED_CONF = """\
global_defs {{
    router_id {host}
}}

vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {prio}
    advert_int 1
    unicast_src_ip {src}
    unicast_peer {{
{peers}
    }}
    virtual_ipaddress {{
        {vip}/32 dev eth0
    }}
}}
"""


def keepalived_bin():
    p = shutil.which("keepalived") or "/usr/sbin/keepalived"
    if not os.access(p, os.X_OK):
        raise RuntimeError("keepalived not found: apt-get install keepalived")
    return p


def start_keepalived(lab, kbin):
    procs = {}
    prios = {1: 150, 2: 100, 3: 50}
    for i, h in PEERS:
        d = os.path.join(lab.workdir, "keepalived", h)
        os.makedirs(d, exist_ok=True)
        peers = "\n".join(f"        {pgvlab.peer_addr(j)[0]}" for j, _ in PEERS if j != i)
        conf = os.path.join(d, "keepalived.conf")
        with open(conf, "w") as f:
            f.write(KEEPALIVED_CONF.format(host=h, state="MASTER" if i == 1 else "BACKUP",
                                           prio=prios[i], src=pgvlab.peer_addr(i)[0],
                                           peers=peers, vip=VIP))
        with open(os.path.join(d, "keepalived.log"), "ab") as logf:
            procs[h] = lab.popen(h, [kbin, "-n", "-l", "-D", "-f", conf,
                                     "-p", os.path.join(d, "keepalived.pid"),
                                     "-r", os.path.join(d, "vrrp.pid"),
                                     "-c", os.path.join(d, "checkers.pid")],
                                 stdout=logf, stderr=subprocess.STDOUT, kind="keepalived")
    return procs


def crash_processes(lab, proc):
    """Freeze, then kill, a keepalived parent and all its children, by pid."""
    pids = [proc.pid] + descendants(proc.pid)
    sts = {p: pgvlab._starttime(p) for p in pids}
    for p in pids:
        pgvlab._kill(p, signal.SIGSTOP, sts[p])
    for p in pids:
        pgvlab._kill(p, signal.SIGKILL, sts[p])
    lab.stop(proc, signal.SIGKILL, 5.0)


def run_keepalived(kbin, fault):
    lab = make_lab()
    try:
        procs = start_keepalived(lab, kbin)
        prober = NsProc(lab, CLIENT, "prober",
                        [PYTHON, "-c", PROBER_PY, VIP, str(PORT), "0.010", "0.050", "90"])
        old = wait_steady(lab, prober)
        t0 = time.monotonic()
        if fault == "crash":
            crash_processes(lab, procs[old])
            lab.isolate(old, "link")
        else:
            procs[old].send_signal(signal.SIGTERM)
        took, who = first_answer(prober, t0, old)
        return took, old, who
    finally:
        lab.teardown()


# --------------------------------------------------------------------------

def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, -(-len(xs) * p // 100) - 1))
    return xs[int(k)]


def row(system, fault, xs, failed):
    runs = f"{len(xs)}" + (f" ({failed} failed)" if failed else "")
    if not xs:
        return f"| {system} | {fault} | {runs} | - | - | - | - |"
    return (f"| {system} | {fault} | {runs} | {pct(xs, 50):.0f} ms | {pct(xs, 99):.0f} ms | "
            f"{min(xs):.0f} ms | {max(xs):.0f} ms |")


def series(name, fn, runs):
    xs, failed = [], 0
    for r in range(runs):
        try:
            took, old, who = fn()
        except Exception as e:                          # a broken run is reported, not hidden
            print(f"{name} run {r + 1}: error: {e}", file=sys.stderr, flush=True)
            failed += 1
            continue
        if took is None:
            print(f"{name} run {r + 1}: no answer from another host within {RUN_DEADLINE}s "
                  f"(old holder {old})", file=sys.stderr, flush=True)
            failed += 1
            continue
        xs.append(took * 1000)
        print(f"{name} run {r + 1}: {old} -> {who} {took * 1000:.0f} ms", file=sys.stderr,
              flush=True)
    return xs, failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--bin", default=os.environ.get("PGVIGIL_BIN") or os.path.join(
        os.path.dirname(os.path.realpath(__file__)), "..", "build", "release", "pgvigil"))
    ap.add_argument("--only", choices=("pgvigil", "keepalived"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_vip: run as root (network namespaces)")
    binary = os.path.abspath(a.bin)
    t_start = time.monotonic()
    rows = []
    if a.only in (None, "pgvigil"):
        if not os.access(binary, os.X_OK):
            sys.exit(f"bench_vip: {binary} not found (--bin)")
        xs, f = series("pgvigil crash", lambda: run_pgvigil(binary, "crash"), a.runs)
        rows.append(row("pgvigil (defaults)", "holder host crash (kill -9 + link down)", xs, f))
        xs, f = series("pgvigil stop", lambda: run_pgvigil(binary, "stop"), a.runs)
        rows.append(row("pgvigil (defaults)", "holder clean stop (SIGTERM)", xs, f))
    if a.only in (None, "keepalived"):
        kbin = keepalived_bin()
        ver = subprocess.run([kbin, "--version"], capture_output=True, text=True, timeout=10)
        kver = (ver.stderr or ver.stdout).splitlines()[0] if (ver.stderr or ver.stdout) else "?"
        xs, f = series("keepalived crash", lambda: run_keepalived(kbin, "crash"), a.runs)
        rows.append(row(f"{kver.split(' (')[0]} (advert_int 1)",
                        "MASTER host crash (kill -9 + link down)", xs, f))
        xs, f = series("keepalived stop", lambda: run_keepalived(kbin, "stop"), a.runs)
        rows.append(row(f"{kver.split(' (')[0]} (advert_int 1)", "MASTER clean stop (SIGTERM)",
                        xs, f))
    print(f"\nVIP failover: fault -> first TCP connect through {VIP}:{PORT} answered by "
          "another host (client probes every 10 ms, 50 ms timeout)\n")
    print("| system | fault | runs | p50 | p99 | min | max |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)
    print(f"\n(total runtime {time.monotonic() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
