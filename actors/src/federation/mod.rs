//! The federation context: social login through OpenID Connect providers (`oidc`, and the
//! `google` preset) and plain OAuth 2 providers (`github`, `vk` for VK ID, `yandex` for Yandex
//! ID, and the generic `oauth2`), with the web flow's state and PKCE S256 (and the nonce for
//! OpenID), and a one-time code for the app so tokens never travel in a URL.
//!
//! Owns: providers (discovery cached per node), pending flows, identities and the linking
//! rule. Refuses: linking an identity to an existing account silently (an account with the
//! identity's email answers `account_exists`), and opening sessions itself (the sessions
//! context does).

mod avatar;
mod flow;
pub mod identities;
mod kinds;
mod link;
mod oidc;
mod plain;

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use keyward_config::Settings;
use keyward_storage::Store;
use openidconnect::core::CoreProviderMetadata;
use openidconnect::IssuerUrl;
use secrecy::{ExposeSecret, SecretString};

use crate::edge::Restart;
use crate::hasher::HasherPool;
use crate::metrics::Metrics;
use crate::outbox::OutboxWriter;
use crate::sessions::SessionsHandle;
use crate::{Clock, StartError};

/// How long discovery (and the provider's keys) are trusted before being fetched again.
const DISCOVERY_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// One configured provider.
pub struct Provider {
    pub name: String,
    pub client_id: String,
    /// Empty for a `vk` provider configured without one (VK ID's code exchange takes none).
    pub client_secret: SecretString,
    pub scopes: Vec<String>,
    /// OpenID kinds: the product's native apps' client ids, accepted as a native ID token's
    /// audience beside `client_id`.
    pub native_client_ids: Vec<String>,
    kind: Kind,
    metadata: tokio::sync::Mutex<Option<(std::time::Instant, CoreProviderMetadata)>>,
}

/// How a provider is spoken to; `kinds.rs` dispatches on it.
enum Kind {
    /// `oidc`, `google`: endpoints and keys from the issuer's discovery, the identity from the
    /// ID token.
    OpenId(IssuerUrl),
    /// `github`, `vk`, `yandex`, `oauth2`: endpoints from the settings or the preset, the
    /// identity from the userinfo endpoint.
    Plain(Box<plain::Plain>),
}

impl Provider {
    /// The provider's discovery document (with its keys), fetched at most every 10 minutes.
    pub(crate) async fn metadata(
        &self,
        http: &openidconnect::reqwest::Client,
    ) -> Result<CoreProviderMetadata, String> {
        let Kind::OpenId(issuer) = &self.kind else {
            return Err(format!("{} is not an OpenID provider", self.name));
        };
        let mut cached = self.metadata.lock().await;
        if let Some((at, m)) = cached.as_ref() {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(m.clone());
            }
        }
        let m = CoreProviderMetadata::discover_async(issuer.clone(), http)
            .await
            .map_err(|e| crate::error::chain(&e))?;
        *cached = Some((std::time::Instant::now(), m.clone()));
        Ok(m)
    }

    /// Forgets the cached discovery (the provider may have rotated its keys).
    pub(crate) async fn forget_metadata(&self) {
        *self.metadata.lock().await = None;
    }
}

/// What the federation context works with.
pub struct FederationDeps {
    pub store: Store,
    pub clock: Clock,
    pub outbox: OutboxWriter,
    pub sessions: SessionsHandle,
    pub hasher: HasherPool,
    /// Seals PKCE verifiers at rest (derived from the master key).
    pub secret_key: [u8; 32],
    pub providers: BTreeMap<String, Arc<Provider>>,
    /// The apps' redirect URIs (exact).
    pub allowlist: Vec<url::Url>,
    /// `{public_url}/v1/auth/oauth/{provider}/callback` is the redirect URI at providers.
    pub public_url: String,
    /// Redirects are not followed (SSRF).
    pub http: openidconnect::reqwest::Client,
    pub default_roles: Vec<String>,
    pub index: crate::profiles::ProfileIndex,
    /// Erasure (of an unproved registration) and the avatar pipeline (a provider's picture).
    pub profiles: Arc<crate::profiles::ProfilesDeps>,
    /// Wrong link proofs count against the account's login throttle.
    pub throttle: crate::accounts::ThrottlePolicy,
    pub metrics: Metrics,
}

/// The providers of `settings`, ready to use; the settings were validated at load.
pub fn providers(settings: &Settings) -> Result<BTreeMap<String, Arc<Provider>>, StartError> {
    let mut out = BTreeMap::new();
    for (name, p) in &settings.oauth.providers {
        let key = |f: &str| {
            format!(
                "KEYWARD_OAUTH__PROVIDERS__{}__{}",
                name.to_ascii_uppercase(),
                f.to_ascii_uppercase()
            )
        };
        let kind = match p.kind.as_str() {
            "oidc" | "google" => {
                let issuer = match (p.kind.as_str(), p.issuer.as_deref()) {
                    (_, Some(i)) => i.to_owned(),
                    ("google", None) => "https://accounts.google.com".to_owned(),
                    (kind, None) => {
                        return Err(StartError::Config(format!(
                            "{}: a provider of kind {kind} needs an issuer",
                            key("issuer")
                        )))
                    }
                };
                Kind::OpenId(
                    IssuerUrl::new(issuer)
                        .map_err(|e| StartError::Config(format!("{}: {e}", key("issuer"))))?,
                )
            }
            _ => Kind::Plain(Box::new(plain::Plain::new(p).map_err(|(field, e)| {
                StartError::Config(format!("{}: {e}", key(field)))
            })?)),
        };
        let secret =
            if p.kind == "vk" && p.client_secret.is_none() && p.client_secret_file.is_none() {
                SecretString::from(String::new())
            } else {
                p.secret(name)
                    .map_err(|e| StartError::Config(e.to_string()))?
            };
        let scopes = p
            .scopes
            .as_deref()
            .unwrap_or(match &kind {
                Kind::OpenId(_) => "openid email profile",
                Kind::Plain(k) => k.default_scopes(),
            })
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        out.insert(
            name.clone(),
            Arc::new(Provider {
                name: name.clone(),
                client_id: p.client_id.clone().unwrap_or_default(),
                client_secret: SecretString::from(secret.expose_secret().to_owned()),
                scopes,
                native_client_ids: p
                    .native_client_ids
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .collect(),
                kind,
                metadata: tokio::sync::Mutex::new(None),
            }),
        );
    }
    Ok(out)
}

/// The HTTP client for providers: no redirects, short timeouts.
pub fn http_client() -> Result<openidconnect::reqwest::Client, StartError> {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| StartError::Config(format!("the HTTP client for providers: {e}")))
}

pub struct Federation {
    pub(crate) deps: Arc<FederationDeps>,
}

impl Federation {
    pub fn new(deps: Arc<FederationDeps>) -> Self {
        Self { deps }
    }
}

impl Actor for Federation {
    type Context = Context<Self>;
}

impl Supervised for Federation {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.actor_restarts.inc();
        tracing::warn!("federation actor restarting");
    }
}

impl Handler<Restart> for Federation {
    type Result = ();
    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
