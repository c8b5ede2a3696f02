#!/usr/bin/env python3
"""The chaos suite's driver; scripts/chaos.sh runs it. Subcommands:

  consume  an independent consumer: its own durable quorum queue bound to keyward.events
           with `#`; records every delivery (one JSON line: event id, type, email, redelivered)
           and acks it only after the line is written; reconnects whenever the broker goes
           away. Exits once asked to stop (a file appears) and the queue stays empty.
  load     steady load spread over the nodes until a stop file appears: registrations with
           distinct emails (every answer recorded, with the phase it fell in) and, per
           pre-made verified user, login / refresh / GET /v1/users/me / GET /v1/auth/verify.
  probe    the non-event paths (login, refresh, me, verify) once on every node; non-zero exit
           if any answers other than 2xx.
  report   the counts: acknowledged registrations against the users table and the consumer's
           user.registered events, every event in the outbox against the consumer, the
           verification mails in the workers' mail drops, the dead-lettered email jobs, and the
           answers per phase. Non-zero exit on any loss (a verification mail missing for an
           acknowledged registration, or an email job dead-lettered, included) or any
           answer other than 2xx during the broker outage.

Only the standard library besides pika (scripts/chaos/requirements.txt).
"""

import argparse
import collections
import email.parser
import glob
import http.client
import itertools
import json
import os
import sys
import threading
import time
import urllib.parse

PASSWORD = "quartz meadow lantern tide"
# The phase during which every path (registrations included) must answer 2xx on every node.
BROKER_DOWN = "rabbitmq-down"


def log(*parts):
    print("[chaos]", *parts, file=sys.stderr, flush=True)


