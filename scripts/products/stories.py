#!/usr/bin/env python3
"""The seed products' stories, lived end to end by their users against a live node.

    scripts/products/stories.py clinic|events|marketplace FIXTURES.json

scripts/products.sh starts Keyward (distributed: PostgreSQL, RabbitMQ, a worker, MailDev), the
product's own service, and writes FIXTURES.json: {keyward, maildev, service, domain, users:
{role: {email, password, id}}} for the staff it created with the CLI. This script then acts as
the product's users would, through the product's service and Keyward's public API only, and
asserts what each of them sees: HTTP answers, mails in MailDev and items in the in-app inbox
(GET /v1/users/me/notifications). Prints each step with the seconds since the story began;
exits 1 at the first failed expectation, with what was expected and what came. Standard
library only.
"""

import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone


class Failed(Exception):
    pass


T0 = time.monotonic()


def step(what: str) -> None:
    print(f"  [{time.monotonic() - T0:5.1f}s] {what}", flush=True)


def expect(cond, what: str, got=None) -> None:
    if not cond:
        raise Failed(what if got is None else f"{what}; got: {got}")


def wait_for(probe, what: str, timeout: float = 20.0, every: float = 0.2):
    """probe() until it returns something truthy; that value. Fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise Failed(f"{what}: not within {timeout:g} s (last: {last!r})")
        time.sleep(every)


def http(method: str, url: str, body=None, token=None, headers=None):
    """(status, JSON body or text or None)."""
    h = {"accept": "application/json", **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["content-type"] = "application/json"
    if token:
        h["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def ok(status_body, want: int, what: str):
    status, body = status_body
    expect(status == want, f"{what}: expected HTTP {want}", f"{status} {body}")
    return body


def refused(status_body, want: int, code: str, what: str) -> None:
    status, body = status_body
    expect(status == want and isinstance(body, dict) and body.get("code") == code,
           f"{what}: expected HTTP {want} {code}", f"{status} {body}")


# --- Keyward as a user and as an admin ------------------------------------------------------


class Keyward:
    def __init__(self, base: str, maildev: str):
        self.base, self.maildev = base.rstrip("/"), maildev.rstrip("/")

    def api(self, method, path, body=None, token=None):
        return http(method, self.base + path, body, token)

    def mails(self, to: str) -> list:
        status, mails = http("GET", self.maildev + "/email")
        expect(status == 200, "MailDev answers GET /email", status)
        return [m for m in mails if any(a["address"].lower() == to.lower() for a in m["to"])]

    def wait_mail(self, to: str, subject: str, contains: str = "", timeout: float = 20.0) -> dict:
        return wait_for(lambda: next((m for m in self.mails(to)
                                      if m["subject"] == subject and contains in m["text"]), None),
                        f"a mail {subject!r} to {to}", timeout)

    def sign_up(self, email: str, password: str) -> str:
        """Register, confirm the address from the mail, log in: the access token."""
        ok(self.api("POST", "/v1/auth/register", {"email": email, "password": password}), 202,
           f"register {email}")
        mail = self.wait_mail(email, "Confirm your email address")
        m = re.search(r"verify-email\?token=([A-Za-z0-9_-]+)", mail["text"])
        expect(m, f"the verification mail to {email} has a link", mail["text"])
        body = ok(self.api("POST", "/v1/auth/verify-email", {"token": m.group(1)}), 200,
                  f"verify {email}")
        expect(body.get("email_verified") is True, "the address is verified", body)
        return self.login(email, password)

    def login(self, login: str, password: str) -> str:
        body = ok(self.api("POST", "/v1/auth/login", {"login": login, "password": password}), 200,
                  f"log in as {login}")
        return body["access_token"]

    def me(self, token: str) -> dict:
        return ok(self.api("GET", "/v1/users/me", token=token), 200, "GET /v1/users/me")

    def inbox(self, token: str) -> list:
        return ok(self.api("GET", "/v1/users/me/notifications?limit=100", token=token), 200,
                  "GET /v1/users/me/notifications")["items"]

    def wait_inbox(self, token: str, title: str, contains: str = "", timeout: float = 20.0) -> dict:
        return wait_for(lambda: next((i for i in self.inbox(token)
                                      if i["title"] == title and contains in i["body"]), None),
                        f"an inbox item {title!r} ({contains})", timeout)


def claims_of(token: str) -> dict:
    """The token's payload, unverified (the services verify; this only reads what it says)."""
    import base64
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def subjects(mails: list) -> list:
    return sorted(m["subject"] for m in mails)


