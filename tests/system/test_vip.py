"""System tests of the virtual IP: the coordinator with a valid lease holds
it, and clients follow it from host to host (DESIGN.md section 5, S1).

Each test builds its own lab (conftest.py): pgvigil peers gw1..gw3 at
192.0.2.1-3 with the VIP 192.0.2.200 (or 2001:db8::200) on their eth0, and a
client at 192.0.2.100. The daemon runs with its default timings. The tests
assert on

- the daemon's event tokens (doc/events.md) and its status JSON ("vip");
- what each namespace's kernel holds: `ip -o addr show dev eth0` and, for
  the tag ip(8) of this iproute2 cannot print (IFA_PROTO), a netlink dump;
- what the client's kernel learnt: `ip neigh` / `ip -6 neigh`, and the ARP
  frames it received (an AF_PACKET capture inside the client namespace).

Helpers that must be fast (a netlink sampler every 10 ms, an ARP capture,
the foreign-delete timer) are small stdlib Python programs run *inside* a
lab namespace with lab.popen()/lab.run(), tracked and stopped by pid, each
with its own deadline. Their timestamps are CLOCK_MONOTONIC, the clock of
time.monotonic() here: timestamps from different namespaces compare.

"Host crash" everywhere below is: SIGKILL of the daemon, then its veth set
down on the bridge side (lab.isolate(host, "link")), in that order: the
kernel of the dead host keeps the VIP but nobody can reach it any more.
"""

import json
import os
import re
import signal
import time

import pytest

import pgvlab

PYTHON = "/usr/bin/python3"
IP = pgvlab.IP
VIP4, VIP6 = pgvlab.vip_addr(0)
CLIENT = "client"

# The daemon's defaults (pgvigil.conf(5)), in seconds.
HEARTBEAT = 0.100
ELECTION_MIN = 0.700
ELECTION_MAX = 1.100
LEASE = 0.500
PROBE_TIMEOUT = 0.100
CONFLICT_RETRY = 1.0
ANNOUNCE_AT = (0.0, 0.5, 1.5, 3.5)       # announce_count 4, announce_interval 500 ms, doubling
STEP_DOWN_HOLD = 5.0
READD_MAX = 5                            # re-adds tolerated in READD_WINDOW
READD_WINDOW = 10.0
VIP_PROTO = 0xa7                         # IFA_PROTO of pgvigil's addresses

# Bounds (same derivation as test_watchdog.py): an election at start, an
# election after the coordinator went silent; a VIP adds the probe window.
BOOT_BOUND = ELECTION_MIN + ELECTION_MAX + 1.0                 # 2.8 s
FAILOVER_BOUND = ELECTION_MAX + 1.0                            # 2.1 s
VIP_FAILOVER_BOUND = FAILOVER_BOUND + PROBE_TIMEOUT + 0.3      # 2.5 s
SCHEDULE_TOL = 0.150
READD_BOUND = 0.100


# --------------------------------------------------------------------------
# events in the daemon log (the format of test_watchdog.py)

events = pgvlab.log_events
wait_event = pgvlab.wait_log_event


def wait_for(what, timeout, fn, period=0.02):
    """Poll fn() until it returns something true; return it (bounded).
    `what` may be a callable, for a message that shows the state at the end."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what() if callable(what) else what}: not within {timeout}s")
        time.sleep(period)


# --------------------------------------------------------------------------
# programs run inside lab namespaces

# Netlink (NETLINK_ROUTE) address tool, stdlib only.
#   dump IFNAME                          -> JSON list of IFNAME's addresses
#   sample IFNAME VIP PERIOD MAXSEC      -> "ready", then "<monotonic> <0|1>" per dump
#   readd IFNAME VIP PLEN TIMEOUT IP     -> runs `IP addr del VIP/PLEN dev IFNAME`
#                                           and times the kernel's DELADDR and the
#                                           next NEWADDR of VIP (JSON)
NL_PY = r"""
import json, socket, struct, subprocess, sys, time
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR, NLMSG_ERROR, NLMSG_DONE = 20, 21, 22, 2, 3
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_FLAGS, IFA_PROTO = 1, 2, 3, 8, 11

def parse(data):
    off = 0
    while off + 16 <= len(data):
        ln, typ = struct.unpack_from("=IH", data, off)
        if ln < 16:
            return
        body = data[off + 16:off + ln]
        off += (ln + 3) & ~3
        if typ == NLMSG_DONE:
            yield "done", None
        elif typ == NLMSG_ERROR:
            yield "error", struct.unpack_from("=i", body, 0)[0]
        elif typ in (RTM_NEWADDR, RTM_DELADDR) and len(body) >= 8:
            fam, plen, fl, scope, idx = struct.unpack_from("=BBBBI", body, 0)
            a = {"family": fam, "prefixlen": plen, "flags": fl, "scope": scope,
                 "ifindex": idx, "label": "", "proto": 0}
            loc = adr = None
            p = 8
            while p + 4 <= len(body):
                alen, atyp = struct.unpack_from("=HH", body, p)
                if alen < 4:
                    break
                val = body[p + 4:p + alen]
                if atyp == IFA_LOCAL:
                    loc = val
                elif atyp == IFA_ADDRESS:
                    adr = val
                elif atyp == IFA_LABEL:
                    a["label"] = val.split(b"\0")[0].decode()
                elif atyp == IFA_FLAGS and len(val) >= 4:
                    a["flags"] = struct.unpack_from("=I", val)[0]
                elif atyp == IFA_PROTO and len(val) >= 1:
                    a["proto"] = val[0]
                p += (alen + 3) & ~3
            raw = loc if loc is not None else adr
            a["address"] = socket.inet_ntop(fam, raw) if raw else ""
            yield ("new" if typ == RTM_NEWADDR else "del"), a

class Dumper:
    def __init__(self):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.s.bind((0, 0))
        self.s.settimeout(2.0)
        self.seq = 0

    def dump(self, family, ifindex):
        self.seq += 1
        req = struct.pack("=IHHII", 16 + 8, RTM_GETADDR, 0x301, self.seq, 0) + \
            struct.pack("=BBBBI", family, 0, 0, 0, 0)
        self.s.send(req)
        out = []
        while True:
            data = self.s.recv(1 << 16)
            for kind, a in parse(data):
                if kind == "done":
                    return out
                if kind == "error":
                    raise OSError(-a, "netlink dump failed")
                if a["ifindex"] == ifindex:
                    out.append(a)

