#!/usr/bin/env python3
"""Verify a Keyward access token offline through the node's JWKS, with PyJWT.

    python verify_token.py --issuer http://127.0.0.1:8080 [--jwks-url URL] [--audience keyward] TOKEN

Arguments fall back to JWT_ISSUER, JWKS_URL, JWT_AUDIENCE and ACCESS_TOKEN. Exits 0 and prints
the token's subject when it is valid; exits 1 with the reason when it is refused, 2 on usage
errors.

Offline verification cannot see revocation: a token of a session that was logged out or revoked
stays valid here until it expires (15 minutes by default). Where that matters, ask Keyward
instead: GET /v1/auth/verify with the bearer token.
"""

import argparse
import os
import sys

import jwt  # PyJWT[crypto]: EdDSA needs the cryptography package

ALGORITHMS = ["EdDSA"]  # never the token's own choice: no "none", no HS256
TOKEN_TYPE = "at+jwt"
LEEWAY_SECS = 30  # clock skew allowed on exp/nbf/iat


class Verifier:
    """One per process: PyJWKClient caches the key set (here for 10 minutes) and refetches it
    when a token names a kid it has not seen (a rotated key), at most once per cooldown."""

    def __init__(self, jwks_url: str, issuer: str, audience: str):
        self.jwks = jwt.PyJWKClient(jwks_url, lifespan=600, timeout=5, cooldown_duration=30)
        self.issuer = issuer
        self.audience = audience

    def verify(self, token: str) -> dict:
        header = jwt.get_unverified_header(token)
        # The header is covered by the signature checked below; checking typ first only gives
        # a clearer reason. An ID token or another JWT signed by the same key is not an access
        # token.
        if header.get("typ") != TOKEN_TYPE:
            raise jwt.InvalidTokenError(f"typ is {header.get('typ')!r}, expected {TOKEN_TYPE!r}")
        if header.get("alg") not in ALGORITHMS:
            raise jwt.InvalidAlgorithmError(f"alg {header.get('alg')!r} is not allowed")
        key = self.jwks.get_signing_key(header.get("kid"))
        return jwt.decode(
            token,
            key.key,
            algorithms=ALGORITHMS,
            issuer=self.issuer,
            audience=self.audience,
            leeway=LEEWAY_SECS,
            options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub", "sid"]},
        )


def main() -> int:
    p = argparse.ArgumentParser(description="Verify a Keyward access token through JWKS.")
    p.add_argument("--issuer", default=os.environ.get("JWT_ISSUER"),
                   help="the node's public URL (env JWT_ISSUER)")
    p.add_argument("--jwks-url", default=os.environ.get("JWKS_URL"),
                   help="default: ISSUER/.well-known/jwks.json (env JWKS_URL)")
    p.add_argument("--audience", default=os.environ.get("JWT_AUDIENCE", "keyward"),
                   help="expected aud (env JWT_AUDIENCE, default keyward)")
    p.add_argument("token", nargs="?", default=os.environ.get("ACCESS_TOKEN"),
                   help="the access token (env ACCESS_TOKEN)")
    args = p.parse_args()
    if not args.issuer:
        p.error("--issuer (or JWT_ISSUER) is required: the node's public URL")
    if not args.token:
        p.error("TOKEN (or ACCESS_TOKEN) is required")
    jwks_url = args.jwks_url or args.issuer.rstrip("/") + "/.well-known/jwks.json"

    verifier = Verifier(jwks_url, args.issuer, args.audience)
    try:
        claims = verifier.verify(args.token)
    except jwt.PyJWTError as e:
        # InvalidSignatureError, ExpiredSignatureError, InvalidIssuerError, ... or
        # PyJWKClientError: the JWKS is unreachable or has no key with the token's kid.
        print(f"refused: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(claims["sub"])
    print(f"valid: sub={claims['sub']} sid={claims['sid']} email={claims.get('email')} "
          f"roles={claims.get('roles')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
