#!/usr/bin/env node
// Verify a Keyward access token offline through the node's JWKS, with jose.
//
//   node verify-token.mjs --issuer http://127.0.0.1:8080 [--jwks-url URL] [--audience keyward] TOKEN
//
// Arguments fall back to JWT_ISSUER, JWKS_URL, JWT_AUDIENCE and ACCESS_TOKEN. Exits 0 and prints
// the token's subject when it is valid; exits 1 with the reason when it is refused, 2 on usage
// errors.
//
// Offline verification cannot see revocation: a token of a session that was logged out or
// revoked stays valid here until it expires (15 minutes by default). Where that matters, ask
// Keyward instead: GET /v1/auth/verify with the bearer token.
import { parseArgs } from 'node:util';
import { createRemoteJWKSet, jwtVerify, errors } from 'jose';

function usage(message) {
  console.error(`verify-token: ${message}`);
  console.error('usage: verify-token.mjs --issuer URL [--jwks-url URL] [--audience AUD] TOKEN');
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      'jwks-url': { type: 'string' },
      issuer: { type: 'string' },
      audience: { type: 'string' },
    },
  });
} catch (e) {
  usage(e.message);
}
const { values, positionals } = parsed;
const issuer = values.issuer ?? process.env.JWT_ISSUER;
const audience = values.audience ?? process.env.JWT_AUDIENCE ?? 'keyward';
const token = positionals[0] ?? process.env.ACCESS_TOKEN;
if (!issuer) usage('--issuer (or JWT_ISSUER) is required: the node\'s public URL');
if (!token) usage('TOKEN (or ACCESS_TOKEN) is required');
const jwksUrl =
  values['jwks-url'] ?? process.env.JWKS_URL ?? `${issuer.replace(/\/+$/, '')}/.well-known/jwks.json`;

// One JWKS per process, created once: jose caches the keys, and refetches the set when a token
// names a kid it has not seen (a rotated key), at most once per cooldown (30 s by default).
const JWKS = createRemoteJWKSet(new URL(jwksUrl), {
  timeoutDuration: 5000,
  cacheMaxAge: 10 * 60 * 1000,
});

async function verifyAccessToken(jwt) {
  const { payload } = await jwtVerify(jwt, JWKS, {
    algorithms: ['EdDSA'], // never the token's own choice: no "none", no HS256
    typ: 'at+jwt', // an access token, not an ID token or another JWT signed by the same key
    issuer,
    audience,
    requiredClaims: ['exp', 'nbf', 'iat', 'sub', 'sid'],
    clockTolerance: 30, // seconds of clock skew allowed on exp/nbf
  });
  return payload;
}

try {
  const claims = await verifyAccessToken(token);
  console.log(claims.sub);
  console.error(
    `valid: sub=${claims.sub} sid=${claims.sid} email=${claims.email} roles=${JSON.stringify(claims.roles)}`,
  );
} catch (e) {
  if (e instanceof errors.JOSEError) {
    // e.code is stable, e.g. ERR_JWT_EXPIRED, ERR_JWS_SIGNATURE_VERIFICATION_FAILED,
    // ERR_JWT_CLAIM_VALIDATION_FAILED, ERR_JWKS_NO_MATCHING_KEY.
    console.error(`refused: ${e.code}: ${e.message}`);
  } else {
    console.error(`refused: ${e.message}`);
  }
  process.exit(1);
}
