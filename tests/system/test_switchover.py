"""System tests of the operator's switchover, manual failover and fence
(pgvigilctl switchover / failover / fence; doc/failover.md "Switchover").

The lab and the cluster are those of test_failover.py (FoCluster: a colocated
pair + witness, real PostgreSQL 15, the shipped hook scripts, [vip] follow =
primary). A writer opens a new connection through the VIP every 50 ms; the
assertions are on what PostgreSQL holds (no acknowledged row lost), on the
event tokens of every peer, and on pgvigilctl's output and exit status.
"""

import time

import pytest

from test_failover import FAILOVER, VIP, FoCluster, wait_for


def test_switchover_to_standby_loses_nothing_and_old_primary_follows(lab, pgvigil_bin):
    cl = FoCluster(lab, pgvigil_bin)
    cl.wait_steady()
    w = lab.start_writer(VIP)
    w.wait_acks(20, 20, srv="h1")
    since = cl.mark()
    t0 = time.monotonic()
    r = cl.ctl(3, "switchover", "--to", "2", timeout=150)
    took = time.monotonic() - t0
    print(f"\n  pgvigilctl switchover: exit {r.returncode} after {took:.2f} s\n{r.stdout}{r.stderr}")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    # The preflight is printed before anything is done, then each step.
    assert "ok: target: backend 2" in r.stdout, r.stdout
    assert "ok: stop: peer 1 stops backend 1 cleanly" in r.stdout, r.stdout
    assert "step fencing" in r.stdout and "done: backend 2 is the primary" in r.stdout, r.stdout
    ev = cl.assert_order(["failover-started", "backend-stop-started", "backend-stopped",
                          "backend-fence-done", "candidate-chosen", "promote-verified",
                          "failover-done"], since)
    print(cl.summary(since))
    assert ev["failover-started"]["kind"] == "switchover", ev["failover-started"]
    assert ev["failover-started"]["target"] == "2"
    assert ev["backend-stop-started"]["mode"] == "clean", ev["backend-stop-started"]
    assert ev["backend-stopped"]["shutdown_lsn"] != "0", ev["backend-stopped"]
    assert ev["candidate-chosen"]["backend"] == "2"
    assert ev["failover-done"]["kind"] == "switchover"
    # Every step event names the same failover.
    fid = ev["failover-started"]["failover"]
    for t in ("backend-fence-done", "candidate-chosen", "promote-verified", "failover-done"):
        assert ev[t].get("failover") == fid, (t, ev[t])
    cl.assert_no_event({"switchover-degraded", "switchover-cancelled", "backend-fence-failed",
                        "promote-failed", "two-primaries", "failover-blocked"}, since)
    # The stop was clean: PostgreSQL's own log on h1 says so.
    assert "database system is shut down" in lab.pg_instance("h1").log_text()
    # The old primary rejoins as a standby of the new one, without being asked.
    cl.wait_event("rejoin-done", 120, since, backend=1)
    cl.wait_streaming_from("h1", "h2", 30)
    cl.wait_vip_on(2, 15)
    acks = w.wait_acks(20, 30, after=t0, srv="h2")
    gap = w.write_gap(t0 - 1)
    w.stop()
    acked = w.acked()
    present = lab.table_ids("h2")
    lost = sorted(set(acked) - present)
    print(f"  acknowledged {len(acked)} rows; write gap {gap:.2f} s; "
          f"first h2 write {min(a[1] for a in acks) - t0:.2f} s after the request; lost {len(lost)}")
    assert not lost, f"acknowledged rows missing on the new primary: {lost[:20]}"
    cl.wait_record(15, lambda c: c.get("primary") == 2 and c.get("step") == "none" and
                   c.get("needs_rejoin") == [], "record: primary 2, nobody needs a rejoin")
    # And back again: the drill of the demo.
    since2 = cl.mark()
    r = cl.ctl(2, "switchover", "--to", "1", timeout=150)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    cl.wait_event("rejoin-done", 120, since2, backend=2)
    cl.wait_streaming_from("h2", "h1", 30)
    cl.wait_vip_on(1, 15)
    assert not cl.in_recovery("h1")
    # And to h2 again: peer 1, coordinator again, hands the role (and the VIP)
    # to peer 2 at once although it did so once already not long ago.
    cl.wait_record(15, lambda c: c.get("primary") == 1 and c.get("needs_rejoin") == [],
                   "record: primary 1, nobody needs a rejoin")
    # Peer 3 checks for itself: it asks once its own check saw the new roles.
    wait_for("peer 3 sees backend 1 as primary, 2 as standby", 15,
             lambda: (cl.backend_view(3, 1) or {}).get("role") == "primary" and
             (cl.backend_view(3, 2) or {}).get("role") == "standby" and
             (cl.backend_view(3, 2) or {}).get("state") == "up")
    since3 = cl.mark()
    r = cl.ctl(3, "switchover", "--to", "2", timeout=150)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    done = cl.wait_event("failover-done", 30, since3)
    tr = cl.wait_event("coordinator-transfer", 30, since3, to=2)
    print(cl.summary(since3))
    assert tr["step"] == "following", f"the handover waited until after the switchover: {tr}"
    assert done["new"] == "2", done
    cl.wait_vip_on(2, 5)