def call(base, method, path, body=None, token=None, timeout=10.0):
    """One request on a fresh connection → (status, parsed JSON or None, error text).
    Status 0 means no HTTP answer (refused, reset, timed out)."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    headers = {"user-agent": "keyward-chaos"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        err = "" if 200 <= r.status < 300 else raw[:200].decode("utf-8", "replace")
        return r.status, parsed, err
    except (OSError, http.client.HTTPException) as e:
        return 0, None, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def ok(status):
    return 200 <= status < 300


class Phase:
    """The phase the shell script is in, read from a file it rewrites."""

    def __init__(self, path):
        self.path = path

    def get(self):
        try:
            with open(self.path) as f:
                return f.read().strip() or "?"
        except OSError:
            return "?"


# --- consume --------------------------------------------------------------------------------


def consume(a):
    import pika  # only this subcommand needs it

    params = pika.URLParameters(a.amqp)
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.heartbeat = 10
    out = open(a.out, "a")
    received = 0
    reconnects = -1
    # Says "connection lost" once per outage, not at every refused retry.
    quiet = False
    while True:
        try:
            conn = pika.BlockingConnection(params)
            reconnects += 1
            if reconnects:
                log(f"consumer: reconnected ({reconnects})")
            ch = conn.channel()
            ch.exchange_declare("keyward.events", "topic", durable=True)
            ch.queue_declare(a.queue, durable=True, arguments={"x-queue-type": "quorum"})
            ch.queue_bind(a.queue, "keyward.events", "#")
            ch.basic_qos(prefetch_count=50)
            quiet = False
            if not os.path.exists(a.ready):
                with open(a.ready, "w") as f:
                    f.write("bound\n")
            idle_since = time.monotonic()
            for method, props, body in ch.consume(a.queue, inactivity_timeout=0.5):
                if method is None:
                    if os.path.exists(a.stop) and time.monotonic() - idle_since >= 2:
                        left = ch.queue_declare(a.queue, passive=True).method.message_count
                        if left == 0:
                            ch.cancel()
                            conn.close()
                            log(f"consumer: {received} deliveries, {reconnects} reconnects")
                            with open(a.ready, "w") as f:
                                json.dump({"deliveries": received, "reconnects": reconnects}, f)
                            return 0
                    continue
                idle_since = time.monotonic()
                try:
                    env = json.loads(body)
                except ValueError:
                    env = {}
                data = env.get("data") if isinstance(env.get("data"), dict) else {}
                rec = {
                    "id": env.get("id") or (props.message_id or ""),
                    "type": env.get("type") or method.routing_key,
                    "email": data.get("email"),
                    "user_id": data.get("user_id"),
                    "redelivered": bool(method.redelivered),
                }
                out.write(json.dumps(rec) + "\n")
                out.flush()
                # Acked only once recorded: a delivery lost here comes again (a duplicate).
                ch.basic_ack(method.delivery_tag)
                received += 1
        except (pika.exceptions.AMQPError, OSError) as e:
            if not quiet:
                log(f"consumer: connection lost or refused ({type(e).__name__}); reconnecting")
            quiet = True
            time.sleep(0.5)


# --- load -----------------------------------------------------------------------------------


def load(a):
    nodes = a.nodes.split(",")
    users = json.load(open(a.users))["load"]
    phase = Phase(a.phase)
    stop = threading.Event()
    lock = threading.Lock()
    counter = itertools.count()
    regs = open(os.path.join(a.out, "registrations.jsonl"), "a")
    stats = collections.Counter()
    samples = []
    seen_phases = []

    def record(ph, path, node, status, err):
        with lock:
            if ph not in seen_phases:
                seen_phases.append(ph)
            stats[(ph, path, node, "ok" if ok(status) else "fail")] += 1
            if not ok(status) and len(samples) < 300:
                samples.append({"phase": ph, "path": path, "node": node, "status": status,
                                "error": err, "at": time.strftime("%H:%M:%S")})

    def paced(rate):
        interval = 1.0 / rate
        nxt = time.monotonic()
        while not stop.is_set():
            yield
            nxt += interval
            wait = nxt - time.monotonic()
            if wait > 0:
                stop.wait(wait)
            else:
                nxt = time.monotonic()

    def registrar():
        for _ in paced(a.reg_rate / a.reg_threads):
            n = next(counter)
            addr = f"chaos-{a.run}-{n}@example.com"
            node = n % len(nodes)
            ph = phase.get()
            status, _, err = call(nodes[node], "POST", "/v1/auth/register",
                                  {"email": addr, "password": PASSWORD})
            with lock:
                regs.write(json.dumps({"email": addr, "node": node, "phase": ph,
                                       "status": status, "error": err}) + "\n")
                regs.flush()
            record(ph, "register", node, status, err)

    def session(user, start):
        k = start
        pair = None
        ops = itertools.cycle(["refresh", "me", "verify", "me", "verify"])
        since_login = 0
        for _ in paced(a.session_rate):
            node = k % len(nodes)
            k += 1
            ph = phase.get()
            if pair is None or since_login >= 20:
                status, body, err = call(nodes[node], "POST", "/v1/auth/login",
                                         {"login": user["email"], "password": user["password"]})
                record(ph, "login", node, status, err)
                pair = body if ok(status) and isinstance(body, dict) else None
                since_login = 0
                continue
            since_login += 1
            op = next(ops)
            if op == "refresh":
                status, body, err = call(nodes[node], "POST", "/v1/auth/refresh",
                                         {"refresh_token": pair["refresh_token"]})
                # A refresh whose answer was lost rotated the token anyway: log in afresh
                # after any failure rather than present a rotated token (reuse detection).
                pair = body if ok(status) and isinstance(body, dict) else None
            elif op == "me":
                status, _, err = call(nodes[node], "GET", "/v1/users/me",
                                      token=pair["access_token"])
            else:
                status, _, err = call(nodes[node], "GET", "/v1/auth/verify",
                                      token=pair["access_token"])
            record(ph, op, node, status, err)

    threads = [threading.Thread(target=registrar, daemon=True) for _ in range(a.reg_threads)]
    threads += [threading.Thread(target=session, args=(u, i), daemon=True)
                for i, u in enumerate(users)]
    for t in threads:
        t.start()
    log(f"load: {a.reg_threads} registration threads ({a.reg_rate}/s in all), "
        f"{len(users)} session threads ({a.session_rate}/s each) over {len(nodes)} nodes")
    while not os.path.exists(a.stop):
        time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    regs.close()
    with open(os.path.join(a.out, "load.json"), "w") as f:
        json.dump({"phases": seen_phases,
                   "stats": [list(k) + [n] for k, n in sorted(stats.items())],
                   "samples": samples}, f)
    log("load: stopped")
    return 0


# --- probe ----------------------------------------------------------------------------------


def probe(a):
    nodes = a.nodes.split(",")
    user = json.load(open(a.users))["probe"]
    failed = 0
    for i, base in enumerate(nodes):
        got = []
        status, pair, err = call(base, "POST", "/v1/auth/login",
                                 {"login": user["email"], "password": user["password"]})
        got.append(("login", status, err))
        if ok(status) and isinstance(pair, dict):
            status, pair2, err = call(base, "POST", "/v1/auth/refresh",
                                      {"refresh_token": pair["refresh_token"]})
            got.append(("refresh", status, err))
            token = (pair2 if ok(status) and isinstance(pair2, dict) else pair)["access_token"]
            status, _, err = call(base, "GET", "/v1/users/me", token=token)
            got.append(("me", status, err))
            status, _, err = call(base, "GET", "/v1/auth/verify", token=token)
            got.append(("verify", status, err))
        bad = [g for g in got if not ok(g[1])] + ([("refresh", 0, "not reached")] if len(got) < 4 else [])
        failed += len(bad)
        print(f"  probe node{i + 1} {base}: " + ", ".join(f"{p} {s}" for p, s, _ in got)
              + ("" if not bad else "  FAILED: " + "; ".join(f"{p}: {e}" for p, _, e in bad)),
              flush=True)
    return 1 if failed else 0


# --- report ---------------------------------------------------------------------------------


def read_jsonl(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass  # a line cut by a kill
    return rows


def mail_recipients(dirs):
    """Recipient → number of mail files addressed to it, over the workers' mail drops."""
    got = collections.Counter()
    parser = email.parser.BytesHeaderParser()
    for d in dirs:
        for path in glob.glob(os.path.join(d, "*.eml")):
            try:
                with open(path, "rb") as f:
                    headers = parser.parse(f)
            except (OSError, ValueError):
                continue
            to = headers.get("To", "")
            addr = to.split("<")[-1].rstrip(">").strip().lower()
            if addr:
                got[addr] += 1
    return got


