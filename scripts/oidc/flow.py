#!/usr/bin/env python3
"""Reference client for the test OpenID provider (scripts/oidc/server.mjs), stdlib only.

Walks the authorization code flow over plain HTTP the way a test with an HTTP client and a
cookie jar must (no browser): discovery, dynamic registration, /auth with state, nonce and
PKCE S256, the dev login form, the code exchange, the id_token's claims, userinfo; then shows
that a code is single-use, that a wrong code_verifier and a missing code_challenge are refused.

    scripts/services.sh oidc -- python3 scripts/oidc/flow.py [REDIRECT_URI] [LOGIN...]

Defaults: http://127.0.0.1:9/cb (nothing listens there: only the Location header is read),
logins `ann` and `unverified-bob`. The issuer comes from KEYWARD_TEST_OIDC_ISSUER.
"""
import base64
import hashlib
import html.parser
import http.cookiejar
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # hand 30x back as the response: each hop is printed and followed by hand


class Browser:
    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, method, url, form=None, json_body=None, headers=None):
        data = None
        headers = dict(headers or {})
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            resp = self.opener.open(req, timeout=10)
        except urllib.error.HTTPError as e:
            resp = e
        body = resp.read()
        location = resp.headers.get("Location")
        cookies = sorted({c.split("=", 1)[0] for c in resp.headers.get_all("Set-Cookie") or []})
        shown = url if len(url) < 110 else url[:107] + "..."
        print(f"  {method} {shown}" + (f"  form={sorted(form)}" if form else ""))
        print(f"    -> {resp.status}" + (f"  Location: {location}" if location else "")
              + (f"  Set-Cookie: {', '.join(cookies)}" if cookies else ""))
        return resp.status, resp.headers, body, location


class FormParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.action, self.fields = None, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64decode(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")


def authorize(b, disc, client, redirect_uri, login, extra=None):
    """From GET /auth to the redirect to redirect_uri; returns its query and the PKCE/nonce."""
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": redirect_uri,
        "scope": "openid email profile", "state": state, "nonce": nonce,
        "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    params.update(extra or {})
    params = {k: v for k, v in params.items() if v is not None}
    url = disc["authorization_endpoint"] + "?" + urllib.parse.urlencode(params)
    method, form = "GET", None
    for _ in range(10):
        status, _, body, location = b.request(method, url, form=form)
        method, form = "GET", None
        if location and location.startswith(redirect_uri):
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
            check(query.get("state") == state, "state comes back")
            return query, verifier, nonce
        if status in (302, 303):
            url = urllib.parse.urljoin(url, location)
        elif status == 200 and b'name="login"' in body:
            p = FormParser()
            p.feed(body.decode())
            check(p.fields.get("prompt") == "login", "the dev login form")
            url = urllib.parse.urljoin(url, p.action)
            method, form = "POST", {"prompt": "login", "login": login, "password": "any"}
        else:
            raise SystemExit(f"FAIL: unexpected {status}: {body[:300]!r}")
    raise SystemExit("FAIL: too many redirects")


def token(b, disc, client, auth, form):
    form = dict(form)
    headers = {}
    if auth == "client_secret_basic":
        # RFC 6749 2.3.1: form-encode id and secret, then Basic.
        cred = f"{urllib.parse.quote(client['client_id'], safe='')}:{urllib.parse.quote(client['client_secret'], safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
    else:
        form.update(client_id=client["client_id"], client_secret=client["client_secret"])
    status, _, body, _ = b.request("POST", disc["token_endpoint"], form=form, headers=headers)
    return status, json.loads(body)


def run(disc, issuer, redirect_uri, login, auth):
    print(f"\n== login {login!r}, token_endpoint_auth_method {auth}")
    b = Browser()  # a fresh browser: no provider session yet
    print("register a client:")
    reg = {
        "redirect_uris": [redirect_uri], "client_name": "keyward flow.py",
        "token_endpoint_auth_method": auth, "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
    print(f"    body {json.dumps(reg)}")
    status, _, body, _ = b.request("POST", disc["registration_endpoint"], json_body=reg)
    check(status == 201, "registration answers 201")
    client = json.loads(body)
    print(f"    reply {json.dumps({k: v if k not in ('client_secret', 'registration_access_token') else '…' for k, v in client.items()})}")

    print("authorize (login form):")
    t = time.monotonic()
    query, verifier, nonce = authorize(b, disc, client, redirect_uri, login)
    check("code" in query and query.get("iss") == issuer, "code and iss in the redirect")
    print(f"    cookies now held: {sorted(f'{c.name} (path {c.path})' for c in b.jar)}")
    form = {"grant_type": "authorization_code", "code": query["code"],
            "redirect_uri": redirect_uri, "code_verifier": verifier}
    print("exchange the code:")
    status, tok = token(b, disc, client, auth, form)
    check(status == 200, f"token exchange: {tok}")
    print(f"    reply keys {sorted(tok)}, token_type {tok['token_type']}, expires_in {tok['expires_in']},"
          f" scope {tok.get('scope')!r}, access_token {'JWT' if tok['access_token'].count('.') == 2 else 'opaque'}"
          f" ({len(tok['access_token'])} chars)")
    head, payload, _ = tok["id_token"].split(".")
    header, claims = json.loads(b64decode(head)), json.loads(b64decode(payload))
    print(f"    id_token header {header} (keys at {disc['jwks_uri']})")
    print(f"    id_token claims {claims}")
    check(claims["iss"] == issuer and claims["aud"] == client["client_id"], "iss and aud")
    check(claims["nonce"] == nonce and claims["sub"] == login, "nonce and sub")
    want_email = login if "@" in login else f"{login}@example.com"
    want_verified = not login.startswith("unverified")
    check(claims.get("email") == want_email and claims.get("email_verified") is want_verified,
          "email and email_verified in the id_token")
    check(claims.get("name") == login[:1].upper() + login[1:] and claims.get("picture"), "name, picture")

    print("userinfo:")
    status, _, body, _ = b.request("GET", disc["userinfo_endpoint"],
                                   headers={"Authorization": f"Bearer {tok['access_token']}"})
    info = json.loads(body)
    print(f"    {info}")
    check(status == 200 and all(info.get(k) == claims[k] for k in
                                ("sub", "email", "email_verified", "name", "picture")), "userinfo")
    status, headers, body, _ = b.request("GET", info["picture"])
    check(status == 200 and headers["Content-Type"] == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n",
          "the picture is a PNG")
    print(f"  flow done in {time.monotonic() - t:.2f}s")

    print("the same code again:")
    status, err = token(b, disc, client, auth, form)
    print(f"    {err}")
    check(status == 400 and err["error"] == "invalid_grant", "a code is single-use")

    print("a new code (the provider session cookie skips the login form), wrong code_verifier:")
    query, verifier, _ = authorize(b, disc, client, redirect_uri, login)
    status, err = token(b, disc, client, auth, {**form, "code": query["code"],
                                                 "code_verifier": secrets.token_urlsafe(48)})
    print(f"    {err}")
    check(status == 400 and err["error"] == "invalid_grant", "a wrong code_verifier is refused")

    print("no code_challenge at all:")
    query, _, _ = authorize(b, disc, client, redirect_uri, login,
                            {"code_challenge": None, "code_challenge_method": None})
    print(f"    {query}")
    check(query.get("error") == "invalid_request" and "code" not in query, "PKCE is required")


def main():
    issuer = os.environ.get("KEYWARD_TEST_OIDC_ISSUER") or sys.exit("KEYWARD_TEST_OIDC_ISSUER unset")
    args = sys.argv[1:]
    redirect_uri = args.pop(0) if args and "://" in args[0] else "http://127.0.0.1:9/cb"
    logins = args or ["ann", "unverified-bob"]
    print("discovery:")
    status, _, body, _ = Browser().request("GET", issuer + "/.well-known/openid-configuration")
    disc = json.loads(body)
    check(status == 200 and disc["issuer"] == issuer, "discovery names the issuer")
    check(disc["code_challenge_methods_supported"] == ["S256"], "S256 only")
    print(f"    {', '.join(f'{k}={disc[k]}' for k in ('authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'registration_endpoint', 'jwks_uri', 'id_token_signing_alg_values_supported', 'code_challenge_methods_supported'))}")
    for i, login in enumerate(logins):
        run(disc, issuer, redirect_uri, login, ("client_secret_basic", "client_secret_post")[i % 2])
    print("\nOK: all flows passed")


if __name__ == "__main__":
    main()
