#!/usr/bin/env python3
"""Passkeys (WebAuthn) in a real browser: headless Chromium with its CDP virtual authenticator.

    python tests/browser/passkeys.py --base-url http://localhost:PORT --email E --password P

scripts/browser-passkeys.sh installs Chromium and Playwright, starts a node with a fresh user
and runs this. The user must exist, be verified and have no second factor yet. The base URL's
host must be `localhost`: WebAuthn refuses IP addresses as RP IDs.

Steps: password login; register a passkey; passwordless sign-in with it; a replayed assertion
is refused; password + passkey as second factor; the authenticator holds one resident
credential. Prints `ok N - ...` per step and exits non-zero on the first failure.
"""
import argparse
import base64
import json
import sys
import time
import traceback
from urllib.parse import urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

TEST_PATH = "/__passkey_test"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium's background connections are refused by the closed network.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Chromium tries ::1 first for localhost; the node listens on 127.0.0.1 only, and whatever
    # else holds [::1]:PORT would get the requests.
    "--host-resolver-rules=MAP localhost 127.0.0.1",
]
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}
TOTAL_STEPS = 6

# Served by page.route on the node's own origin, so its fetch('/v1/...') calls reach the real
# API without CORS. Each function returns plain JSON for page.evaluate.
PAGE = """<!doctype html>
<meta charset="utf-8"><title>Keyward passkey test</title>
<script>
// A call that never settles would hang page.evaluate; abort it instead.
const timeoutSignal = () => AbortSignal.timeout(30000);

async function api(method, path, body, token) {
  const headers = { accept: "application/json" };
  if (body !== undefined && body !== null) headers["content-type"] = "application/json";
  if (token) headers.authorization = "Bearer " + token;
  const r = await fetch(path, {
    method, headers, body: body === undefined || body === null ? undefined : JSON.stringify(body),
    signal: timeoutSignal(),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) {}
  return { status: r.status, contentType: r.headers.get("content-type"), body: json ?? text };
}
function expect200(res, what) {
  if (res.status !== 200) throw new Error(`${what}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}
async function createPasskey(token, name) {
  const opts = expect200(await api("POST", "/v1/users/me/passkeys/options", {}, token),
                         "POST /v1/users/me/passkeys/options");
  let cred;
  try {
    cred = await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(opts.publicKey),
      signal: timeoutSignal(),
    });
  } catch (e) {
    throw new Error(`navigator.credentials.create: ${e.name}: ${e.message}; options ${JSON.stringify(opts)}`);
  }
  const credential = { ...cred.toJSON(), name };
  const result = await api("POST", "/v1/users/me/passkeys", credential, token);
  return { options: opts.publicKey, credential, result };
}

async function getAssertion(publicKey) {
  try {
    const cred = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(publicKey),
      signal: timeoutSignal(),
    });
    return cred.toJSON();
  } catch (e) {
    throw new Error(`navigator.credentials.get: ${e.name}: ${e.message}; options ${JSON.stringify(publicKey)}`);
  }
}

async function passkeySignIn() {
  const opts = expect200(await api("POST", "/v1/auth/passkey/options", {}),
                         "POST /v1/auth/passkey/options");
  const assertion = await getAssertion(opts.publicKey);
  return { options: opts.publicKey, assertion, result: await api("POST", "/v1/auth/passkey", assertion) };
}
</script>
<p>Keyward passkey test page</p>
"""


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_claims(token):
    try:
        return json.loads(b64url_decode(token.split(".")[1]))
    except (IndexError, ValueError) as e:
        raise Failure(f"access_token is not a JWT ({e}): {token[:40]}...")


def check_token_pair(res, what):
    body = res["body"]
    check(res["status"] == 200, f"{what}: expected 200 with a TokenPair, got HTTP {res['status']}: {body}")
    check(isinstance(body, dict), f"{what}: not a JSON object: {body}")
    check(not body.get("mfa_required"), f"{what}: asked for a second factor: {body}")
    for key in ("access_token", "refresh_token", "token_type", "expires_in"):
        check(body.get(key), f"{what}: TokenPair has no {key}: {body}")
    check(body["token_type"].lower() == "bearer", f"{what}: token_type {body['token_type']!r}")
    return body