def report(a):
    regs = read_jsonl(os.path.join(a.out, "registrations.jsonl"))
    load_stats = json.load(open(os.path.join(a.out, "load.json")))
    events = read_jsonl(a.events)
    with open(a.db_users) as f:
        in_db = {line.strip().lower() for line in f if line.strip()}
    outbox = {}
    with open(a.outbox) as f:
        for line in f:
            if "|" in line:
                i, t = line.strip().split("|", 1)
                outbox[i] = t
    mails = mail_recipients(a.mail_dir or [])

    acked = {r["email"] for r in regs if ok(r["status"])}
    unacked = {r["email"] for r in regs if not ok(r["status"])}
    acked_lost_db = sorted(acked - in_db)
    unacked_in_db = len(unacked & in_db)

    registered = [e for e in events if e["type"] == "user.registered"]
    reg_ids_by_email = collections.defaultdict(set)
    reg_deliveries_by_email = collections.Counter()
    for e in registered:
        if e.get("email"):
            reg_ids_by_email[e["email"].lower()].add(e["id"])
            reg_deliveries_by_email[e["email"].lower()] += 1
    acked_with_event = {m for m in acked if m in reg_ids_by_email}
    acked_lost_event = sorted(acked - acked_with_event)
    acked_deliveries = sum(reg_deliveries_by_email[m] for m in acked)
    acked_distinct = sum(len(reg_ids_by_email[m]) for m in acked)
    two_events = sorted(m for m in acked if len(reg_ids_by_email[m]) > 1)

    received_ids = collections.Counter(e["id"] for e in events)
    outbox_lost = sorted(i for i in outbox if i not in received_ids)
    strangers = sorted(i for i in received_ids if i not in outbox)
    all_dups = sum(n - 1 for n in received_ids.values())
    redelivered = sum(1 for e in events if e.get("redelivered"))

    mails_lost = sorted(m for m in acked if mails[m] == 0)
    mails_total = sum(mails[m] for m in acked)

    # Answers per phase and path.
    table = collections.defaultdict(lambda: [0, 0])
    outage_fail = collections.Counter()
    phases = load_stats["phases"]  # in the order they came
    for ph, path, node, outcome, n in load_stats["stats"]:
        table[(ph, path)][0 if outcome == "ok" else 1] += n
        if ph == BROKER_DOWN and outcome == "fail":
            outage_fail[f"node{node + 1} {path}"] += n
    outage_ok = sum(n for ph, path, _, outcome, n in load_stats["stats"]
                    if ph == BROKER_DOWN and path != "register" and outcome == "ok")
    outage_reg_ok = sum(n for ph, path, _, outcome, n in load_stats["stats"]
                        if ph == BROKER_DOWN and path == "register" and outcome == "ok")

    w = 62
    print()
    print("=" * (w + 12))
    print("chaos counts")
    print("=" * (w + 12))
    rows = [
        ("registrations attempted", len(regs)),
        ("registrations acknowledged (2xx)", len(acked)),
        ("  in the users table", len(acked) - len(acked_lost_db)),
        ("  LOST from the database", len(acked_lost_db)),
        ("  with a user.registered event at the consumer", len(acked_with_event)),
        ("  LOST events (no user.registered received)", len(acked_lost_event)),
        ("  user.registered deliveries for them", acked_deliveries),
        ("  duplicate deliveries (same event id again)", acked_deliveries - acked_distinct),
        ("  registrations with two distinct user.registered ids", len(two_events)),
        ("registrations not acknowledged (error/refused/timeout)", len(unacked)),
        ("  of which in the database all the same", unacked_in_db),
        ("events in the outbox (every type but jobs)", len(outbox)),
        ("  received by the consumer", len(outbox) - len(outbox_lost)),
        ("  LOST (in the outbox, never received)", len(outbox_lost)),
        ("consumer deliveries in all", len(events)),
        ("  duplicates (same event id again)", all_dups),
        ("  flagged redelivered by the broker", redelivered),
        ("  ids not in the outbox", len(strangers)),
        ("verification mails for acknowledged registrations", mails_total),
        ("  LOST: acknowledged registrations without one", len(mails_lost)),
        ("  email jobs dead-lettered", a.dead_letters),
        ("non-event answers during the broker outage: 2xx", outage_ok),
        ("registrations during the broker outage: 2xx", outage_reg_ok),
        ("answers during the broker outage: not 2xx", sum(outage_fail.values())),
        ("probes of the non-event paths during the outage that failed", a.probe_failures),
    ]
    for name, n in rows:
        print(f"{name:<{w}} {n:>10}")
    print()
    print("answers per phase (2xx / other), both nodes:")
    paths = ["register", "login", "refresh", "me", "verify"]
    print(f"  {'phase':<22}" + "".join(f"{p:>16}" for p in paths))
    for ph in phases:
        cells = []
        for p in paths:
            good, bad = table.get((ph, p), [0, 0])
            cells.append(f"{good:>9} / {bad:<4}")
        print(f"  {ph:<22}" + "".join(f"{c:>16}" for c in cells))
    print()

    problems = []
    if not acked:
        problems.append("no registration was acknowledged: the load did not run")
    if acked_lost_db:
        problems.append(f"{len(acked_lost_db)} acknowledged registrations are not in the "
                        f"database, e.g. {acked_lost_db[:5]}")
    if acked_lost_event:
        problems.append(f"{len(acked_lost_event)} acknowledged registrations have no "
                        f"user.registered at the consumer, e.g. {acked_lost_event[:5]}")
    if outbox_lost:
        problems.append(f"{len(outbox_lost)} outbox events never reached the consumer, e.g. "
                        + ", ".join(f"{i} ({outbox[i]})" for i in outbox_lost[:5]))
    if outage_fail:
        problems.append("answers other than 2xx during the broker outage: "
                        + ", ".join(f"{k} ×{n}" for k, n in sorted(outage_fail.items())))
    if outage_ok == 0:
        problems.append("no non-event request ran during the broker outage")
    if outage_reg_ok == 0:
        problems.append("no registration was answered during the broker outage")
    if mails_lost:
        problems.append(f"{len(mails_lost)} acknowledged registrations have no verification "
                        f"mail, e.g. {mails_lost[:5]}")
    if a.dead_letters:
        problems.append(f"{a.dead_letters} email jobs were dead-lettered (keyward.dead)")
    if a.probe_failures:
        problems.append(f"{a.probe_failures} probes of the non-event paths failed during the "
                        "broker outage")
    samples = load_stats.get("samples", [])
    if samples:
        print("failed answers, at most 3 per phase:")
        per_phase = collections.Counter()
        for s in samples:
            per_phase[s["phase"]] += 1
            if per_phase[s["phase"]] > 3:
                continue
            print(f"  {s['at']} {s['phase']:<20} node{s['node'] + 1} {s['path']:<8} "
                  f"{s['status']} {s['error'][:100]!r}")
        print()
    if mails_lost:
        print(f"acknowledged registrations without a verification mail: {mails_lost[:10]}")
    if problems:
        for p in problems:
            print(f"chaos: FAILED: {p}")
        return 1
    print("chaos: no acknowledged registration lost, no event lost, no verification mail lost "
          "or dead-lettered; every path answered through the broker outage")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("consume")
    c.add_argument("--amqp", required=True)
    c.add_argument("--queue", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--ready", required=True, help="written once bound; the summary at the end")
    c.add_argument("--stop", required=True)
    ld = sub.add_parser("load")
    ld.add_argument("--nodes", required=True)
    ld.add_argument("--users", required=True)
    ld.add_argument("--out", required=True)
    ld.add_argument("--phase", required=True)
    ld.add_argument("--stop", required=True)
    ld.add_argument("--run", required=True)
    ld.add_argument("--reg-threads", type=int, default=3)
    ld.add_argument("--reg-rate", type=float, default=12.0)
    ld.add_argument("--session-rate", type=float, default=4.0)
    pr = sub.add_parser("probe")
    pr.add_argument("--nodes", required=True)
    pr.add_argument("--users", required=True)
    r = sub.add_parser("report")
    r.add_argument("--out", required=True)
    r.add_argument("--events", required=True)
    r.add_argument("--db-users", required=True)
    r.add_argument("--outbox", required=True)
    r.add_argument("--mail-dir", action="append")
    r.add_argument("--probe-failures", type=int, default=0)
    r.add_argument("--dead-letters", type=int, default=0)
    a = p.parse_args()
    return {"consume": consume, "load": load, "probe": probe, "report": report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