# --- The clinic ------------------------------------------------------------------------------


def clinic(fx: dict) -> None:
    kw = Keyward(fx["keyward"], fx["maildev"])
    svc = fx["service"].rstrip("/")
    lead = timedelta(seconds=fx["reminder_lead_secs"])
    admin = kw.login(fx["users"]["admin"]["email"], fx["users"]["admin"]["password"])
    doctor_fx = fx["users"]["doctor"]

    step("a patient signs up on Keyward: register, confirm the address from the mail, log in")
    patient_email = f"patient@{fx['domain']}"
    patient = kw.sign_up(patient_email, "my knee hurts since May")
    pclaims = claims_of(patient)
    expect(pclaims["roles"] == ["patient"], "the default role of the clinic preset is patient",
           pclaims["roles"])
    ok(kw.api("PATCH", "/v1/users/me", {"display_name": "Anna Petrova"}, patient), 200,
       "the patient names herself")

    step("the booking service made its own user rows from user.registered (keyward.events)")
    row = wait_for(lambda: (lambda r: r[1] if r[0] == 200 else None)(
        http("GET", svc + "/users/me", token=patient)), "the patient's row in the clinic's db")
    expect(row["email"] == patient_email and row["id"] == pclaims["sub"],
           "the row holds the event's user id and email", row)
    doctor = kw.login(doctor_fx["email"], doctor_fx["password"])
    expect("doctor" in claims_of(doctor)["roles"], "the doctor's token says doctor",
           claims_of(doctor))
    row = wait_for(lambda: (lambda r: r[1] if r[0] == 200 else None)(
        http("GET", svc + "/users/me", token=doctor)), "the doctor's row (made by the CLI)")
    expect(row["email"] == doctor_fx["email"], "the doctor's row", row)

    step("the doctor publishes a schedule: the service asks the check API for schedule:write")
    ok(kw.api("PATCH", "/v1/users/me", {"display_name": "Dr. Ivanova"}, doctor), 200,
       "the doctor names herself")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    # Reminders go out `lead` before a slot: these two fall due in a few seconds, the cancelled
    # one first, so that its absence means something once the other has arrived.
    slot_kept = now + lead + timedelta(seconds=12)
    slot_cancelled = now + lead + timedelta(seconds=7)
    slot_later = now + timedelta(days=3)
    sched = ok(http("PUT", svc + "/doctors/me/schedule",
                    {"slots": [iso(slot_kept), iso(slot_cancelled), iso(slot_later)]}, doctor),
               200, "PUT /doctors/me/schedule as the doctor")
    expect(sched["name"] == "Dr. Ivanova", "the service read the doctor's profile name", sched)
    refused(http("PUT", svc + "/doctors/me/schedule", {"slots": [iso(slot_later)]}, patient),
            403, "forbidden", "a patient editing a schedule")
    refused(http("PUT", svc + "/doctors/me/schedule", {"slots": [iso(slot_later)]}, "not.a.jwt"),
            401, "invalid_token", "a request with a forged token")
    free = ok(http("GET", svc + f"/doctors/{claims_of(doctor)['sub']}/slots", token=patient),
              200, "the patient sees the doctor's free slots")
    expect(len(free["free"]) == 3, "three free slots", free)

    step("the patient books a slot: confirmation now, reminder scheduled for the day before")
    booking = ok(http("POST", svc + "/bookings",
                      {"doctor_id": claims_of(doctor)["sub"], "starts_at": iso(slot_kept)}, patient),
                 201, "POST /bookings")
    expect(booking["reminder_id"] and booking["confirmation_id"], "both notification ids", booking)
    refused(http("POST", svc + "/bookings",
                 {"doctor_id": claims_of(doctor)["sub"], "starts_at": iso(slot_kept)}, patient),
            409, "slot_taken", "booking a taken slot")
    refused(http("POST", svc + "/bookings",
                 {"doctor_id": claims_of(doctor)["sub"], "starts_at": iso(slot_later)}, doctor),
            403, "forbidden", "a doctor booking (not a patient)")

    step("a second booking is cancelled: its reminder is cancelled in Keyward")
    other = ok(http("POST", svc + "/bookings",
                    {"doctor_id": claims_of(doctor)["sub"], "starts_at": iso(slot_cancelled)},
                    patient), 201, "POST /bookings (the second)")
    cancelled = ok(http("DELETE", svc + f"/bookings/{other['id']}", token=patient), 200,
                   "DELETE /bookings/{id}")
    expect(cancelled["reminder"] == "cancelled", "the scheduled reminder was cancelled", cancelled)
    refused(http("DELETE", svc + f"/bookings/{other['id']}", token=patient), 409,
            "already_cancelled", "cancelling twice")

    step("mails and inbox: confirmations and the cancellation notice")
    kw.wait_mail(patient_email, "Your appointment with Dr. Ivanova is booked", booking["id"])
    kw.wait_mail(patient_email, "Your appointment with Dr. Ivanova is booked", other["id"])
    kw.wait_mail(patient_email, "Your appointment with Dr. Ivanova is cancelled", other["id"])
    kw.wait_inbox(patient, "Appointment booked", booking["id"])
    kw.wait_inbox(patient, "Appointment booked", other["id"])
    kw.wait_inbox(patient, "Appointment cancelled", other["id"])

    step("a doctor whose role was revoked is refused at once, though her token says doctor")
    ok(kw.api("DELETE", f"/v1/admin/users/{claims_of(doctor)['sub']}/roles/doctor", token=admin),
       204, "the admin revokes the doctor role")
    wait_for(lambda: http("PUT", svc + "/doctors/me/schedule", {"slots": [iso(slot_later)]},
                          doctor)[0] == 403, "the check API refusing the revoked doctor", 5)
    expect("doctor" in claims_of(doctor)["roles"], "the old token still lists doctor")
    ok(kw.api("PUT", f"/v1/admin/users/{claims_of(doctor)['sub']}/roles/doctor", token=admin),
       204, "the admin grants it back")

    step("the reminder of the kept booking arrives by mail and in the inbox, in time")
    mail = kw.wait_mail(patient_email, "Reminder: Dr. Ivanova tomorrow", booking["id"], timeout=30)
    expect(iso(slot_kept) in mail["text"], "the reminder names the appointment's time", mail["text"])
    kw.wait_inbox(patient, "Appointment tomorrow", booking["id"], timeout=10)

    step("the cancelled booking's reminder never came; the delivery log says cancelled")
    # It was due 5 s before the one that arrived.
    reminders = [m for m in kw.mails(patient_email) if m["subject"].startswith("Reminder:")]
    expect(len(reminders) == 1, "exactly one reminder mail", subjects(reminders))
    expect(not any(i["title"] == "Appointment tomorrow" and other["id"] in i["body"]
                   for i in kw.inbox(patient)), "no inbox reminder for the cancelled booking")
    log = ok(kw.api("GET", f"/v1/admin/notifications?user_id={pclaims['sub']}&limit=100",
                    token=admin), 200, "the delivery log")["items"]
    rows = [r for r in log if r["notification_id"] == other["reminder_id"]]
    expect(sorted(r["status"] for r in rows) == ["cancelled", "cancelled"],
           "the cancelled reminder's email and in_app deliveries are cancelled", rows)
    rows = [r for r in log if r["notification_id"] == booking["reminder_id"]]
    expect(rows and all(r["status"] == "sent" for r in rows),
           "the kept reminder's deliveries are sent", rows)

    step("everything the patient received, exactly")
    want = sorted(["Confirm your email address",
                   "Your appointment with Dr. Ivanova is booked",
                   "Your appointment with Dr. Ivanova is booked",
                   "Your appointment with Dr. Ivanova is cancelled",
                   "Reminder: Dr. Ivanova tomorrow"])
    expect(subjects(kw.mails(patient_email)) == want, f"the patient's mails are {want}",
           subjects(kw.mails(patient_email)))
    titles = sorted(i["title"] for i in kw.inbox(patient))
    want = sorted(["Appointment booked", "Appointment booked", "Appointment cancelled",
                   "Appointment tomorrow"])
    expect(titles == want, f"the patient's inbox is {want}", titles)