def check_claims(token, amr, acr, what):
    claims = jwt_claims(token)
    check(claims.get("amr") == amr and claims.get("acr") == acr,
          f"{what}: expected amr {amr} and acr {acr!r}, got amr {claims.get('amr')} "
          f"acr {claims.get('acr')!r} (claims {claims})")
    return claims


def run(page, cdp, authenticator_id, email, password, progress):
    def call(method, path, body=None, token=None):
        return page.evaluate("([m, p, b, t]) => api(m, p, b, t)", [method, path, body, token])

    def ok(msg):
        progress["passed"] += 1
        print(f"ok {progress['passed']} - {msg}", flush=True)

    check(page.evaluate("typeof PublicKeyCredential?.parseCreationOptionsFromJSON === 'function'"
                        " && typeof PublicKeyCredential.prototype.toJSON === 'function'"),
          "this Chromium lacks PublicKeyCredential.parseCreationOptionsFromJSON / toJSON")
    check(page.evaluate("window.isSecureContext"), f"{page.url} is not a secure context")

    # 1
    res = call("POST", "/v1/auth/login", {"login": email, "password": password})
    check(not (isinstance(res["body"], dict) and res["body"].get("mfa_required")),
          f"{email} already has a second factor; the test needs a fresh user: {res['body']}")
    pwd = check_token_pair(res, "password login")
    ok(f"password login for {email}: TokenPair (amr {jwt_claims(pwd['access_token']).get('amr')})")

    # 2
    reg = page.evaluate("([t, n]) => createPasskey(t, n)", [pwd["access_token"], "Test laptop"])
    res, cred = reg["result"], reg["credential"]
    check(res["status"] == 201, f"POST /v1/users/me/passkeys: expected 201, got HTTP {res['status']}: {res['body']}")
    body = res["body"]
    check(body.get("type") == "passkey" and body.get("factor_id"),
          f"POST /v1/users/me/passkeys: expected a factor_id and type passkey, got {body}")
    codes = body.get("recovery_codes")
    check(isinstance(codes, list) and len(codes) == 10 and len(set(codes)) == 10
          and all(isinstance(c, str) and c for c in codes),
          f"a first factor must come with 10 distinct recovery codes, got {codes!r}")
    factor_id, cred_id = body["factor_id"], cred["id"]
    ok(f"passkey registered in the browser: factor {factor_id}, credential {cred_id[:16]}..., "
       f"rp {reg['options'].get('rp')}, 10 recovery codes")

    # 3
    try:
        signin = page.evaluate("passkeySignIn()")
    except PlaywrightError as e:
        raise Failure(f"{e}\n  (a NotAllowedError here: did registration make a discoverable credential? "
                      "authenticatorSelection.residentKey should be 'required')")
    check(signin["options"].get("allowCredentials", []) == [],
          f"passwordless options should allow any discoverable credential: {signin['options']}")
    assertion = signin["assertion"]
    check(assertion["id"] == cred_id, f"signed in with credential {assertion['id']}, registered {cred_id}")
    check(assertion["response"].get("userHandle"), "a discoverable credential's assertion has no userHandle")
    hwk = check_token_pair(signin["result"], "POST /v1/auth/passkey")
    check_claims(hwk["access_token"], ["hwk"], "aal2", "passkey sign-in token")
    me = call("GET", "/v1/users/me", token=hwk["access_token"])
    check(me["status"] == 200, f"GET /v1/users/me with the passkey token: HTTP {me['status']}: {me['body']}")
    ok(f"passwordless sign-in: amr ['hwk'], acr aal2; /v1/users/me is {me['body'].get('email', me['body'])}")

    # 4
    replay = call("POST", "/v1/auth/passkey", assertion)
    check(400 <= replay["status"] < 500,
          f"replaying a used assertion must be refused with a 4xx, got HTTP {replay['status']}: {replay['body']}")
    code = replay["body"].get("code") if isinstance(replay["body"], dict) else None
    ok(f"replayed assertion refused: HTTP {replay['status']} {code or replay['contentType']}")

    # 5
    res = call("POST", "/v1/auth/login", {"login": email, "password": password})
    body = res["body"]
    check(res["status"] == 200 and isinstance(body, dict) and body.get("mfa_required") is True
          and body.get("mfa_token"),
          f"password login with a passkey must ask for it: HTTP {res['status']}: {body}")
    factors = [f for f in body.get("factors", []) if f.get("type") == "passkey"]
    check([f["id"] for f in factors] == [factor_id],
          f"expected the one passkey factor {factor_id} in {body.get('factors')}")
    mfa_token = body["mfa_token"]
    res = call("POST", "/v1/auth/mfa/challenge", {"mfa_token": mfa_token, "factor_id": factor_id})
    check(res["status"] == 200 and isinstance(res["body"], dict) and "publicKey" in res["body"],
          f"POST /v1/auth/mfa/challenge: HTTP {res['status']}: {res['body']}")
    options = res["body"]["publicKey"]
    allowed = [c.get("id") for c in options.get("allowCredentials", [])]
    check(cred_id in allowed, f"the challenge's allowCredentials {allowed} lacks {cred_id}")
    second = page.evaluate("(o) => getAssertion(o)", options)
    res = call("POST", "/v1/auth/mfa/verify",
               {"mfa_token": mfa_token, "factor_id": factor_id, "credential": second})
    mfa = check_token_pair(res, "POST /v1/auth/mfa/verify")
    check_claims(mfa["access_token"], ["pwd", "hwk"], "aal2", "password + passkey token")
    ok("password + passkey second factor: amr ['pwd', 'hwk'], acr aal2")

    # 6
    creds = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"]
    check(len(creds) == 1, f"the virtual authenticator should hold one credential, holds {len(creds)}: {creds}")
    c = creds[0]
    check(c.get("isResidentCredential") is True, f"the credential is not resident (discoverable): {c}")
    check(c.get("rpId") == "localhost", f"the credential's rpId is {c.get('rpId')!r}, not 'localhost'")
    check(base64.b64decode(c["credentialId"]) == b64url_decode(cred_id),
          "the authenticator's credential is not the one registered")
    check(c.get("signCount", 0) > 0, f"the authenticator's signCount did not move: {c.get('signCount')}")
    ok(f"virtual authenticator holds one resident credential for rpId localhost (signCount {c['signCount']})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True, help="e.g. http://localhost:8080")
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    args = ap.parse_args()
    base = args.base_url.rstrip("/")
    if urlsplit(base).hostname != "localhost":
        ap.error("--base-url must be on host localhost (WebAuthn refuses IP addresses as RP IDs)")

    started = time.monotonic()
    console = []
    progress = {"passed": 0}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.on("console", lambda m: console.append(f"console.{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"page error: {e}"))
            page.route(base + TEST_PATH, lambda route: route.fulfill(
                status=200, content_type="text/html; charset=utf-8", body=PAGE))
            cdp = context.new_cdp_session(page)
            cdp.send("WebAuthn.enable")
            authenticator_id = cdp.send("WebAuthn.addVirtualAuthenticator",
                                        {"options": AUTHENTICATOR})["authenticatorId"]
            page.goto(base + TEST_PATH)
            run(page, cdp, authenticator_id, args.email, args.password, progress)
        except Exception as e:  # a malformed reply surfaces as KeyError etc.: show where
            detail = e if isinstance(e, (Failure, PlaywrightError)) else traceback.format_exc()
            print(f"not ok {progress['passed'] + 1} - {detail}", file=sys.stderr)
            for line in console[-20:]:
                print(f"  {line}", file=sys.stderr)
        finally:
            browser.close()
    passed = progress["passed"]
    failed = 0 if passed == TOTAL_STEPS else 1
    skipped = TOTAL_STEPS - passed - failed
    print(f"browser session took {time.monotonic() - started:.1f}s")
    # Alone on its line: the plain 'N passed, N failed' summary CI reads.
    print(f"passkeys: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return failed


if __name__ == "__main__":
    sys.exit(main())
