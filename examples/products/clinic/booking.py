#!/usr/bin/env python3
"""The clinic's booking service: a product service that lets Keyward be its Auth, User, Roles
and Notification services (docs/products/clinic.md).

    BOOKING_CLIENT_SECRET=… python booking.py --keyward-url http://127.0.0.1:8080 \\
        --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f --client-id kwc_… \\
        [--issuer URL] [--listen 127.0.0.1:8081] [--db clinic.db] [--reminder-lead-secs 86400]

What it does with Keyward:
- verifies patients' and doctors' access tokens offline through Keyward's JWKS (PyJWT);
- asks Keyward's check API (POST /v1/access/check) with its own client-credentials token
  before a doctor edits a schedule: live grants, so a doctor whose role was revoked a minute
  ago is refused even though their token still says `doctor`;
- keeps its own `users` table, filled from `user.registered` events it consumes from the
  `keyward.events` exchange (durable queue `clinic.booking.users`; an inbox table drops
  redeliveries; ack after commit), and emptied by `user.deleted`;
- on a booking, asks Keyward (POST /v1/notifications) to send the confirmation now and the
  reminder at `starts_at - reminder lead`; on a cancellation it cancels that reminder
  (DELETE /v1/notifications/scheduled/{id}) and sends a cancellation notice.

What it keeps to itself: doctors' slots and the bookings, in its own SQLite database.

HTTP API (JSON; a bearer access token from Keyward on every route but /health):
  PUT    /doctors/me/schedule   {"slots": [RFC 3339, …]}     needs schedule:write (check API)
  GET    /doctors/{id}/slots                                   the doctor's free slots
  POST   /bookings              {"doctor_id", "starts_at"}    needs the role patient
  GET    /bookings                                             the caller's bookings
  DELETE /bookings/{id}                                        the caller's own booking
  GET    /users/me                                             the caller's row in this service

The client secret comes from BOOKING_CLIENT_SECRET (or --client-secret-file), never from the
command line. Prints `clinic booking listening on http://HOST:PORT` once it serves and consumes.
Standard library plus PyJWT[crypto] and pika (requirements.txt).
"""

import argparse
import base64
import json
import os
import re
import signal
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt  # PyJWT[crypto]
import pika

EVENTS_EXCHANGE = "keyward.events"
USERS_QUEUE = "clinic.booking.users"


def log(msg: str) -> None:
    print(f"clinic: {msg}", file=sys.stderr, flush=True)


class Refused(Exception):
    """An HTTP answer other than 2xx, with a problem body for the client."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


# --- Keyward: tokens, the check API, the notification API -------------------------------------


class Verifier:
    """Offline verification of Keyward access tokens (as examples/python/verify_token.py)."""

    def __init__(self, jwks_url: str, issuer: str, audience: str):
        self.jwks = jwt.PyJWKClient(jwks_url, lifespan=600, timeout=5, cooldown_duration=30)
        self.issuer, self.audience = issuer, audience

    def verify(self, token: str) -> dict:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != "at+jwt" or header.get("alg") != "EdDSA":
            raise jwt.InvalidTokenError("not a Keyward access token")
        key = self.jwks.get_signing_key(header.get("kid"))
        return jwt.decode(token, key.key, algorithms=["EdDSA"], issuer=self.issuer,
                          audience=self.audience, leeway=30,
                          options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub", "sid"]})


class Keyward:
    """Calls to Keyward's API as the booking service (client credentials) or on a user's behalf."""

    def __init__(self, base_url: str, client_id: str, client_secret: str):
        self.base = base_url.rstrip("/")
        self.client_id, self.client_secret = client_id, client_secret
        self._token, self._expires = None, 0.0
        self._lock = threading.Lock()

    def call(self, method: str, path: str, body=None, bearer=None, form=None):
        """(status, parsed JSON or None)."""
        headers = {"accept": "application/json"}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["content-type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        if bearer:
            headers["authorization"] = f"Bearer {bearer}"
        elif form is not None:
            basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            headers["authorization"] = f"Basic {basic}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw) if raw else None
            except ValueError:
                return e.code, None
        except OSError as e:
            raise Refused(503, "keyward_unavailable", f"Keyward is unreachable: {e}") from e

    def service_token(self) -> str:
        """The service's own access token (client_credentials), renewed a minute before it ends."""
        with self._lock:
            if self._token and time.monotonic() < self._expires - 60:
                return self._token
            status, body = self.call("POST", "/v1/oauth/token", form={"grant_type": "client_credentials"})
            if status != 200:
                raise Refused(503, "keyward_unavailable", f"the token endpoint answered {status}: {body}")
            self._token = body["access_token"]
            self._expires = time.monotonic() + body["expires_in"]
            return self._token

    def as_service(self, method: str, path: str, body=None):
        return self.call(method, path, body, bearer=self.service_token())

    def allowed(self, user_id: str, permission: str) -> bool:
        status, body = self.as_service("POST", "/v1/access/check",
                                       {"user_id": user_id, "permission": permission})
        if status != 200:
            raise Refused(503, "keyward_unavailable", f"the check API answered {status}: {body}")
        return bool(body["allowed"])

    def notify(self, to: str, template: str, category: str, variables: dict, key: str,
               send_at=None) -> str:
        """One notification for one user; its id (for a scheduled one: what cancels it)."""
        req = {"to": [to], "template": template, "category": category,
               "variables": variables, "idempotency_key": key}
        if send_at is not None:
            req["send_at"] = send_at
        status, body = self.as_service("POST", "/v1/notifications", req)
        if status != 202:
            raise Refused(502, "notification_refused", f"Keyward refused {template}: {status} {body}")
        return body["ids"][0]

    def cancel(self, notification_id: str) -> str:
        """`cancelled`, or `already_sent` when it went out (or was cancelled) before."""
        status, body = self.as_service("DELETE", f"/v1/notifications/scheduled/{notification_id}")
        if status == 204:
            return "cancelled"
        if status == 409:
            return "already_sent"
        raise Refused(502, "notification_refused", f"cancelling {notification_id}: {status} {body}")