# --- The event site --------------------------------------------------------------------------


def events(fx: dict) -> None:
    kw = Keyward(fx["keyward"], fx["maildev"])
    site = fx["service"].rstrip("/")  # NGINX, in front of the Registration service
    org_fx = fx["users"]["organizer"]

    step("an attendee signs up on Keyward and fills in her profile")
    email = f"ada@{fx['domain']}"
    ada = kw.sign_up(email, "analytical engine 1843")
    expect(claims_of(ada)["roles"] == ["attendee"], "the default role of the events preset",
           claims_of(ada)["roles"])
    ok(kw.api("PATCH", "/v1/users/me",
              {"display_name": "Ada Lovelace", "attributes": {"company": "Analytical Engines"}},
              ada), 200, "PATCH /v1/users/me")
    organizer = kw.login(org_fx["email"], org_fx["password"])

    step("NGINX asks Keyward before every request: no token 401, a bad one 401")
    refused(http("GET", site + "/events"), 401, "unauthenticated", "no token")
    refused(http("GET", site + "/events", token="not.a.jwt"), 401, "unauthenticated", "a bad token")
    status, _ = http("GET", site + "/_keyward/verify", token=ada)
    expect(status == 404, "the verification location is internal", status)

    step("?permission=events:write: the organizer creates an event, the attendee may not")
    starts = iso(datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30))
    refused(http("POST", site + "/events", {"title": "x", "starts_at": starts, "capacity": 5}, ada),
            403, "forbidden", "an attendee creating an event")
    event = ok(http("POST", site + "/events",
                    {"title": "RustConf Moscow", "starts_at": starts, "capacity": 2}, organizer),
               201, "the organizer creates an event")
    expect(event["organizer_id"] == claims_of(organizer)["sub"],
           "the service got the organizer's id from X-Keyward-User-Id", event)
    listed = ok(http("GET", site + "/events", token=ada), 200, "events:read as the attendee")
    expect([e["id"] for e in listed["items"]] == [event["id"]], "the attendee sees it", listed)

    step("?permission=registrations:write: the attendee registers; the service reads her profile")
    # A header the client sends under the identity's name is replaced by NGINX.
    reg = ok(http("POST", site + f"/events/{event['id']}/registrations", token=ada,
                  headers={"X-Keyward-User-Id": claims_of(organizer)["sub"]}),
             201, "POST /events/{id}/registrations")
    expect(reg["user_id"] == claims_of(ada)["sub"], "registered as herself, not as the forged id",
           reg)
    expect(reg["attendee_name"] == "Ada Lovelace" and reg["company"] == "Analytical Engines",
           "the badge comes from her Keyward profile", reg)
    refused(http("POST", site + f"/events/{event['id']}/registrations", token=ada), 409,
            "already_registered", "registering twice")
    refused(http("POST", site + f"/events/{event['id']}/registrations", token=organizer), 403,
            "forbidden", "the organizer registering (no registrations:write)")

    step("?permission=registrations:read: the organizer lists the attendees, the attendee may not")
    regs = ok(http("GET", site + f"/events/{event['id']}/registrations", token=organizer), 200,
              "the organizer's list")
    expect([r["attendee_name"] for r in regs["items"]] == ["Ada Lovelace"], "one attendee", regs)
    refused(http("GET", site + f"/events/{event['id']}/registrations", token=ada), 403,
            "forbidden", "an attendee listing attendees")

    step("the requests published to keyward.notify became a mail and inbox items")
    mail = kw.wait_mail(email, "You are registered for RustConf Moscow", reg["id"])
    expect("Hello Ada Lovelace" in mail["text"], "the mail greets her by her profile name",
           mail["text"])
    kw.wait_inbox(ada, "Registered: RustConf Moscow", reg["id"])
    kw.wait_inbox(organizer, "New registration for RustConf Moscow",
                  "Ada Lovelace registered (1 of 2 places taken)")
    expect(subjects(kw.mails(email)) == sorted(["Confirm your email address",
                                                "You are registered for RustConf Moscow"]),
           "the attendee's mails, exactly", subjects(kw.mails(email)))
    expect(subjects(kw.mails(org_fx["email"])) == [],
           "the organizer's note is in-app only (channels: [in_app])", kw.mails(org_fx["email"]))

    step("a logout ends the session for NGINX at once, although the token has not expired")
    ok(kw.api("POST", "/v1/auth/logout", token=ada), 204, "POST /v1/auth/logout")
    refused(http("GET", site + "/events", token=ada), 401, "unauthenticated",
            "the logged-out token at NGINX")


