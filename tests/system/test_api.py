"""System tests of the HTTP API (doc/api.md) in the lab.

Layout as in test_failover.py (Lab.add_colocated_cluster): peers 1 and 2
next to PostgreSQL backends 1 (primary) and 2 (standby), peer 3 a
witness, all with [api] listen = 0.0.0.0:8008. Peers 1 and 2 speak plain
HTTP with a bearer token; the witness speaks HTTPS with a client CA (a
throwaway CA made with the openssl CLI in the lab's workdir) and no token.

Every request is made from the lab's 'client' namespace by a small Python
http.client script (tests/lab rule: nothing from the root namespace is
aimed at a lab address); promtool runs on the text locally.

What is checked: the status code of every health endpoint for GET, HEAD
and OPTIONS on the primary's peer, the standby's peer and the witness;
/replica?lag= against a standby whose replay is paused; /cluster against
the control socket's status; /metrics through `promtool check metrics`
and by value (term, coordinator, primary, lag); every metric the Grafana
dashboard names exists; the POST endpoints' 401/403/400/405 and pause and
resume by token and by client certificate; after kill -9 of the primary's
postmaster the codes flip and the failover's step histograms and hook
counters count it. Plus, without PostgreSQL: 403 when no token or CA is
configured, and a start that cannot bind its listen address fails naming it.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import pgvlab
from test_failover import FAILOVER, FoCluster, wait_for

REPO = pgvlab.os.path.dirname(pgvlab.os.path.dirname(pgvlab.os.path.dirname(
    os.path.abspath(pgvlab.__file__))))
DASHBOARD = os.path.join(REPO, "etc", "grafana-pgvigil.json")
PORT = 8008
TOKEN = "lab-api-token-7f3a"

PRIMARY_EPS = ["/", "/primary", "/read-write", "/leader", "/master"]
CHECK_EPS = PRIMARY_EPS + ["/replica", "/read-only", "/health", "/liveness", "/readiness"]

HTTP_PY = r'''
import http.client, json, ssl, sys
out = []
for r in json.load(sys.stdin):
    try:
        if r.get("tls"):
            ctx = ssl.create_default_context(cafile=r["tls"]["ca"])
            ctx.check_hostname = False
            if r["tls"].get("cert"):
                ctx.load_cert_chain(r["tls"]["cert"], r["tls"]["key"])
            c = http.client.HTTPSConnection(r["host"], r["port"], timeout=5, context=ctx)
        else:
            c = http.client.HTTPConnection(r["host"], r["port"], timeout=5)
        body = r.get("body")
        c.request(r["method"], r["path"], body=body.encode() if body is not None else None,
                  headers=r.get("headers") or {})
        resp = c.getresponse()
        data = resp.read().decode(errors="replace")
        out.append({"status": resp.status, "body": data,
                    "headers": {k.lower(): v for k, v in resp.getheaders()}})
        c.close()
    except Exception as e:
        out.append({"status": None, "error": repr(e)})
json.dump(out, sys.stdout)
'''


def http(lab, reqs, host="client"):
    """Run the requests (dicts: method, host, port, path, headers, body,
    tls) from host's namespace; one result dict per request."""
    r = lab.run(host, ["/usr/bin/python3", "-c", HTTP_PY], input=json.dumps(reqs), timeout=90)
    assert r.returncode == 0, f"http client failed: {r.stderr}"
    return json.loads(r.stdout)


def req(addr, path, method="GET", **kw):
    return dict(method=method, host=addr, port=PORT, path=path, **kw)


def one(lab, addr, path, method="GET", **kw):
    return http(lab, [req(addr, path, method, **kw)])[0]


def promtool_check(text):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install the Debian package prometheus"
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, f"promtool check metrics: {r.stdout}{r.stderr}"


SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} and the set of family names."""
    samples, families = {}, set()
    for ln in text.splitlines():
        if ln.startswith("# TYPE "):
            families.add(ln.split()[2])
            continue
        if not ln or ln.startswith("#"):
            continue
        m = SAMPLE_RE.match(ln)
        assert m, f"unparsable sample line {ln!r}"
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return samples, families


def value(samples, name, **labels):
    """The one sample of name whose labels include these; None when absent."""
    found = [v for (n, ls), v in samples.items()
             if n == name and set(labels.items()) <= {(k, v2) for k, v2 in ls}]
    assert len(found) <= 1, f"{name} {labels}: {len(found)} samples"
    return found[0] if found else None


def make_certs(workdir):
    """A throwaway CA, a server certificate for the witness and a client
    certificate CN=lab-admin, made with the openssl CLI."""
    d = os.path.join(workdir, "tls")
    os.makedirs(d, exist_ok=True)
    openssl = shutil.which("openssl")
    assert openssl, "openssl not found: install the Debian package openssl"

    def run(*args):
        r = subprocess.run([openssl, *args], capture_output=True, text=True, timeout=60, cwd=d)
        assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=pgvigil lab CA")
    for name, cn, ext in (("server", "h3", "extendedKeyUsage=serverAuth\n"
                           f"subjectAltName=IP:{pgvlab.peer_addr(3)[0]}\n"),
                          ("client", "lab-admin", "extendedKeyUsage=clientAuth\n")):
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n" + ext)
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    # A client certificate of another CA, with the same subject.
    run("req", "-x509", *ec, "-keyout", "rogue-ca.key", "-out", "rogue-ca.crt", "-days", "2",
        "-subj", "/CN=pgvigil lab CA")
    run("req", *ec, "-keyout", "rogue.key", "-out", "rogue.csr", "-subj", "/CN=lab-admin")
    run("x509", "-req", "-in", "rogue.csr", "-CA", "rogue-ca.crt", "-CAkey", "rogue-ca.key",
        "-CAcreateserial", "-out", "rogue.crt", "-days", "2", "-extfile", "client.ext")
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o600 if f.endswith(".key") else 0o644)
    os.chmod(d, 0o755)
    return {k: os.path.join(d, f) for k, f in
            (("ca", "ca.crt"), ("server", "server.crt"), ("server_key", "server.key"),
             ("client", "client.crt"), ("client_key", "client.key"),
             ("rogue", "rogue.crt"), ("rogue_key", "rogue.key"))}


class ApiCluster:
    """A FoCluster whose peers serve the API: 1 and 2 by HTTP with TOKEN,
    the witness 3 by HTTPS with a client CA."""

    def __init__(self, lab, binary):
        self.lab = lab
        self.cl = FoCluster(lab, binary, start=False)
        self.certs = make_certs(lab.workdir)
        plain = f"\n[api]\nlisten = 0.0.0.0:{PORT}\ntoken = {TOKEN}\n"
        tls = (f"\n[api]\nlisten = 0.0.0.0:{PORT}\ntls_cert = {self.certs['server']}\n"
               f"tls_key = {self.certs['server_key']}\ntls_ca = {self.certs['ca']}\n")
        base = self.cl.conf
        self.cl.conf = base + plain
        self.cl.start(1)
        self.cl.start(2)
        self.cl.pv[3] = lab.start_pgvigil(self.cl.hosts[3], binary, base + tls)
        self.addr = {i: pgvlab.peer_addr(i)[0] for i in self.cl.ids}

    def tls(self, client_cert=True):
        t = {"ca": self.certs["ca"]}
        if client_cert:
            t.update(cert=self.certs["client"], key=self.certs["client_key"])
        return t

    def r(self, i, path, method="GET", **kw):
        """A request to peer i (the witness over HTTPS, with the client certificate
        unless tls= says otherwise)."""
        if i == 3 and "tls" not in kw:
            kw["tls"] = self.tls()
        return req(self.addr[i], path, method, **kw)

    def codes(self, want):
        """{(peer, path, method): code} for every check endpoint and method."""
        reqs, keys = [], []
        for i in want:
            for p in CHECK_EPS:
                for m in ("GET", "HEAD", "OPTIONS"):
                    reqs.append(self.r(i, p, m))
                    keys.append((i, p, m))
        return dict(zip(keys, (x.get("status") for x in http(self.lab, reqs))))

    def wait_codes(self, expect, timeout=20):
        """expect: {peer: {path: code}}; every method must give the code."""
        last = {}

        def ok():
            got = self.codes(expect)
            last.clear()
            last.update({k: (v, expect[k[0]][k[1]]) for k, v in got.items()
                         if v != expect[k[0]][k[1]]})
            return not last
        wait_for(lambda: f"status codes (wrong: {last}; status {self.cl.brief()})", timeout, ok,
                 period=0.5)

    def metrics(self, i):
        res = http(self.lab, [self.r(i, "/metrics")])[0]
        assert res["status"] == 200, res
        assert res["headers"]["content-type"].startswith("text/plain; version=0.0.4"), res["headers"]
        return res["body"]


def role_codes(primary=False, replica=False, up=False):
    c = {p: 200 if primary else 503 for p in PRIMARY_EPS}
    c["/replica"] = 200 if replica else 503
    c["/read-only"] = 200 if primary or replica else 503
    c["/readiness"] = 200 if primary or replica else 503
    c["/health"] = 200 if up else 503
    c["/liveness"] = 200
    return c


def test_api_endpoints_metrics_auth_and_failover(lab, pgvigil_bin):
    ac = ApiCluster(lab, pgvigil_bin)
    cl = ac.cl
    cl.wait_steady()
    a1, a2 = ac.addr[1], ac.addr[2]

    # Status codes per role, for GET, HEAD and OPTIONS alike.
    ac.wait_codes({1: role_codes(primary=True, up=True), 2: role_codes(replica=True, up=True),
                   3: role_codes()})
    res = http(lab, [ac.r(1, "/primary"), ac.r(2, "/replica"), ac.r(3, "/primary"),
                     ac.r(1, "/liveness"), ac.r(1, "/primary", "HEAD"),
                     ac.r(1, "/primary", "OPTIONS")])
    b1, b2, b3 = (json.loads(x["body"]) for x in res[:3])
    assert (b1["role"], b1["state"], b1["backend"], b1["primary"]) == ("primary", "running", 1, 1), b1
    assert (b2["role"], b2["backend"], b2["primary"]) == ("replica", 2, 1), b2
    assert b3["backend"] is None and b3["peer"] == 3, b3
    assert json.loads(res[3]["body"])["alive"] is True
    assert res[4]["body"] == "" and res[5]["body"] == "", res[4:6]

    # /replica?lag=: pause replay on the standby and write a few MB.
    assert one(lab, a2, "/replica?lag=bad")["status"] == 400
    lab.psql("h2", "SELECT pg_wal_replay_pause()")
    lab.psql("h1", "CREATE TABLE api_lag AS SELECT g, repeat('x', 100) AS pad "
                   "FROM generate_series(1, 50000) g")
    wait_for("standby 2 seen more than 64kB behind", 20,
             lambda: one(lab, a2, "/replica?lag=64kB")["status"] == 503, period=0.3)
    got = http(lab, [req(a2, "/replica?lag=1GB"), req(a2, "/replica"), req(a2, "/replica?lag=64kB", "HEAD"),
                     req(a2, "/read-only?lag=64kB"), req(a2, "/readiness?lag=1GB"),
                     req(a2, "/metrics")])
    assert [x["status"] for x in got[:5]] == [200, 200, 503, 503, 200], [x["status"] for x in got]
    samples, _ = parse_metrics(got[5]["body"])
    lag = value(samples, "pgvigil_backend_lag_bytes", backend="2")
    assert lag is not None and lag > 64 * 1024, lag
    assert json.loads(got[1]["body"])["lag"] > 64 * 1024
    lab.psql("h2", "SELECT pg_wal_replay_resume()")
    wait_for("standby 2 caught up", 20,
             lambda: one(lab, a2, "/replica?lag=64kB")["status"] == 200, period=0.3)

    # /cluster is the status JSON of the control socket.
    res = one(lab, a1, "/cluster")
    assert res["status"] == 200 and res["headers"]["content-type"] == "application/json"
    st, sock = json.loads(res["body"]), cl.ctl_status(1)
    assert st["version"] == sock["version"] and st["self"] == 1
    assert st["term"] == sock["term"] and st["failover"]["primary"] == 1, st

    # /metrics: valid for promtool, and the values say what the status says.
    for i in cl.ids:
        text = ac.metrics(i)
        promtool_check(text)
        samples, families = parse_metrics(text)
        sti = cl.ctl_status(i)
        assert value(samples, "pgvigil_term", cluster="lab", peer=str(i)) == sti["term"], i
        assert value(samples, "pgvigil_peers_up") == 3, i
        assert value(samples, "pgvigil_backend_primary", backend="1") == 1
        assert value(samples, "pgvigil_backend_role", backend="2", role="standby") == 1
        assert value(samples, "pgvigil_backend_up", backend="1") == 1
        assert value(samples, "pgvigil_health_checks_total", backend="1") >= 1
        assert value(samples, "pgvigil_health_check_duration_seconds_count", backend="1") >= 1
        assert value(samples, "pgvigil_coordinator") == (1 if i == 1 else 0), i
        assert value(samples, "pgvigil_vip_held") == (1 if i == 1 else 0), i
        assert value(samples, "pgvigil_datagrams_rejected_total", reason="auth") is not None
        if i == 1:
            assert value(samples, "pgvigil_vip_acquisitions_total") >= 1
            assert value(samples, "pgvigil_vip_announcements_total") >= 1
            assert value(samples, "pgvigil_lease_remaining_seconds") > 0
            assert value(samples, "pgvigil_elections_won_total") >= 0
    # Every metric the Grafana dashboard names is exported.
    with open(DASHBOARD) as f:
        dash = json.load(f)
    named = set(re.findall(r"pgvigil_[a-z_]+", json.dumps(dash)))
    assert len(named) >= 20, named
    exported = set(families)
    exported |= {f + s for f in families for s in ("_bucket", "_sum", "_count")}
    assert named <= exported, f"dashboard names metrics /metrics lacks: {named - exported}"

    # Mutating endpoints: the token on peer 1.
    auth = {"Authorization": f"Bearer {TOKEN}"}
    res = http(lab, [req(a1, "/pause", "POST"),
                     req(a1, "/pause", "POST", headers={"Authorization": "Bearer nope"}),
                     req(a1, "/pause", "GET"),
                     req(a1, "/switchover", "POST", headers=auth, body='{"candidate": "2"}'),
                     req(a1, "/switchover", "POST", headers=auth, body='{"force": true}'),
                     req(a1, "/nope"),
                     req(a1, "/primary", "DELETE"),
                     req(a1, "/switchover", "POST", headers=auth, body="x" * 5000)])
    assert [x["status"] for x in res] == [401, 401, 405, 400, 400, 404, 405, 413], \
        [(x["status"], x.get("body")) for x in res]
    assert res[0]["headers"].get("www-authenticate", "").startswith("Bearer")
    assert "candidate" in json.loads(res[3]["body"])["message"]
    since = cl.mark()
    res = one(lab, a1, "/pause", "POST", headers=auth)
    assert res["status"] == 200, res
    cl.wait_record(15, lambda c: c.get("maintenance") is True, "maintenance on via the API")
    ev = cl.wait_event("api-request", 5, since, request="pause")
    assert (ev["auth"], ev["status"], ev["remote"]) == ("token", "200", pgvlab.client_addr()[0]), ev
    cl.wait_event("operator-request", 5, since, request="pause")
    assert json.loads(one(lab, a1, "/primary")["body"])["maintenance"] is True
    # Dry runs: the daemon's preflight answers; an impossible one is 412.
    res = http(lab, [req(a1, "/switchover", "POST", headers=auth,
                         body='{"candidate": 2, "dry_run": true}'),
                     req(a1, "/failover", "POST", headers=auth,
                         body='{"candidate": 2, "dry_run": true}'),
                     req(a1, "/switchover", "POST", headers=auth,
                         body='{"candidate": 9, "dry_run": true}')])
    assert [x["status"] for x in res] == [200, 200, 412], res
    assert "dry run" in json.loads(res[0]["body"])["message"], res[0]
    assert "not possible" in json.loads(res[2]["body"])["message"], res[2]
    # The witness: no token configured, a client certificate is the key.
    rogue = {"ca": ac.certs["ca"], "cert": ac.certs["rogue"], "key": ac.certs["rogue_key"]}
    res = http(lab, [ac.r(3, "/resume", "POST", tls=ac.tls(client_cert=False)),
                     ac.r(3, "/resume", "POST", headers=auth, tls=ac.tls(client_cert=False)),
                     ac.r(3, "/resume", "POST", tls=rogue),
                     ac.r(3, "/resume", "POST")])
    assert [x["status"] for x in res] == [401, 401, 401, 200], res
    cl.wait_record(15, lambda c: c.get("maintenance") is False, "maintenance off via the API")
    ev = cl.wait_event("api-request", 5, since, request="resume")
    assert ev["auth"] == "certificate" and "CN=lab-admin" in ev["detail"], ev

    # kill -9 of the primary's postmaster: the codes flip.
    since = cl.mark()
    lab.stop_postgres("h1", "kill")
    done = cl.wait_event("failover-done", FAILOVER, since)
    assert done["new"] == "2", done
    cl.wait_record(15, lambda c: c.get("primary") == 2 and c.get("step") == "none",
                   "record: primary 2")
    ac.wait_codes({1: role_codes(), 2: role_codes(primary=True, up=True), 3: role_codes()}, 30)
    b1 = json.loads(one(lab, a1, "/primary")["body"])
    assert b1["needs_rejoin"] is True and b1["primary"] == 2, b1
    # The coordinators counted the failover and timed its steps. With
    # [vip] follow = primary the role moves to peer 2 before the follow
    # step, so peer 1 times fence to verify and peer 2 finishes it: sum.
    per = {i: parse_metrics(ac.metrics(i))[0] for i in cl.ids}

    def total(name, **labels):
        return sum(value(per[i], name, **labels) or 0 for i in cl.ids)
    assert total("pgvigil_failovers_started_total") == 1
    assert total("pgvigil_failovers_done_total") == 1
    for step in ("fence", "select", "promote", "verify"):
        assert total("pgvigil_failover_step_duration_seconds_count", step=step) == 1, step
        assert value(per[1], "pgvigil_failover_step_duration_seconds_count", step=step) == 1
    took = total("pgvigil_failover_step_duration_seconds_sum", step="promote")
    assert 0 < took < FAILOVER, took
    assert value(per[1], "pgvigil_hook_runs_total", hook="failover", outcome="ok") == 1
    assert value(per[1], "pgvigil_hook_runs_total", hook="stop", outcome="ok") == 1
    # Every peer's own view, once each has checked the new primary.
    def views_flipped():
        for i in cl.ids:
            s, _ = parse_metrics(ac.metrics(i))
            if (value(s, "pgvigil_backend_primary", backend="2"),
                    value(s, "pgvigil_backend_role", backend="2", role="primary"),
                    value(s, "pgvigil_backend_up", backend="1"),
                    value(s, "pgvigil_backend_needs_rejoin", backend="1"),
                    value(s, "pgvigil_backend_lag_bytes", backend="1"),
                    value(s, "pgvigil_backend_lag_bytes", backend="2")) != (1, 1, 0, 1, None, 0):
                return False
        return True
    wait_for("every peer's metrics: primary 2 up, 1 down and flagged, lag of 1 unknown", 15,
             views_flipped, period=0.5)


def test_api_without_auth_refuses_posts_and_bad_listen_fails_start(lab, pgvigil_bin):
    """No PostgreSQL: one peer of three answers alone (no quorum needed)."""
    a1 = pgvlab.peer_addr(1)[0]
    lab.add_host("h1", *pgvlab.peer_addr(1))
    lab.add_host("h2", *pgvlab.peer_addr(2))
    lab.add_host("client", *pgvlab.client_addr())

    def conf(listen):
        return (f"[cluster]\nname = lab\nstate_dir = @STATE_DIR@\nkey_file = {lab.cluster_key()}\n\n"
                + "".join(f"[peer.{i}]\naddress = {pgvlab.peer_addr(i)[0]}\n"
                          + ("witness = yes\n" if i == 3 else "") + "\n" for i in (1, 2, 3))
                + f"[backend.1]\nhost = {a1}\nport = 5999\npeer = 1\n\n"
                + f"[api]\nlisten = {listen}\n")
    pv = lab.start_pgvigil("h1", pgvigil_bin, conf(f"{a1}:{PORT}"))
    pgvlab.wait_log_event(pv, "api-listening", 15, address=f"{a1}:{PORT}", mutating="off")
    res = http(lab, [req(a1, "/pause", "POST"),
                     req(a1, "/switchover", "POST", headers={"Authorization": "Bearer x"}),
                     req(a1, "/liveness"), req(a1, "/primary"), req(a1, "/health"),
                     req(a1, "/metrics"), req(a1, "/resume", "OPTIONS")])
    assert [x["status"] for x in res] == [403, 403, 200, 503, 503, 200, 200], res
    assert "token" in json.loads(res[0]["body"])["message"]
    assert "POST" in res[6]["headers"]["allow"]
    promtool_check(res[5]["body"])
    samples, _ = parse_metrics(res[5]["body"])
    assert value(samples, "pgvigil_backend_up", backend="1") == 0
    assert value(samples, "pgvigil_health_check_failures_total", backend="1") >= 1
    assert value(samples, "pgvigil_backend_lag_bytes", backend="1") is None

    # SIGHUP with a token: the POST endpoints want it from then on.
    with open(pv.conf_path) as f:
        text = f.read()
    with open(pv.conf_path, "w") as f:
        f.write(text + "token = reloaded-token\n")
    mark = pv.mark()
    pv.signal(signal.SIGHUP)
    pgvlab.wait_log_event(pv, "config-reloaded", 15, since=mark, restart_pending="0")
    res = http(lab, [req(a1, "/pause", "POST"),
                     req(a1, "/pause", "POST", headers={"Authorization": "Bearer reloaded-token"})])
    assert [x["status"] for x in res] == [401, 200], res

    # A listen address that is not this host's is a start error naming it.
    bad = lab.start_pgvigil("h2", pgvigil_bin, conf(f"{a1}:{PORT}"))
    rc = bad.wait(20)
    assert rc == 1, (rc, bad.log_tail())
    assert f"could not listen on {a1}:{PORT}" in bad.log_text(), bad.log_tail()
    # IPv6, bracketed.
    v6 = pgvlab.peer_addr(2)[1]
    pv6 = lab.start_pgvigil("h2", pgvigil_bin, conf(f"[{v6}]:{PORT}"))
    pgvlab.wait_log_event(pv6, "api-listening", 15, address=f"[{v6}]:{PORT}")
    res = http(lab, [req(v6, "/liveness"), req(v6, "/health")])
    assert [x["status"] for x in res] == [200, 503], res