def test_switchover_dry_run_and_refusals(lab, pgvigil_bin):
    cl = FoCluster(lab, pgvigil_bin)
    cl.wait_steady()
    since = cl.mark()
    r = cl.ctl(2, "switchover", "--dry-run")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "dry run: nothing was done" in r.stdout, r.stdout
    assert "backend 1 to backend 2" in r.stdout, r.stdout
    # The primary itself, an unknown backend, a bad option: one clear line, non-zero.
    r = cl.ctl(2, "switchover", "--to", "1")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "switchover is not possible: target: backend 1 cannot be promoted: it is the primary" \
        in r.stderr, r.stderr
    r = cl.ctl(2, "switchover", "--to", "9")
    assert r.returncode == 1 and "backend 9 is not configured" in r.stderr, r.stderr
    r = cl.ctl(2, "switchover", "--to", "x")
    assert r.returncode == 2 and "not a number" in r.stderr, r.stderr
    r = cl.ctl(2, "switchover", "--force")
    assert r.returncode == 2, r.stderr
    r = cl.ctl(2, "fence", "2")
    assert r.returncode == 2 and "--yes" in r.stderr, r.stderr
    # A standby too far behind (its WAL receiver stopped, writes go on): refused.
    cl.stop_receiving("h2")
    lab.psql("h1", "INSERT INTO fo_rows (id) SELECT g FROM generate_series(5000000, 5040000) g")
    lab.psql("h1", "SELECT pg_switch_wal()")
    def behind():
        r = cl.ctl(2, "switchover", "--to", "2", "--dry-run")
        return r if r.returncode == 1 and "more than max_lag" in r.stderr else None
    r = wait_for("switchover refused for lag", 20, behind, period=0.5)
    print("\n" + r.stderr)
    time.sleep(1)
    cl.assert_no_event({"failover-started", "backend-stop-started"}, since)
    assert cl.status(1)["failover"]["primary"] == 1


def test_manual_failover_to_named_standby(lab, pgvigil_bin):
    cl = FoCluster(lab, pgvigil_bin, backends=3, witness=False)
    cl.wait_steady()
    since = cl.mark()
    r = cl.ctl(1, "failover", "--to", "3", timeout=150)
    print("\n" + r.stdout + r.stderr + cl.summary(since))
    assert r.returncode == 0, (r.stdout, r.stderr)
    ev = cl.assert_order(["failover-started", "backend-fence-done", "candidate-chosen",
                          "promote-verified", "failover-done"], since)
    assert ev["failover-started"]["kind"] == "manual"
    assert ev["candidate-chosen"]["backend"] == "3", ev["candidate-chosen"]
    assert not cl.in_recovery("h3")
    cl.wait_record(15, lambda c: c.get("primary") == 3 and 1 in (c.get("needs_rejoin") or []),
                   "record: primary 3, backend 1 needs a rejoin")


def test_operator_fence_flags_backend(lab, pgvigil_bin):
    cl = FoCluster(lab, pgvigil_bin)
    cl.wait_steady()
    since = cl.mark()
    r = cl.ctl(3, "fence", "1", "--yes")
    assert r.returncode == 1 and "is the primary" in r.stderr, (r.stdout, r.stderr)
    r = cl.ctl(3, "fence", "2", "--yes")
    assert r.returncode == 0, (r.stdout, r.stderr)
    done = cl.wait_event("backend-fence-done", 30, since, backend=2)
    assert done["method"] == "operator", done
    cl.wait_record(15, lambda c: 2 in (c.get("needs_rejoin") or []), "backend 2 needs a rejoin")
    started = cl.events("backend-fence-started", since, backend=2)
    assert started and started[0]["method"] == "operator", started
    # The fence was the lab's STONITH of h2's PostgreSQL: it is down now.
    wait_for("h2 fenced", 15, lambda: (cl.backend_view(1, 2) or {}).get("state") != "up")