# --- The marketplace -------------------------------------------------------------------------


def marketplace(fx: dict) -> None:
    kw = Keyward(fx["keyward"], fx["maildev"])
    svc = fx["service"].rstrip("/")
    admin = kw.login(fx["users"]["admin"]["email"], fx["users"]["admin"]["password"])
    support_fx, mallory_fx = fx["users"]["support"], fx["users"]["mallory"]

    step("a customer and a freelancer sign up; the marketplace's onboarding grants freelancer")
    alice_email, bob_email = f"alice@{fx['domain']}", f"bob@{fx['domain']}"
    alice = kw.sign_up(alice_email, "bakery logo wanted")
    expect(claims_of(alice)["roles"] == ["customer"], "the default role of the marketplace preset",
           claims_of(alice)["roles"])
    ok(kw.api("PATCH", "/v1/users/me", {"display_name": "Alice Baker"}, alice), 200, "Alice's name")
    bob = kw.sign_up(bob_email, "vector art for hire")
    bob_id = claims_of(bob)["sub"]
    ok(kw.api("PUT", f"/v1/admin/users/{bob_id}/roles/freelancer", token=admin), 204,
       "an admin grants Bob freelancer")
    bob = kw.login(bob_email, "vector art for hire")
    expect(sorted(claims_of(bob)["roles"]) == ["customer", "freelancer"], "Bob's new token",
           claims_of(bob)["roles"])
    ok(kw.api("PATCH", "/v1/users/me",
              {"display_name": "Bob Draws", "attributes": {"skills": ["logos", "vector"]}}, bob),
       200, "Bob's profile")
    mallory = kw.login(mallory_fx["email"], mallory_fx["password"])
    support = kw.login(support_fx["email"], support_fx["password"])

    step("orders need the role customer, responses the role freelancer (from the token)")
    order = ok(http("POST", svc + "/orders", {"title": "Logo for a bakery", "budget": 300}, alice),
               201, "Alice orders a logo")
    refused(http("POST", svc + "/orders", {"title": "x", "budget": 1}, support), 403, "forbidden",
            "support ordering (not a customer)")
    refused(http("POST", svc + f"/orders/{order['id']}/responses",
                 {"price": 1, "message": "me!"}, alice), 403, "forbidden",
            "a customer responding (not a freelancer)")
    refused(http("POST", svc + "/orders", {"title": "x", "budget": 1}), 401, "unauthenticated",
            "no token")

    step("freelancers respond: the customer is told in the app")
    bid = ok(http("POST", svc + f"/orders/{order['id']}/responses",
                  {"price": 250, "message": "Three sketches by Friday"}, bob), 201, "Bob responds")
    ok(http("POST", svc + f"/orders/{order['id']}/responses",
                    {"price": 1, "message": "pay me outside the site or else"}, mallory), 201,
               "Mallory responds")
    kw.wait_inbox(alice, "New response to Logo for a bakery", "Bob Draws offers to do it for 250")
    kw.wait_inbox(alice, "New response to Logo for a bakery", "offers to do it for 1")

    step("the customer accepts Bob's response: Bob is told in the app")
    refused(http("POST", svc + f"/orders/{order['id']}/responses/{bid['id']}/accept", token=bob),
            404, "order_not_found", "Bob accepting on Alice's order")
    accepted = ok(http("POST", svc + f"/orders/{order['id']}/responses/{bid['id']}/accept",
                       token=alice), 200, "Alice accepts")
    expect(accepted["status"] == "assigned", "the order is assigned", accepted)
    kw.wait_inbox(bob, "Your response was accepted", "Alice Baker chose you for Logo for a bakery")
    expect(all(i["title"] != "Your response was accepted" for i in kw.inbox(mallory)),
           "Mallory was not told anything about Bob's acceptance")

    step("support blocks Mallory through the management API, from the marketplace's console")
    mallory_id = claims_of(mallory)["sub"]
    refused(http("POST", svc + f"/support/users/{mallory_id}/block", {"reason": "x"}, mallory),
            403, "forbidden", "Mallory blocking herself (not support)")
    status, body = http("POST", svc + f"/support/users/{mallory_id}/block",
                        {"reason": "threatened a customer"}, support)
    expect(status == 204, "support blocks Mallory", f"{status} {body}")
    refused(kw.api("POST", "/v1/auth/login",
                   {"login": mallory_fx["email"], "password": mallory_fx["password"]}),
            403, "account_blocked", "Mallory logging in")
    status, _ = kw.api("GET", "/v1/auth/verify", token=mallory)
    expect(status == 401, "Keyward's forward-auth refuses her old token at once", status)
    refused(http("POST", svc + f"/orders/{order['id']}/responses",
                 {"price": 1, "message": "again"}, mallory), 403, "account_blocked",
            "the marketplace refuses her still-unexpired token")

    step("the audit log names the support agent; user.blocked reached the marketplace's queue")
    audit = ok(kw.api("GET", f"/v1/admin/audit?user_id={mallory_id}&type=user.blocked",
                      token=support), 200, "support reads the audit log (audit:read)")["items"]
    expect(any(a["actor_id"] == claims_of(support)["sub"] for a in audit),
           "user.blocked with the agent as actor", audit)
    expect(audit[0]["details"].get("reason") == "threatened a customer", "with the reason", audit)

    step("mails and inboxes, exactly")
    for who in (alice_email, bob_email):
        expect(subjects(kw.mails(who)) == ["Confirm your email address"],
               f"{who} got the verification mail only (orders are in-app)", subjects(kw.mails(who)))
    expect(sorted(i["title"] for i in kw.inbox(alice)) == ["New response to Logo for a bakery"] * 2,
           "Alice's inbox: the two responses", kw.inbox(alice))
    expect([i["title"] for i in kw.inbox(bob)] == ["Your response was accepted"],
           "Bob's inbox: the acceptance", kw.inbox(bob))


STORIES = {"clinic": clinic, "events": events, "marketplace": marketplace}


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in STORIES:
        print(f"usage: {sys.argv[0]} {'|'.join(STORIES)} FIXTURES.json", file=sys.stderr)
        return 2
    with open(sys.argv[2], encoding="utf-8") as f:
        fixtures = json.load(f)
    try:
        STORIES[sys.argv[1]](fixtures)
    except Failed as e:
        print(f"  FAILED: {e}", file=sys.stderr)
        return 1
    step(f"{sys.argv[1]}: every expectation held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