mode, ifname = sys.argv[1], sys.argv[2]
ifindex = socket.if_nametoindex(ifname)
if mode == "dump":
    d = Dumper()
    print(json.dumps(d.dump(socket.AF_INET, ifindex) + d.dump(socket.AF_INET6, ifindex)))
elif mode == "sample":
    vip, period, maxsec = sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
    fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
    vip = socket.inet_ntop(fam, socket.inet_pton(fam, vip))
    d = Dumper()
    print("ready", flush=True)
    end = time.monotonic() + maxsec
    nxt = time.monotonic()
    while True:
        t = time.monotonic()
        if t >= end:
            break
        held = any(a["address"] == vip for a in d.dump(fam, ifindex))
        sys.stdout.write("%.6f %d\n" % (t, held))
        sys.stdout.flush()
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            nxt = time.monotonic()
elif mode == "readd":
    vip, plen, timeout, ipcmd = sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6]
    fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
    vip = socket.inet_ntop(fam, socket.inet_pton(fam, vip))
    mon = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    mon.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    mon.bind((0, 0x10 | 0x100))           # RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
    # Not waited for here: this process must be in recv() when the kernel
    # reports the delete, so that both notifications are timed as they come.
    t_cmd = time.monotonic()
    p = subprocess.Popen([ipcmd, "addr", "del", "%s/%s" % (vip, plen), "dev", ifname],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    res = {"t_cmd": t_cmd, "t_del": None, "t_new": None, "new": None}
    deadline = time.monotonic() + timeout
    while res["t_new"] is None:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        mon.settimeout(left)
        try:
            data = mon.recv(1 << 16)
        except socket.timeout:
            break
        t = time.monotonic()
        for kind, a in parse(data):
            if kind not in ("new", "del") or a["ifindex"] != ifindex or a["address"] != vip:
                continue
            if kind == "del" and res["t_del"] is None:
                res["t_del"] = t
            elif kind == "new" and res["t_del"] is not None:
                res["t_new"], res["new"] = t, a
                break
    try:
        _, err = p.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate(timeout=5)
    res["rc"], res["stderr"] = p.returncode, err.strip()
    print(json.dumps(res))
"""

# ARP capture: "ready", then one line per ARP frame seen on IFNAME:
#   <monotonic> <pkttype> <op> <eth src> <sha> <spa> <tha> <tpa>
# (pkttype 4 = sent by this host). Ends after MAXSEC or on SIGTERM.
ARPCAP_PY = r"""
import socket, struct, sys, time
ifname, maxsec = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((ifname, 0))
mac = lambda b: ":".join("%02x" % x for x in b)
print("ready", flush=True)
end = time.monotonic() + maxsec
while True:
    left = end - time.monotonic()
    if left <= 0:
        break
    s.settimeout(left)
    try:
        frame, addr = s.recvfrom(2048)
    except socket.timeout:
        break
    t = time.monotonic()
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        continue
    a = frame[14:42]
    op = struct.unpack("!H", a[6:8])[0]
    print("%.6f %d %d %s %s %s %s %s" % (t, addr[2], op, mac(frame[6:12]), mac(a[8:14]),
          socket.inet_ntoa(a[14:18]), mac(a[18:24]), socket.inet_ntoa(a[24:28])), flush=True)
"""


class NsProc:
    """A helper program running inside a lab namespace, output to a file in
    the lab workdir; stopped by pid (lab.stop)."""

    def __init__(self, lab, host, name, argv):
        self.lab, self.host = lab, host
        self.path = os.path.join(lab.workdir, f"{name}.{host}.{time.monotonic_ns()}.out")
        with open(self.path, "wb") as f:
            self.proc = lab.popen(host, argv, stdout=f, stderr=f, kind="probe")

    def lines(self):
        try:
            with open(self.path, errors="replace") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while "ready" not in self.lines():
            if self.proc.poll() is not None or time.monotonic() >= deadline:
                raise AssertionError(f"helper on {self.host} did not start: "
                                     f"{self.lines()[-5:]}")
            time.sleep(0.01)
        return self

    def stop(self):
        if self.proc.pid in self.lab._procs:
            self.lab.stop(self.proc, signal.SIGTERM, 5.0)
        return self.lines()


def nl_dump(lab, host):
    r = lab.run(host, [PYTHON, "-c", NL_PY, "dump", "eth0"], timeout=10)
    assert r.returncode == 0, f"netlink dump on {host} failed: {r.stderr}"
    return json.loads(r.stdout)


def hold_runs(samples):
    """Runs of consecutive samples [(t, held)] that saw the VIP: [(first, last)]."""
    runs, start, last = [], None, None
    for t, held in samples:
        if held:
            if start is None:
                start = t
            last = t
        elif start is not None:
            runs.append((start, last))
            start = None
    if start is not None:
        runs.append((start, last))
    return runs


def overlaps(runs, excused):
    """Two holders at once. runs: {peer: [(first, last)]} from hold_runs();
    excused: {peer: [(from, to)]}, times a peer's holding does not count
    (dead or frozen). Returns (unexcused, every) overlaps as
    (peer, peer, from, to)."""
    every, bad = [], []
    ids = sorted(runs)
    for x, a in enumerate(ids):
        for b in ids[x + 1:]:
            for s1, e1 in runs[a]:
                for s2, e2 in runs[b]:
                    lo, hi = max(s1, s2), min(e1, e2)
                    if lo > hi:
                        continue
                    every.append((a, b, lo, hi))
                    if not any(f <= lo and hi <= t for p in (a, b)
                               for f, t in excused.get(p, ())):
                        bad.append((a, b, lo, hi))
    return bad, every


class Sampler:
    """One netlink sampler per namespace: has the VIP or not, every 10 ms."""

    def __init__(self, lab, hosts, vip=VIP4, period=0.010, maxsec=120.0):
        self.procs = {h: NsProc(lab, h, "vipsample",
                                [PYTHON, "-c", NL_PY, "sample", "eth0", vip, str(period),
                                 str(maxsec)]) for h in hosts}
        for p in self.procs.values():
            p.wait_ready()
        self.samples = None

    def stop(self):
        out = {}
        for h, p in self.procs.items():
            rows = []
            for ln in p.stop():
                f = ln.split()
                if len(f) == 2 and f[1] in ("0", "1"):
                    rows.append((float(f[0]), f[1] == "1"))
            out[h] = rows
        self.samples = out
        return out

    def intervals(self, host):
        return hold_runs(self.samples[host])

    def ever_held(self, host, after=None, before=None):
        return [t for t, held in self.samples[host] if held and
                (after is None or t >= after) and (before is None or t <= before)]

    def count(self):
        return sum(len(v) for v in self.samples.values())


def arp_capture(lab, host=CLIENT, maxsec=60.0):
    return NsProc(lab, host, "arpcap", [PYTHON, "-c", ARPCAP_PY, "eth0", str(maxsec)]).wait_ready()


def parse_arp(lines):
    out = []
    for ln in lines:
        f = ln.split()
        if len(f) != 8:
            continue
        out.append({"t": float(f[0]), "pkttype": int(f[1]), "op": int(f[2]), "src": f[3],
                    "sha": f[4], "spa": f[5], "tha": f[6], "tpa": f[7]})
    return out


# --------------------------------------------------------------------------
# a cluster of pgvigil peers with a VIP, and a client

class VipCluster:
    def __init__(self, lab, binary, n=3, witness=(), vip=VIP4, vip_extra="", hooks=None):
        self.lab, self.binary, self.vip = lab, binary, vip
        self.family = 6 if ":" in vip else 4
        self.plen = 128 if self.family == 6 else 32
        self.ids = list(range(1, n + 1))
        self.hosts = {i: f"gw{i}" for i in self.ids}
        for i in self.ids:
            lab.add_host(self.hosts[i], *pgvlab.peer_addr(i))
        lab.add_host(CLIENT, *pgvlab.client_addr())
        extra = f"[vip]\naddress = {vip}\ninterface = eth0\n{vip_extra}"
        conf = lab.pgvigil_config([(i, self.hosts[i]) for i in self.ids],
                                  extra_sections=extra, hooks=hooks)
        for i in witness:
            conf = conf.replace(f"[peer.{i}]\n", f"[peer.{i}]\nwitness = yes\n")
        self.conf = conf
        self.pv = {}
        self._macs = {}

    # ---- daemons

    def start(self, i):
        self.pv[i] = self.lab.start_pgvigil(self.hosts[i], self.binary, self.conf)
        return self.pv[i]

    def start_all(self):
        for i in self.ids:
            self.start(i)

    def kill(self, i):
        rc = self.lab.stop(self.pv[i].proc, signal.SIGKILL, 5.0)
        assert rc == -signal.SIGKILL, f"peer {i} exited {rc} before it was killed"

    def host_crash(self, i):
        """SIGKILL the daemon, then cut the host's link (its kernel keeps the VIP)."""
        self.kill(i)
        self.lab.isolate(self.hosts[i], "link")

    def status(self, i, timeout=1.0):
        if i not in self.pv:
            return None
        return pgvlab.control_status(
            os.path.join(self.lab.pgvigil_dir(self.hosts[i])["state"], "pgvigil.sock"), timeout)

    def live(self):
        return [i for i in self.ids if i in self.pv and self.pv[i].alive()]

    # ---- what the kernels hold

    def mac(self, host):
        if isinstance(host, int):
            host = self.hosts[host]
        if host not in self._macs:
            r = self.lab.run(host, [IP, "-o", "link", "show", "dev", "eth0"], timeout=10)
            m = re.search(r"link/ether ([0-9a-f:]{17})", r.stdout)
            assert m, f"no MAC for eth0 on {host}: {r.stdout} {r.stderr}"
            self._macs[host] = m.group(1)
        return self._macs[host]

    def addr_lines(self, i):
        host = self.hosts[i] if isinstance(i, int) else i
        r = self.lab.run(host, [IP, "-o", "addr", "show", "dev", "eth0"], timeout=10)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    def vip_line(self, i):
        """The `ip -o addr show dev eth0` line of the VIP on host i, or None."""
        rx = re.compile(rf"\binet6? {re.escape(self.vip)}/(\d+)\b")
        found = [ln for ln in self.addr_lines(i) if rx.search(ln)]
        assert len(found) <= 1, found
        return found[0] if found else None

    def holders_by_kernel(self):
        return [i for i in self.ids if self.vip_line(i) is not None]

    def nl_vip(self, i):
        host = self.hosts[i] if isinstance(i, int) else i
        want = self.vip
        for a in nl_dump(self.lab, host):
            if a["address"] == want:
                return a
        return None

    # ---- waiting

    def holder_now(self, exclude=(), min_term=0):
        """(i, status) when exactly one answering peer reports the VIP held as
        coordinator, in a term >= min_term, not in exclude, and its kernel has
        the address; else None."""
        sts = {i: self.status(i) for i in self.live()}
        held = [i for i, st in sts.items() if st and st.get("vip") and
                st["vip"]["state"] == "held"]
        if len(held) != 1:
            return None
        h = held[0]
        st = sts[h]
        if h in exclude or st["coordinator"] != h or st["term"] < min_term:
            return None
        if self.vip_line(h) is None:
            return None
        return h, st

    def wait_holder(self, timeout, exclude=(), min_term=0, what="a VIP holder"):
        deadline = time.monotonic() + timeout
        while True:
            r = self.holder_now(exclude, min_term)
            if r is not None:
                return r
            if time.monotonic() >= deadline:
                now = {}
                for i in self.live():
                    st = self.status(i)
                    now[i] = st and (st["term"], st["coordinator"],
                                     st["lease_remaining_ms"], st.get("vip"))
                raise AssertionError(f"no {what} (excluding {list(exclude)}) within {timeout}s;"
                                     f" (term, coordinator, lease, vip) per peer: {now}")
            time.sleep(0.02)

    # ---- the client

    def neigh(self, family=None):
        """(lladdr or None, state) of the client's neighbour entry for the VIP."""
        fam = family or self.family
        r = self.lab.run(CLIENT, [IP, f"-{fam}", "neigh", "show", self.vip, "dev", "eth0"],
                         timeout=10)
        ln = r.stdout.strip()
        if not ln:
            return None, None
        m = re.search(r"lladdr ([0-9a-f:]{17})", ln)
        return (m.group(1) if m else None), ln.split()[-1]

    def ping(self):
        argv = ["ping", "-c1", "-W1", self.vip] if self.family == 4 else \
            ["ping", "-6", "-c1", "-W1", self.vip]
        return self.lab.run(CLIENT, argv, timeout=10)


def vipst(st):
    assert st is not None, "peer does not answer"
    return st["vip"]


# --------------------------------------------------------------------------
# 1. the coordinator holds the VIP, tagged, and a client reaches it

def test_coordinator_holds_vip_and_client_reaches_it(lab, pgvigil_bin):
    cl = VipCluster(lab, pgvigil_bin)
    t0 = time.monotonic()
    cl.start_all()
    h, st = cl.wait_holder(BOOT_BOUND + PROBE_TIMEOUT + 3)
    print(f"\n  VIP held by peer {h} {time.monotonic() - t0:.2f} s after start, term {st['term']}")
    ev = wait_event(cl.pv[h], "vip-acquired", 2, vip=VIP4, interface="eth0")
    assert ev["term"] == str(st["term"]), ev
    # The kernel: a /32 labelled eth0:vip, tagged with IFA_PROTO 0xa7.
    line = cl.vip_line(h)
    assert re.search(rf"\binet {re.escape(VIP4)}/32 .*\beth0:vip\b", line), line
    a = cl.nl_vip(h)
    assert a["prefixlen"] == 32 and a["label"] == "eth0:vip", a
    assert a["proto"] == VIP_PROTO, f"address not tagged with IFA_PROTO {VIP_PROTO:#x}: {a}"
    # Nobody else has it; everyone names the holder.
    for i in cl.ids:
        v = vipst(cl.status(i))
        assert v["address"] == VIP4 and v["interface"] == "eth0", v
        assert v["holder"] == h, (i, v)
        if i != h:
            assert cl.vip_line(i) is None, f"peer {i} also has the VIP: {cl.vip_line(i)}"
            assert v["state"] == "released", (i, v)
            assert not events(cl.pv[i], "vip-acquired")
    v = vipst(cl.status(h))
    assert v["state"] == "held" and v["announcements"] >= 1, v
    assert v["conflicts"] == 0 and v["foreign_deletes"] == 0 and v["readds"] == 0, v
    # The client reaches it, through the holder's MAC.
    r = cl.ping()
    assert r.returncode == 0, f"ping {VIP4} from the client failed: {r.stdout} {r.stderr}"
    mac, state = cl.neigh()
    print(f"  client: {VIP4} lladdr {mac} {state}; holder MAC {cl.mac(h)}")
    assert mac == cl.mac(h), (mac, state, cl.mac(h))
    assert state in ("REACHABLE", "STALE", "DELAY"), state


# --------------------------------------------------------------------------
# 2. the client's neighbour entry follows the VIP without the client asking

@pytest.mark.parametrize("arp_accept", [0, 1])
def test_neighbour_entry_follows_new_holder_after_host_loss(lab, pgvigil_bin, arp_accept):
    cl = VipCluster(lab, pgvigil_bin)
    lab.run(CLIENT, ["sysctl", "-q", "-w", f"net.ipv4.conf.eth0.arp_accept={arp_accept}"],
            timeout=10, check=True)
    cl.start_all()
    h, st = cl.wait_holder(BOOT_BOUND + PROBE_TIMEOUT + 3)
    assert cl.ping().returncode == 0
    mac, state = cl.neigh()
    assert mac == cl.mac(h) and state in ("REACHABLE", "STALE", "DELAY"), (mac, state)
    cap = arp_capture(lab)
    old = cl.mac(h)
    t0 = time.monotonic()
    cl.host_crash(h)
    deadline = t0 + VIP_FAILOVER_BOUND + 3
    seen = None
    while True:
        mac, state = cl.neigh()
        if mac is not None and mac != old:
            seen = time.monotonic()
            break
        assert time.monotonic() < deadline, \
            f"client entry still {mac} {state} {deadline - t0:.1f}s after the host loss"
        time.sleep(0.005)
    took = seen - t0
    frames = parse_arp(cap.stop())
    h2, st2 = cl.wait_holder(3, exclude=(h,))
    print(f"\n  arp_accept={arp_accept}: client entry moved {old} -> {mac} ({state}) "
          f"{took * 1000:.0f} ms after the host loss of peer {h}; new holder {h2}")
    assert mac == cl.mac(h2), (mac, cl.mac(h2))
    assert st2["term"] > st["term"]
    assert took <= VIP_FAILOVER_BOUND, f"{took:.2f}s > {VIP_FAILOVER_BOUND}s"
    # The client sent nothing: the entry moved on the new holder's GARP.
    sent = [f for f in frames if f["pkttype"] == 4 and f["t"] <= seen]
    assert not sent, f"the client sent ARP before its entry moved: {sent}"
    garp = [f for f in frames if f["op"] == 1 and f["spa"] == f["tpa"] == VIP4
            and f["sha"] == cl.mac(h2) and f["t"] <= seen]
    assert garp, f"no gratuitous ARP of {cl.mac(h2)} before the switch: {frames}"


# --------------------------------------------------------------------------
# 3. the announcement schedule, as the client receives it

def test_announcement_schedule_seen_by_client(lab, pgvigil_bin):
    cl = VipCluster(lab, pgvigil_bin)
    cl.start_all()
    h, st = cl.wait_holder(BOOT_BOUND + PROBE_TIMEOUT + 3)
    cap = arp_capture(lab)
    t0 = time.monotonic()
    cl.pv[h].signal(signal.SIGTERM)
    assert cl.pv[h].wait(10) == 0
    # A clean stop releases (DESIGN.md section 5).
    assert events(cl.pv[h], "vip-released", vip=VIP4, reason="clean stop"), cl.pv[h].log_tail()
    assert cl.vip_line(h) is None
    h2, st2 = cl.wait_holder(FAILOVER_BOUND + PROBE_TIMEOUT + 2, exclude=(h,))
    new = cl.mac(h2)

    def garps():
        return [f for f in parse_arp(cap.lines()) if f["op"] == 1 and f["t"] >= t0
                and f["spa"] == f["tpa"] == VIP4 and f["sha"] == new]
    first = wait_for("first gratuitous ARP of the new holder", 3, garps)[0]["t"]
    end = first + ANNOUNCE_AT[-1] + 0.7
    while time.monotonic() < end:
        time.sleep(0.05)
    frames = [f for f in parse_arp(cap.stop()) if f["t"] >= t0]
    g = [f for f in frames if f["op"] == 1 and f["spa"] == f["tpa"] == VIP4 and f["sha"] == new]
    offs = [f["t"] - first for f in g]
    print(f"\n  peer {h2} took over; gratuitous ARPs at +" +
          ", +".join(f"{o * 1000:.0f}" for o in offs) + " ms after the first")
    assert all(f["src"] == new and f["tha"] == "00:00:00:00:00:00" for f in g), g
    assert len(g) == len(ANNOUNCE_AT), f"expected {len(ANNOUNCE_AT)} GARPs, got {offs}"
    for want, got in zip(ANNOUNCE_AT, offs):
        assert abs(got - want) <= SCHEDULE_TOL, f"GARP at +{got:.3f}s, expected +{want}s: {offs}"
    # The RFC 5227 probe went first, probe_timeout before the first GARP.
    probes = [f for f in frames if f["op"] == 1 and f["spa"] == "0.0.0.0" and f["tpa"] == VIP4
              and f["sha"] == new and f["t"] <= first]
    assert probes, f"no ARP probe from the new holder before its first GARP: {frames[:10]}"
    gap = first - probes[-1]["t"]
    print(f"  probe -> first GARP: {gap * 1000:.0f} ms (probe_timeout {PROBE_TIMEOUT * 1000:.0f})")
    assert PROBE_TIMEOUT - 0.02 <= gap <= PROBE_TIMEOUT + SCHEDULE_TOL, gap
    # Reply form is off by default, and the old holder said nothing more.
    assert not [f for f in frames if f["op"] == 2 and f["spa"] == f["tpa"] == VIP4], frames
    assert not [f for f in frames if f["sha"] == cl.mac(h) and f["spa"] == VIP4], frames


# --------------------------------------------------------------------------
# 4. never two holders, sampled in every namespace every 10 ms

def test_the_overlap_checker_flags_two_holders():
    """The checker of test_vip_never_on_two_live_peers, on made-up samples."""
    def smp(*held, t0=0.0):
        return [(t0 + k * 0.01, bool(h)) for k, h in enumerate(held)]
    # peer 1 holds samples 1-3, peer 2 from 5 on (sampled 5 ms later): a clean move
    a, b = smp(0, 1, 1, 1, 0, 0, 0), smp(0, 0, 0, 0, 0, 1, 1, t0=0.005)
    assert hold_runs(a) == [(0.01, 0.03)]
    assert overlaps({1: hold_runs(a), 2: hold_runs(b), 3: []}, {}) == ([], [])
    # peer 2 has it at 0.025, between two samples in which peer 1 has it
    b = smp(0, 0, 1, 1, 1, t0=0.005)
    bad, every = overlaps({1: hold_runs(a), 2: hold_runs(b)}, {})
    assert len(bad) == 1 == len(every) and bad[0][:2] == (1, 2)
    # excused only by a window covering the whole overlap, of either peer
    assert overlaps({1: hold_runs(a), 2: hold_runs(b)}, {1: [(0.0, 0.05)]})[0] == []
    assert overlaps({1: hold_runs(a), 2: hold_runs(b)}, {2: [(0.02, 0.04)]})[0] == []
    assert len(overlaps({1: hold_runs(a), 2: hold_runs(b)}, {1: [(0.0, 0.027)]})[0]) == 1
    # a third peer's holding is compared with both others
    c = smp(0, 0, 1, 0, t0=0.001)
    assert len(overlaps({1: hold_runs(a), 2: [], 3: hold_runs(c)}, {})[0]) == 1


def test_vip_never_on_two_live_peers(lab, pgvigil_bin):
    """20 coordinator changes by kill -9 + restart, SIGSTOP past the lease +
    SIGCONT, isolation of the holder (link down on the bridge, or every frame
    dropped) + heal. One netlink sampler per peer namespace records whether
    its kernel has the VIP, every 10 ms. A run of consecutive samples that saw
    the VIP is a holding interval; two peers' intervals that overlap are two
    holders at once. Excused, as DESIGN.md S1 says: a peer while its daemon is
    dead (kill -9 until the restarted daemon answers: the kernel keeps the
    address) or frozen (SIGSTOP to SIGCONT). An isolated peer is NOT excused:
    it is alive, and S1 and §8 ("holder cut off from its peers: dual 0") hold
    for it too."""
    cl = VipCluster(lab, pgvigil_bin)
    cl.start_all()
    h, st = cl.wait_holder(BOOT_BOUND + PROBE_TIMEOUT + 3)
    smp = Sampler(lab, [cl.hosts[i] for i in cl.ids], maxsec=150)
    excused = {i: [] for i in cl.ids}
    changes, log = 0, []
    faults = ["kill", "stop", "isolate-link", "isolate-drop"]
    t_begin = time.monotonic()
    try:
        for n in range(20):
            assert time.monotonic() - t_begin < 110, "fault loop over its time budget"
            kind = faults[n % len(faults)]
            term = st["term"]
            t0 = time.monotonic()
            if kind == "kill":
                cl.kill(h)
                time.sleep(0.3)
                cl.start(h)
                wait_for(f"restarted peer {h} answers", 5, lambda: cl.status(h) is not None)
                excused[h].append((t0, time.monotonic()))
                h2, st = cl.wait_holder(VIP_FAILOVER_BOUND + CONFLICT_RETRY + 2,
                                        min_term=term + 1)
            elif kind == "stop":
                cl.pv[h].signal(signal.SIGSTOP)
                try:
                    time.sleep(ELECTION_MAX * 2)
                finally:
                    cl.pv[h].signal(signal.SIGCONT)
                excused[h].append((t0, time.monotonic()))
                h2, st = cl.wait_holder(CONFLICT_RETRY + PROBE_TIMEOUT + 3, exclude=(h,),
                                        min_term=term + 1)
            else:
                lab.isolate(cl.hosts[h], kind.split("-")[1])
                try:
                    h2, st = cl.wait_holder(VIP_FAILOVER_BOUND + 2, exclude=(h,),
                                            min_term=term + 1)
                finally:
                    lab.heal(cl.hosts[h])
                # The healed peer rejoins as a follower of the new coordinator.
                wait_for(f"healed peer {h} follows {h2}", 5,
                         lambda: (lambda s: s and s["coordinator"] == h2)(cl.status(h)))
            log.append(f"{kind}:{h}->{h2}@{time.monotonic() - t0:.1f}s")
            changes += 1
            h = h2
            time.sleep(0.3)
    finally:
        smp.stop()
    span = time.monotonic() - t_begin
    print(f"\n  {changes} coordinator changes in {span:.1f} s: {' '.join(log)}")
    samples = {i: smp.samples[cl.hosts[i]] for i in cl.ids}
    for i in cl.ids:
        s = samples[i]
        gaps = [b[0] - a[0] for a, b in zip(s, s[1:])]
        assert len(s) >= span / 0.010 / 3, f"peer {i}: only {len(s)} samples in {span:.0f}s"
        assert max(gaps) < 0.25, f"sampler of peer {i} paused {max(gaps):.3f}s"
    runs = {i: smp.intervals(cl.hosts[i]) for i in cl.ids}
    dual, strict = overlaps(runs, excused)
    dual = [(a, b, round(lo - t_begin, 3), round((hi - lo) * 1000)) for a, b, lo, hi in dual]
    print(f"  {smp.count()} samples ({', '.join(f'gw{i}: {len(samples[i])}' for i in cl.ids)}), "
          f"holding intervals {sum(len(r) for r in runs.values())}, "
          f"overlaps: {len(dual)} unexcused, {len(strict)} counting frozen/dead peers too")
    assert changes == 20
    assert not dual, f"two live peers held the VIP at once (peer, peer, s since start, ms): {dual}"


# --------------------------------------------------------------------------
# 5. a foreign delete is undone at once

def test_foreign_delete_is_readded_within_100ms(lab, pgvigil_bin):
    cl = VipCluster(lab, pgvigil_bin)
    cl.start_all()
    h, st = cl.wait_holder(BOOT_BOUND + PROBE_TIMEOUT + 3)
    time.sleep(ANNOUNCE_AT[-1] + 0.3)          # let the start schedule finish
    pv = cl.pv[h]
    mark = pv.mark()
    before = vipst(cl.status(h))
    cap = arp_capture(lab)
    r = lab.run(cl.hosts[h], [PYTHON, "-c", NL_PY, "readd", "eth0", VIP4, "32", "2", IP],
                timeout=15)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["rc"] == 0, f"ip addr del failed: {res}"
    assert res["t_del"] is not None, f"no RTM_DELADDR seen: {res}"
    assert res["t_new"] is not None, f"the VIP was not re-added within 2 s: {res}; " \
                                     f"log tail:\n{pv.log_tail(20)}"
    took = res["t_new"] - res["t_del"]
    print(f"\n  foreign delete on peer {h}: re-added {took * 1000:.2f} ms after the kernel's "
          f"RTM_DELADDR ({(res['t_new'] - res['t_cmd']) * 1000:.1f} ms after `ip addr del` began)")
    assert took <= READD_BOUND
    new = res["new"]
    assert new["prefixlen"] == 32 and new["label"] == "eth0:vip" and new["proto"] == VIP_PROTO, new
    wait_event(pv, "vip-foreign-delete", 2, since=mark, vip=VIP4, interface="eth0")
    wait_event(pv, "vip-readded", 2, since=mark, vip=VIP4, interface="eth0")
    assert cl.vip_line(h) is not None
    # A fresh announcement, seen by the client.
    t_del = res["t_del"]
    wait_for("a gratuitous ARP after the re-add", 2, lambda: [
        f for f in parse_arp(cap.lines()) if f["t"] >= t_del and f["op"] == 1
        and f["spa"] == f["tpa"] == VIP4 and f["sha"] == cl.mac(h)])
    cap.stop()
    after = vipst(cl.status(h))
    assert after["state"] == "held", after
    assert after["foreign_deletes"] == before["foreign_deletes"] + 1, (before, after)
    assert after["readds"] == before["readds"] + 1, (before, after)
    assert after["announcements"] > before["announcements"], (before, after)
    assert cl.status(h)["coordinator"] == h


def test_repeated_foreign_deletes_make_the_holder_step_down(lab, pgvigil_bin):
    """More than READD_MAX deletes within READD_WINDOW: the holder gives up the
    VIP and the role, another peer takes both, and the one that gave up does
    not take them back for the hold time."""
    cl = VipCluster(lab, pgvigil_bin)
    cl.start_all()
    h, st = cl.wait_holder(BOOT_BOUND + PROBE_TIMEOUT + 3)
    pv = cl.pv[h]
    mark = pv.mark()
    t0 = time.monotonic()
    for k in range(READD_MAX):
        r = lab.run(cl.hosts[h], [PYTHON, "-c", NL_PY, "readd", "eth0", VIP4, "32", "2", IP],
                    timeout=15)
        res = json.loads(r.stdout)
        assert res["t_new"] is not None, f"delete {k + 1} was not undone: {res}"
    assert time.monotonic() - t0 < READD_WINDOW / 2
    r = lab.run(cl.hosts[h], [IP, "addr", "del", f"{VIP4}/32", "dev", "eth0"], timeout=10)
    assert r.returncode == 0, r.stderr
    t_last = time.monotonic()
    rel = wait_event(pv, "vip-released", 2, since=mark, vip=VIP4)
    assert "removed too often" in rel["reason"], rel
    h2, st2 = cl.wait_holder(VIP_FAILOVER_BOUND + 2, exclude=(h,))
    print(f"\n  peer {h} gave up after {READD_MAX} re-adds; peer {h2} holds the VIP "
          f"{time.monotonic() - t_last:.2f} s after the last delete")
    assert len(events(pv, "vip-readded", since=mark)) == READD_MAX
    assert vipst(cl.status(h))["readds"] == READD_MAX
    assert st2["term"] > st["term"]
    while time.monotonic() < t_last + STEP_DOWN_HOLD + 0.5:
        s = cl.status(h)
        assert s["coordinator"] != h and vipst(s)["state"] != "held", s
        assert cl.vip_line(h) is None
        time.sleep(0.1)


# --------------------------------------------------------------------------
# 6. link down of the VIP's interface

def test_link_down_releases_and_link_up_restores(lab, pgvigil_bin):
    cl = VipCluster(lab, pgvigil_bin)
    cl.start_all()
    h, st = cl.wait_holder(BOOT_BOUND + PROBE_TIMEOUT + 3)
    pv = cl.pv[h]
    mark = pv.mark()
    t0 = time.monotonic()
    lab.run(cl.hosts[h], [IP, "link", "set", "eth0", "down"], timeout=10, check=True)
    rel = wait_event(pv, "vip-released", 2, since=mark, vip=VIP4)
    assert "link down" in rel["reason"], rel
    assert cl.vip_line(h) is None
    s = cl.status(h)
    assert vipst(s)["state"] == "link-down" and s["coordinator"] != h, s
    h2, st2 = cl.wait_holder(VIP_FAILOVER_BOUND + 2, exclude=(h,))
    print(f"\n  link down on peer {h}: peer {h2} holds the VIP after "
          f"{time.monotonic() - t0:.2f} s")
    assert st2["term"] > st["term"]
    lab.run(cl.hosts[h], [IP, "link", "set", "eth0", "up"], timeout=10, check=True)
    t_up = time.monotonic()
    wait_for(f"peer {h} follows {h2} again", 5,
             lambda: (lambda s: s and s["coordinator"] == h2 and s["term"] == st2["term"]
                      and vipst(s)["state"] == "released")(cl.status(h)))
    while time.monotonic() < t_up + 2.0:
        s = cl.status(h)
        assert s["coordinator"] == h2 and vipst(s)["state"] == "released", s
        assert cl.vip_line(h) is None
        time.sleep(0.1)
    now = cl.holder_now()
    assert now is not None and now[0] == h2, now


# --------------------------------------------------------------------------
# 7. kill -9 leaves the VIP in the kernel; the restarted daemon purges it

def test_kill_9_leaves_vip_and_restart_purges_it(lab, pgvigil_bin):
    """A restarted peer is never entitled at start: it purges its tagged VIP
    (a) even when it comes back before its old lease could have ended, and
    (b) after another peer was elected, whose probe the leftover answered."""
    cl = VipCluster(lab, pgvigil_bin)
    cl.start_all()
    h, st = cl.wait_holder(BOOT_BOUND + PROBE_TIMEOUT + 3)
    # (a) immediate restart (a restarted daemon appends to the same log: mark it)
    mark = cl.pv[h].mark()
    lease = cl.status(h)["lease_remaining_ms"]
    cl.kill(h)
    assert cl.vip_line(h) is not None, "the kernel dropped the VIP of a killed daemon?"
    t0 = time.monotonic()
    pv = cl.start(h)
    purged = wait_event(pv, "vip-purged", 3, since=mark, vip=VIP4)
    print(f"\n  (a) peer {h} restarted {(time.monotonic() - t0) * 1000:.0f} ms after its kill "
          f"(its lease had {lease} ms left just before): {purged}")
    assert cl.vip_line(h) is None
    acq = events(pv, "vip-acquired", since=mark)
    assert not acq or acq[0]["pos"] > purged["pos"]
    h1, st1 = cl.wait_holder(VIP_FAILOVER_BOUND + CONFLICT_RETRY + 3)
    assert st1["term"] > st["term"]
    # (b) kill, someone else is elected and probes: the leftover answers
    cl.kill(h1)
    assert cl.vip_line(h1) is not None
    others = [i for i in cl.ids if i != h1]
    marks = {i: cl.pv[i].mark() for i in others}

    def elected():
        sts = {i: cl.status(i) for i in others}
        c = [i for i, s in sts.items() if s and s["lease_remaining_ms"] is not None]
        return c[0] if len(c) == 1 and all(s["coordinator"] == c[0] for s in sts.values()) \
            else None
    c = wait_for("a coordinator among the others", FAILOVER_BOUND + 3, elected)
    conf = wait_event(cl.pv[c], "vip-conflict", PROBE_TIMEOUT + 2, since=marks[c],
                      vip=VIP4, stage="probe")
    assert conf["claimant"] == cl.mac(h1), (conf, cl.mac(h1))
    time.sleep(CONFLICT_RETRY + 0.2)
    # Between retries it is "conflict" (for probe_timeout of each second, "probing").
    wait_for(f"peer {c} reports the conflict", 0.5,
             lambda: vipst(cl.status(c))["state"] == "conflict")
    assert cl.holders_by_kernel() == [h1], "the VIP was added while the leftover answered"
    assert not events(cl.pv[c], "vip-acquired", since=marks[c])
    t_restart = time.monotonic()
    mark = cl.pv[h1].mark()
    pv = cl.start(h1)
    wait_event(pv, "vip-purged", 3, since=mark, vip=VIP4)
    h2, st2 = cl.wait_holder(CONFLICT_RETRY + PROBE_TIMEOUT + 1.0)
    print(f"  (b) peer {c} elected while peer {h1}'s leftover answered its probe; after the "
          f"restart purged it, peer {h2} holds the VIP {time.monotonic() - t_restart:.2f} s later")
    assert h2 == c
    assert cl.holders_by_kernel() == [c]
    s = cl.status(h1)
    assert s["coordinator"] == c and vipst(s)["state"] == "released", s


# --------------------------------------------------------------------------
# 8. the probe: an address another host has is not taken

def test_probe_refuses_address_held_by_another_host(lab, pgvigil_bin):
    cl = VipCluster(lab, pgvigil_bin)
    lab.run(CLIENT, [IP, "addr", "add", f"{VIP4}/24", "dev", "eth0"], timeout=10, check=True)
    smp = Sampler(lab, [cl.hosts[i] for i in cl.ids], maxsec=60)
    try:
        cl.start_all()
        c = None
        deadline = time.monotonic() + BOOT_BOUND + 3
        while c is None:
            for i in cl.ids:
                if events(cl.pv[i], "vip-conflict", stage="probe"):
                    c = i
            assert time.monotonic() < deadline, "no probe conflict logged"
            time.sleep(0.02)
        ev = events(cl.pv[c], "vip-conflict", stage="probe")[0]
        assert ev["vip"] == VIP4 and ev["claimant"] == cl.mac(CLIENT), (ev, cl.mac(CLIENT))
        t_conf = time.monotonic()
        time.sleep(3.0)
        s = wait_for(f"peer {c} reports the conflict", 0.5,
                     lambda: (lambda s: s if vipst(s)["state"] == "conflict" else None)(
                         cl.status(c)))
        assert s["coordinator"] == c, s
        assert vipst(s)["conflicts"] >= 3, vipst(s)
        n = len(events(cl.pv[c], "vip-conflict", stage="probe"))
        print(f"\n  peer {c}: {n} vip-conflict events, conflicts={vipst(s)['conflicts']} in "
              f"~{time.monotonic() - t_conf + PROBE_TIMEOUT:.1f} s")
        assert cl.holders_by_kernel() == []
        lab.run(CLIENT, [IP, "addr", "del", f"{VIP4}/24", "dev", "eth0"], timeout=10, check=True)
        t_del = time.monotonic()
        h, st = cl.wait_holder(CONFLICT_RETRY + PROBE_TIMEOUT + 1.0)
        took = time.monotonic() - t_del
        print(f"  client released the address: peer {h} holds the VIP {took:.2f} s later")
        assert h == c
        assert took <= CONFLICT_RETRY + PROBE_TIMEOUT + 0.4
    finally:
        smp.stop()
    for i in cl.ids:
        held = smp.ever_held(cl.hosts[i], before=t_del)
        assert not held, f"peer {i} had the VIP while the client held it ({len(held)} samples)"
    assert cl.ping().returncode == 0
    assert cl.neigh()[0] == cl.mac(h)


# --------------------------------------------------------------------------
# 9. IPv6 end to end

def test_ipv6_vip_end_to_end(lab, pgvigil_bin):
    cl = VipCluster(lab, pgvigil_bin, vip=VIP6)
    cl.start_all()
    h, st = cl.wait_holder(BOOT_BOUND + PROBE_TIMEOUT + 3)
    wait_event(cl.pv[h], "vip-acquired", 2, vip=VIP6, interface="eth0")
    line = cl.vip_line(h)
    assert re.search(rf"\binet6 {re.escape(VIP6)}/128\b", line), line
    assert "tentative" not in line and "dadfailed" not in line, line
    a = cl.nl_vip(h)
    assert a["prefixlen"] == 128 and a["proto"] == VIP_PROTO, a
    assert a["flags"] & 0x02, f"IFA_F_NODAD not set: {a}"
    assert not a["flags"] & 0x40, f"tentative: {a}"
    assert [i for i in cl.ids if cl.vip_line(i)] == [h]
    r = cl.ping()
    assert r.returncode == 0, f"ping -6 {VIP6}: {r.stdout} {r.stderr}"
    old = cl.mac(h)
    mac, state = cl.neigh()
    assert mac == old, (mac, state, old)
    t0 = time.monotonic()
    cl.host_crash(h)
    deadline = t0 + VIP_FAILOVER_BOUND + 3
    while True:
        mac, state = cl.neigh()
        if mac is not None and mac != old:
            break
        assert time.monotonic() < deadline, f"client entry still {mac} {state}"
        time.sleep(0.005)
    took = time.monotonic() - t0
    h2, st2 = cl.wait_holder(3, exclude=(h,))
    print(f"\n  IPv6: client entry {old} -> {mac} ({state}) {took * 1000:.0f} ms after the "
          f"host loss of peer {h}; new holder {h2}")
    assert mac == cl.mac(h2)
    assert took <= VIP_FAILOVER_BOUND
    line = cl.vip_line(h2)
    assert "/128" in line and "tentative" not in line, line
    assert cl.ping().returncode == 0


# --------------------------------------------------------------------------
# 10. a witness never holds the VIP

def test_witness_never_holds_vip(lab, pgvigil_bin):
    cl = VipCluster(lab, pgvigil_bin, witness=(3,))
    smp = Sampler(lab, [cl.hosts[i] for i in cl.ids], maxsec=60)
    try:
        cl.start_all()
        h, st = cl.wait_holder(BOOT_BOUND + PROBE_TIMEOUT + 3)
        assert h in (1, 2)
        w = cl.status(3)
        assert w["vip"] is None, f"a witness reports a VIP of its own: {w['vip']}"
        assert w["coordinator"] == h
        cl.host_crash(h)
        h2, st2 = cl.wait_holder(VIP_FAILOVER_BOUND + 2, exclude=(h,))
        print(f"\n  witness cluster: peer {h} lost, peer {h2} holds the VIP")
        assert h2 == 3 - h
        assert cl.status(3)["vip"] is None
    finally:
        smp.stop()
    assert not smp.ever_held(cl.hosts[3]), "the witness's namespace had the VIP"
    assert smp.ever_held(cl.hosts[h2])
    assert not events(cl.pv[3], "vip-acquired") and not events(cl.pv[3], "vip-purged")


# --------------------------------------------------------------------------
# 11. hooks

def test_vip_hooks_run(lab, pgvigil_bin):
    out = os.path.join(lab.workdir, "vip-hooks.log")
    cl = VipCluster(lab, pgvigil_bin, hooks={
        "on_vip_acquired": f"echo acquired %v %I %i %T >> {out}",
        "on_vip_released": f"echo released %v %I %i %T >> {out}"})
    cl.start_all()
    h, st = cl.wait_holder(BOOT_BOUND + PROBE_TIMEOUT + 3)
    term = st["term"]

    def lines():
        try:
            with open(out) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []
    want = f"acquired {VIP4} eth0 {h} {term}"
    wait_for(f"hook line {want!r}", 5, lambda: want in lines())
    cl.pv[h].signal(signal.SIGTERM)
    assert cl.pv[h].wait(10) == 0
    want = f"released {VIP4} eth0 {h} {term}"
    wait_for(lambda: f"hook line {want!r} (got {lines()}); log tail:\n{cl.pv[h].log_tail(8)}",
             5, lambda: want in lines())
    h2, st2 = cl.wait_holder(FAILOVER_BOUND + PROBE_TIMEOUT + 2, exclude=(h,))
    want2 = f"acquired {VIP4} eth0 {h2} {st2['term']}"
    wait_for(f"hook line {want2!r}", 5, lambda: want2 in lines())
    print(f"\n  hook lines: {lines()}")
    mine = [ln for ln in lines() if ln.split()[3] == str(h)]
    assert mine == [f"acquired {VIP4} eth0 {h} {term}", f"released {VIP4} eth0 {h} {term}"], \
        mine