# --- The service's own database -----------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, email TEXT NOT NULL, username TEXT, locale TEXT NOT NULL,
    registered_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS processed_events (id TEXT PRIMARY KEY, type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS doctors (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slots (
    doctor_id TEXT NOT NULL, starts_at TEXT NOT NULL, PRIMARY KEY (doctor_id, starts_at));
CREATE TABLE IF NOT EXISTS bookings (
    id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, doctor_id TEXT NOT NULL,
    starts_at TEXT NOT NULL, status TEXT NOT NULL, reminder_id TEXT, reminder_at TEXT,
    confirmation_id TEXT, created_at TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS one_booking_per_slot
    ON bookings (doctor_id, starts_at) WHERE status = 'booked';
"""


class Db:
    """One SQLite connection behind a lock: the HTTP threads and the consumer share it."""

    def __init__(self, path: str):
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.executescript(SCHEMA)
        self.lock = threading.Lock()

    def run(self, fn):
        """fn(conn) inside one transaction."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self.conn)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            return out


# --- user.registered → the service's own user row -----------------------------------------------


def handle_event(db: Db, envelope: dict) -> str:
    """Applies one event in one transaction with its inbox row; what happened."""
    event_id, kind, data = envelope["id"], envelope["type"], envelope.get("data") or {}

    def apply(c):
        if c.execute("SELECT 1 FROM processed_events WHERE id = ?", (event_id,)).fetchone():
            return "duplicate"
        c.execute("INSERT INTO processed_events (id, type) VALUES (?, ?)", (event_id, kind))
        if kind == "user.registered" and envelope.get("version") == 1:
            c.execute("INSERT OR IGNORE INTO users (id, email, username, locale, registered_at) "
                      "VALUES (?, ?, ?, ?, ?)",
                      (data["user_id"], data["email"], data.get("username"),
                       data.get("locale") or "en", envelope["occurred_at"]))
            return "user row created"
        if kind == "user.deleted":
            c.execute("DELETE FROM users WHERE id = ?", (data["user_id"],))
            return "user row erased"
        return "ignored"

    return db.run(apply)


def consume_users(db: Db, amqp_url: str, ready: threading.Event, stop: threading.Event) -> None:
    """Consumes user.registered and user.deleted forever, reconnecting with backoff."""
    delay = 1.0
    while not stop.is_set():
        try:
            conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
            ch = conn.channel()
            # As Keyward declares it: a no-op when it exists, and lets this service start first.
            ch.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
            # Durable and named: events published while the service is down wait for it.
            ch.queue_declare(USERS_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
            for key in ("user.registered", "user.deleted"):
                ch.queue_bind(USERS_QUEUE, EVENTS_EXCHANGE, routing_key=key)
            ch.basic_qos(prefetch_count=16)
            log(f"consuming {USERS_QUEUE} (user.registered, user.deleted)")
            ready.set()
            delay = 1.0
            for method, _props, body in ch.consume(USERS_QUEUE, inactivity_timeout=1):
                if stop.is_set():
                    break
                if method is None:
                    continue
                try:
                    envelope = json.loads(body)
                    outcome = handle_event(db, envelope)
                except (ValueError, KeyError, TypeError) as e:
                    log(f"not an event I can read, rejected: {e!r}")
                    ch.basic_reject(method.delivery_tag, requeue=False)
                    continue
                log(f"{envelope['type']} {envelope['data'].get('user_id')}: {outcome}")
                ch.basic_ack(method.delivery_tag)  # after our commit
            conn.close()
        except pika.exceptions.AMQPError as e:
            log(f"RabbitMQ: {e!r}; reconnecting in {delay:.0f} s")
            stop.wait(delay)
            delay = min(delay * 2, 30.0)


# --- The booking rules --------------------------------------------------------------------------


def parse_time(raw, field: str) -> datetime:
    try:
        t = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        t = None
    if t is None or t.tzinfo is None:
        raise Refused(400, "invalid_time", f"{field} is an RFC 3339 time with an offset")
    return t.astimezone(timezone.utc)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class Clinic:
    def __init__(self, db: Db, keyward: Keyward, verifier: Verifier, reminder_lead: timedelta):
        self.db, self.keyward, self.verifier = db, keyward, verifier
        self.reminder_lead = reminder_lead

    def caller(self, authorization) -> tuple:
        """(claims, raw token) of the bearer token, verified offline."""
        m = re.fullmatch(r"Bearer (\S+)", authorization or "")
        if not m:
            raise Refused(401, "unauthenticated", "send Authorization: Bearer <access token>")
        try:
            return self.verifier.verify(m.group(1)), m.group(1)
        except jwt.PyJWKClientConnectionError as e:
            raise Refused(503, "keyward_unavailable", f"cannot fetch Keyward's JWKS: {e}") from e
        except jwt.PyJWTError as e:
            raise Refused(401, "invalid_token", f"the access token is not valid: {e}") from e

    def profile_name(self, token: str, fallback: str) -> str:
        """The caller's display name from their Keyward profile (read with their own token)."""
        status, me = self.keyward.call("GET", "/v1/users/me", bearer=token)
        if status != 200:
            return fallback
        return me.get("display_name") or me.get("username") or fallback

    def put_schedule(self, claims: dict, token: str, body: dict) -> dict:
        # A token says which roles its user had when it was issued; a schedule is edited only
        # by someone who is a doctor now: ask Keyward's live grants.
        if not self.keyward.allowed(claims["sub"], "schedule:write"):
            raise Refused(403, "forbidden", "editing a schedule needs schedule:write (doctors)")
        slots = body.get("slots")
        if not isinstance(slots, list) or not slots or len(slots) > 500:
            raise Refused(400, "invalid_slots", "slots is a list of 1-500 RFC 3339 times")
        times = sorted({iso(parse_time(s, "slots[]")) for s in slots})
        name = self.profile_name(token, claims.get("email") or claims["sub"])

        def write(c):
            c.execute("INSERT INTO doctors (id, name) VALUES (?, ?) "
                      "ON CONFLICT (id) DO UPDATE SET name = excluded.name", (claims["sub"], name))
            c.execute("DELETE FROM slots WHERE doctor_id = ?", (claims["sub"],))
            c.executemany("INSERT INTO slots (doctor_id, starts_at) VALUES (?, ?)",
                          [(claims["sub"], t) for t in times])

        self.db.run(write)
        log(f"doctor {claims['sub']} ({name}) published {len(times)} slots")
        return {"doctor_id": claims["sub"], "name": name, "slots": times}

    def free_slots(self, doctor_id: str) -> dict:
        def read(c):
            doc = c.execute("SELECT name FROM doctors WHERE id = ?", (doctor_id,)).fetchone()
            if doc is None:
                raise Refused(404, "doctor_not_found", "no doctor has published a schedule with this id")
            rows = c.execute(
                "SELECT s.starts_at FROM slots s WHERE s.doctor_id = ? AND NOT EXISTS ("
                "SELECT 1 FROM bookings b WHERE b.doctor_id = s.doctor_id "
                "AND b.starts_at = s.starts_at AND b.status = 'booked') ORDER BY s.starts_at",
                (doctor_id,)).fetchall()
            return {"doctor_id": doctor_id, "name": doc["name"], "free": [r["starts_at"] for r in rows]}

        return self.db.run(read)

    def book(self, claims: dict, token: str, body: dict) -> dict:
        roles = claims.get("roles") or []
        may = "patient" in roles or (claims.get("roles_truncated")
                                     and self.keyward.allowed(claims["sub"], "appointments:write"))
        if not may:
            raise Refused(403, "forbidden", "booking needs the role patient")
        doctor_id = str(body.get("doctor_id") or "")
        starts_at = iso(parse_time(body.get("starts_at"), "starts_at"))
        booking_id = str(uuid.uuid4())
        now = datetime.now(timezone.utc)

        def take(c):
            doc = c.execute("SELECT name FROM doctors WHERE id = ?", (doctor_id,)).fetchone()
            if doc is None or not c.execute(
                    "SELECT 1 FROM slots WHERE doctor_id = ? AND starts_at = ?",
                    (doctor_id, starts_at)).fetchone():
                raise Refused(404, "slot_not_found", "the doctor has no such slot")
            try:
                c.execute("INSERT INTO bookings (id, patient_id, doctor_id, starts_at, status, "
                          "created_at) VALUES (?, ?, ?, ?, 'booked', ?)",
                          (booking_id, claims["sub"], doctor_id, starts_at, iso(now)))
            except sqlite3.IntegrityError:
                raise Refused(409, "slot_taken", "someone booked this slot first") from None
            return doc["name"]

        doctor_name = self.db.run(take)
        patient_name = self.profile_name(token, claims.get("email") or "patient")
        variables = {"patient_name": patient_name, "doctor_name": doctor_name,
                     "starts_at": starts_at, "booking_id": booking_id}
        # Idempotency keys tie each request to the booking: a retry after a timeout cannot send
        # the same mail twice.
        confirmation = self.keyward.notify(claims["sub"], "booking_confirmed", "booking", variables,
                                           f"booking-{booking_id}-confirmed")
        reminder_at = max(parse_time(starts_at, "starts_at") - self.reminder_lead, now)
        reminder = self.keyward.notify(claims["sub"], "booking_reminder", "reminders", variables,
                                       f"booking-{booking_id}-reminder", send_at=iso(reminder_at))

        def remember(c):
            c.execute("UPDATE bookings SET confirmation_id = ?, reminder_id = ?, reminder_at = ? "
                      "WHERE id = ?", (confirmation, reminder, iso(reminder_at), booking_id))

        self.db.run(remember)
        log(f"booking {booking_id}: {patient_name} with {doctor_name} at {starts_at}; "
            f"reminder {reminder} at {iso(reminder_at)}")
        return {"id": booking_id, "doctor_id": doctor_id, "doctor_name": doctor_name,
                "starts_at": starts_at, "status": "booked", "confirmation_id": confirmation,
                "reminder_id": reminder, "reminder_at": iso(reminder_at)}

    def bookings(self, claims: dict) -> dict:
        def read(c):
            rows = c.execute("SELECT b.*, d.name AS doctor_name FROM bookings b JOIN doctors d "
                             "ON d.id = b.doctor_id WHERE b.patient_id = ? ORDER BY b.starts_at",
                             (claims["sub"],)).fetchall()
            return {"items": [dict(r) for r in rows]}

        return self.db.run(read)

    def cancel(self, claims: dict, token: str, booking_id: str) -> dict:
        def mark(c):
            row = c.execute("SELECT b.*, d.name AS doctor_name FROM bookings b JOIN doctors d "
                            "ON d.id = b.doctor_id WHERE b.id = ? AND b.patient_id = ?",
                            (booking_id, claims["sub"])).fetchone()
            if row is None:
                raise Refused(404, "booking_not_found", "you have no booking with this id")
            if row["status"] != "booked":
                raise Refused(409, "already_cancelled", "this booking is cancelled already")
            c.execute("UPDATE bookings SET status = 'cancelled' WHERE id = ?", (booking_id,))
            return dict(row)

        row = self.db.run(mark)
        reminder = self.keyward.cancel(row["reminder_id"]) if row["reminder_id"] else "none"
        variables = {"patient_name": self.profile_name(token, claims.get("email") or "patient"),
                     "doctor_name": row["doctor_name"], "starts_at": row["starts_at"],
                     "booking_id": booking_id}
        notice = self.keyward.notify(claims["sub"], "booking_cancelled", "booking", variables,
                                     f"booking-{booking_id}-cancelled")
        log(f"booking {booking_id} cancelled; reminder {row['reminder_id']}: {reminder}")
        return {"id": booking_id, "status": "cancelled", "reminder": reminder,
                "cancellation_id": notice}

    def own_row(self, claims: dict) -> dict:
        def read(c):
            row = c.execute("SELECT * FROM users WHERE id = ?", (claims["sub"],)).fetchone()
            if row is None:
                raise Refused(404, "user_not_found",
                              "no user.registered event for you has reached this service yet")
            return dict(row)

        return self.db.run(read)


# --- HTTP ---------------------------------------------------------------------------------------


def handler_for(clinic: Clinic):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "clinic-booking"

        def log_message(self, fmt, *args):  # one line per request, on stderr
            log(f"{self.command} {self.path} -> {fmt % args}")

        def answer(self, status: int, body=None) -> None:
            raw = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                ctype = "application/problem+json" if status >= 400 else "application/json"
                self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def body(self) -> dict:
            n = int(self.headers.get("content-length") or 0)
            if n > 64 * 1024:
                raise Refused(413, "too_large", "the body is larger than 64 KiB")
            try:
                doc = json.loads(self.rfile.read(n) or b"{}")
            except ValueError:
                raise Refused(400, "invalid_json", "the body is not JSON") from None
            if not isinstance(doc, dict):
                raise Refused(400, "invalid_json", "the body is a JSON object")
            return doc

        def route(self):
            path = urllib.parse.urlsplit(self.path).path
            if self.command == "GET" and path == "/health":
                return 200, {"status": "ok"}
            claims, token = clinic.caller(self.headers.get("authorization"))
            m = re.fullmatch(r"/doctors/([^/]+)/slots", path)
            if self.command == "PUT" and path == "/doctors/me/schedule":
                return 200, clinic.put_schedule(claims, token, self.body())
            if self.command == "GET" and m:
                return 200, clinic.free_slots(m.group(1))
            if self.command == "POST" and path == "/bookings":
                return 201, clinic.book(claims, token, self.body())
            if self.command == "GET" and path == "/bookings":
                return 200, clinic.bookings(claims)
            m = re.fullmatch(r"/bookings/([^/]+)", path)
            if self.command == "DELETE" and m:
                return 200, clinic.cancel(claims, token, m.group(1))
            if self.command == "GET" and path == "/users/me":
                return 200, clinic.own_row(claims)
            raise Refused(404, "not_found", f"no route {self.command} {path}")

        def dispatch(self):
            try:
                status, body = self.route()
            except Refused as e:
                status, body = e.status, {"status": e.status, "code": e.code, "detail": e.detail}
            except Exception as e:  # noqa: BLE001 - a bug: answer 500, keep serving
                log(f"bug: {e!r}")
                status, body = 500, {"status": 500, "code": "internal", "detail": "see the log"}
            self.answer(status, body)

        do_GET = do_POST = do_PUT = do_DELETE = dispatch

    return Handler


def main() -> int:
    p = argparse.ArgumentParser(description="The clinic's booking service on Keyward.")
    p.add_argument("--keyward-url", required=True, help="Keyward's public API")
    p.add_argument("--issuer", help="the tokens' iss: Keyward's public URL (default: --keyward-url)")
    p.add_argument("--audience", default="keyward")
    p.add_argument("--amqp-url", required=True, help="the RabbitMQ Keyward publishes to")
    p.add_argument("--client-id", required=True, help="from `keyward admin create-client`")
    p.add_argument("--client-secret-file", help="else BOOKING_CLIENT_SECRET")
    p.add_argument("--listen", default="127.0.0.1:8081", help="HOST:PORT (port 0: any free one)")
    p.add_argument("--db", default="clinic.db", help="this service's own SQLite database")
    p.add_argument("--reminder-lead-secs", type=int, default=86400,
                   help="how long before an appointment the reminder goes out")
    args = p.parse_args()
    if args.client_secret_file:
        with open(args.client_secret_file, encoding="utf-8") as f:
            secret = f.read().strip()
    else:
        secret = os.environ.get("BOOKING_CLIENT_SECRET", "")
    if not secret:
        p.error("set BOOKING_CLIENT_SECRET or --client-secret-file")
    issuer = args.issuer or args.keyward_url.rstrip("/")

    db = Db(args.db)
    keyward = Keyward(args.keyward_url, args.client_id, secret)
    verifier = Verifier(args.keyward_url.rstrip("/") + "/.well-known/jwks.json", issuer, args.audience)
    clinic = Clinic(db, keyward, verifier, timedelta(seconds=args.reminder_lead_secs))
    keyward.service_token()  # fail at start, not at the first booking, if the credentials are wrong

    stop, ready = threading.Event(), threading.Event()
    consumer = threading.Thread(target=consume_users, args=(db, args.amqp_url, ready, stop),
                                daemon=True)
    consumer.start()
    if not ready.wait(30):
        log("could not bind the users queue within 30 s")
        return 1
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), handler_for(clinic))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"clinic booking listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    stop.set()
    consumer.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
