#!/usr/bin/env python3
"""Put a product's notification templates into Keyward through the admin API.

    KEYWARD_TOKEN=<an access token with templates:write> \\
        scripts/put-templates.py --base-url http://127.0.0.1:8080 deploy/presets/clinic.templates.json

Templates are not configuration: Keyward keeps them in its database (seeded with its own auth
mails and `generic`), and every node renders with an edit within a second. A file holds
`{"templates": [{"key", "variables", "channels": {channel: {locale: parts}}}]}`, as
deploy/presets/*.templates.json do; each (key, channel, locale) becomes one
`PUT /v1/admin/templates/{key}/{channel}/{locale}` with `{parts, variables}`. Putting the same
file again replaces the templates with the same text, so it is safe to run on every deploy.

Prints one line per template; exits 1 when Keyward refused any (with its problem body), 2 on
usage errors. Standard library only.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


def put(base_url: str, token: str, key: str, channel: str, locale: str, body: dict) -> tuple:
    req = urllib.request.Request(
        f"{base_url.rstrip('/')}/v1/admin/templates/{key}/{channel}/{locale}",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def main() -> int:
    p = argparse.ArgumentParser(description="PUT notification templates into Keyward.")
    p.add_argument("--base-url", default=os.environ.get("KEYWARD_URL", "http://127.0.0.1:8080"),
                   help="Keyward's public API (env KEYWARD_URL)")
    p.add_argument("files", nargs="+", metavar="FILE")
    args = p.parse_args()
    token = os.environ.get("KEYWARD_TOKEN")
    if not token:
        p.error("set KEYWARD_TOKEN to an access token with templates:write (an admin's)")

    failed = 0
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        for t in doc["templates"]:
            for channel, locales in t["channels"].items():
                for locale, parts in locales.items():
                    status, text = put(args.base_url, token, t["key"], channel, locale,
                                       {"parts": parts, "variables": t["variables"]})
                    where = f"{t['key']}/{channel}/{locale}"
                    if status in (200, 201):
                        print(f"{where}: {'created' if status == 201 else 'replaced'}")
                    else:
                        failed += 1
                        print(f"{where}: refused ({status}): {text}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
