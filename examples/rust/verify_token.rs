//! Verify a Keyward access token offline through the node's JWKS, with jsonwebtoken.
//!
//! ```sh
//! cargo run --example verify_token -- --issuer http://127.0.0.1:8080 [--jwks-url URL] [--audience keyward] TOKEN
//! ```
//!
//! Arguments fall back to JWT_ISSUER, JWKS_URL, JWT_AUDIENCE and ACCESS_TOKEN. Exits 0 and prints
//! the token's subject when it is valid; exits 1 with the reason when it is refused, 2 on usage
//! errors.
//!
//! Offline verification cannot see revocation: a token of a session that was logged out or
//! revoked stays valid here until it expires (15 minutes by default). Where that matters, ask
//! Keyward instead: `GET /v1/auth/verify` with the bearer token.
//!
//! This workspace builds reqwest without TLS, so this example fetches `http://` JWKS URLs only;
//! in your service enable one of reqwest's TLS features (e.g. `rustls-tls`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// How long a fetched key set is trusted before it is fetched again.
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// At most one refetch per this interval for tokens naming an unknown `kid`, so that a stream
/// of forged kids cannot turn the verifier into a load generator against Keyward.
const REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// Clock skew allowed on exp/nbf.
const LEEWAY_SECS: u64 = 30;

/// The claims this service uses. iss, aud, exp and nbf are checked by `Validation`.
#[derive(Debug, Deserialize)]
struct AccessClaims {
    sub: String,
    sid: String,
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
    #[serde(default)]
    roles: Vec<String>,
}

/// A cached JWKS: refetched when it is older than `JWKS_MAX_AGE`, or when a token names a kid
/// it does not hold (the signing key was rotated), at most once per `REFETCH_COOLDOWN`. One
/// per process.
struct Jwks {
    client: reqwest::Client,
    url: String,
    keys: JwkSet,
    fetched_at: Option<Instant>,
}

impl Jwks {
    fn new(url: String) -> Result<Jwks, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Jwks {
            client,
            url,
            keys: JwkSet { keys: Vec::new() },
            fetched_at: None,
        })
    }

    async fn refresh(&mut self) -> Result<(), String> {
        let reply = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("cannot fetch JWKS from {}: {e}", self.url))?;
        self.keys = reply
            .json()
            .await
            .map_err(|e| format!("JWKS from {} is not a key set: {e}", self.url))?;
        self.fetched_at = Some(Instant::now());
        Ok(())
    }

    async fn key(&mut self, kid: &str) -> Result<DecodingKey, String> {
        let stale = match self.fetched_at.map(|t| t.elapsed()) {
            None => true,
            Some(age) if age > JWKS_MAX_AGE => true,
            // A kid we do not know: the key was probably rotated since the last fetch.
            Some(age) => self.keys.find(kid).is_none() && age > REFETCH_COOLDOWN,
        };
        if stale {
            self.refresh().await?;
        }
        let jwk = self
            .keys
            .find(kid)
            .ok_or_else(|| format!("no key with kid {kid:?} in the JWKS"))?;
        DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid:?}: {e}"))
    }
}

struct Verifier {
    jwks: Jwks,
    validation: Validation,
}

impl Verifier {
    fn new(jwks_url: String, issuer: &str, audience: &str) -> Result<Verifier, String> {
        // Only EdDSA: the algorithm is never the token's choice (no "none", no HS256).
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Ok(Verifier {
            jwks: Jwks::new(jwks_url)?,
            validation,
        })
    }

    async fn verify(&mut self, token: &str) -> Result<AccessClaims, String> {
        let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        // The header is covered by the signature that `decode` checks; reading it first only
        // picks the key and gives clearer reasons.
        if header.alg != Algorithm::EdDSA {
            return Err(format!("alg {:?} is not allowed", header.alg));
        }
        // An ID token or another JWT signed by the same key is not an access token.
        if header.typ.as_deref() != Some("at+jwt") {
            return Err(format!("typ is {:?}, expected \"at+jwt\"", header.typ));
        }
        let kid = header.kid.ok_or("the token has no kid")?;
        let key = self.jwks.key(&kid).await?;
        decode::<AccessClaims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }
}

struct Args {
    jwks_url: String,
    issuer: String,
    audience: String,
    token: String,
}

fn parse_args() -> Result<Args, String> {
    let (mut jwks_url, mut issuer, mut audience, mut token) = (None, None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let slot = match arg.as_str() {
            "--jwks-url" => &mut jwks_url,
            "--issuer" => &mut issuer,
            "--audience" => &mut audience,
            a if a.starts_with("--") => return Err(format!("unknown option {a}")),
            _ if token.is_none() => {
                token = Some(arg);
                continue;
            }
            _ => return Err("more than one TOKEN".to_owned()),
        };
        *slot = Some(it.next().ok_or(format!("{arg} needs a value"))?);
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let issuer = issuer
        .or_else(|| env("JWT_ISSUER"))
        .ok_or("--issuer (or JWT_ISSUER) is required: the node's public URL")?;
    let jwks_url = jwks_url
        .or_else(|| env("JWKS_URL"))
        .unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')));
    Ok(Args {
        jwks_url,
        audience: audience
            .or_else(|| env("JWT_AUDIENCE"))
            .unwrap_or_else(|| "keyward".to_owned()),
        token: token
            .or_else(|| env("ACCESS_TOKEN"))
            .ok_or("TOKEN (or ACCESS_TOKEN) is required")?,
        issuer,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("verify_token: {e}");
            eprintln!("usage: verify_token --issuer URL [--jwks-url URL] [--audience AUD] TOKEN");
            return ExitCode::from(2);
        }
    };
    let verified = match Verifier::new(args.jwks_url, &args.issuer, &args.audience) {
        Ok(mut v) => v.verify(&args.token).await,
        Err(e) => Err(e),
    };
    match verified {
        Ok(claims) => {
            println!("{}", claims.sub);
            eprintln!(
                "valid: sub={} sid={} email={} email_verified={} roles={:?}",
                claims.sub,
                claims.sid,
                claims.email.as_deref().unwrap_or("-"),
                claims.email_verified,
                claims.roles
            );
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("refused: {reason}");
            ExitCode::FAILURE
        }
    }
}
