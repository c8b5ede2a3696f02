//! The freelance marketplace's Orders service: a product service that lets Keyward be its Auth,
//! User, Roles and Notification services (docs/products/marketplace.md).
//!
//! ```sh
//! MARKETPLACE_CLIENT_SECRET=… cargo run --example marketplace_orders -- \
//!     --keyward-url http://127.0.0.1:8080 --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f \
//!     --client-id kwc_… [--issuer URL] [--listen 127.0.0.1:8083]
//! ```
//!
//! What it does with Keyward:
//! - verifies access tokens offline through Keyward's JWKS (jsonwebtoken, as
//!   examples/rust/verify_token.rs) and checks roles from the token: `customer` creates orders
//!   and accepts responses, `freelancer` responds to orders, `support` blocks accounts. When a
//!   token says `roles_truncated`, it asks the check API (client credentials) instead;
//! - tells the other party in the app (`POST /v1/notifications`, category `orders`, channel
//!   in_app): the customer of a new response, the freelancer of an accepted one;
//! - lets a support agent block an abusive account through Keyward's management API
//!   (`POST /v1/admin/users/{id}/block` with the agent's own token: Keyward checks
//!   `users:block` and writes the agent into the audit log);
//! - consumes `user.blocked` and `user.unblocked` from `keyward.events` (durable queue
//!   `marketplace.orders.accounts`) and refuses a blocked user's tokens at once, although they
//!   would verify offline until they expire.
//!
//! What it keeps to itself: orders and responses (in memory here; a real service keeps them in
//! its own database, and the blocked set beside them for one access-token lifetime).
//!
//! HTTP API (JSON; a bearer access token from Keyward on every route but /health):
//! ```text
//! POST /orders                                {title, budget}     customer
//! GET  /orders/{id}                                               the customer or a freelancer
//! POST /orders/{id}/responses                 {price, message}    freelancer (not on own orders)
//! POST /orders/{id}/responses/{rid}/accept                        the order's customer
//! POST /support/users/{id}/block              {reason}            support (users:block)
//! ```
//!
//! The client secret comes from MARKETPLACE_CLIENT_SECRET, never from the command line. Prints
//! `marketplace orders listening on http://HOST:PORT` once it serves and consumes.
//!
//! This workspace builds reqwest without TLS, so this example talks to `http://` Keyward URLs
//! only; in your service enable one of reqwest's TLS features (e.g. `rustls-tls`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use futures::StreamExt;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

const EVENTS_EXCHANGE: &str = "keyward.events";
const ACCOUNTS_QUEUE: &str = "marketplace.orders.accounts";

// --- Errors ------------------------------------------------------------------------------------

/// A refusal, answered as a problem body.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

fn refuse(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        detail: detail.into(),
    }
}

fn unavailable(what: impl std::fmt::Display) -> ApiError {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "keyward_unavailable",
        what.to_string(),
    )
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .content_type("application/problem+json")
            .json(json!({"status": self.status.as_u16(), "code": self.code, "detail": self.detail}))
    }
}

// --- Keyward: offline verification, client credentials, the APIs it calls ------------------------

/// The claims this service uses; iss, aud, exp and nbf are checked by `Validation`.
#[derive(Debug, Clone, Deserialize)]
struct Claims {
    sub: String,
    #[allow(dead_code)] // required: a token without a session is not a user's access token
    sid: String,
    email: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    roles_truncated: bool,
}

/// A cached JWKS, refetched when old or when a token names an unknown kid (at most once per
/// 30 s), as in examples/rust/verify_token.rs.
struct Jwks {
    url: String,
    keys: JwkSet,
    fetched_at: Option<Instant>,
}

struct ServiceToken {
    token: String,
    renew_at: Instant,
}

struct Keyward {
    base: String,
    http: reqwest::Client,
    client_id: String,
    client_secret: String,
    validation: Validation,
    jwks: tokio::sync::Mutex<Jwks>,
    service_token: tokio::sync::Mutex<Option<ServiceToken>>,
}

impl Keyward {
    fn new(
        base: &str,
        issuer: &str,
        client_id: String,
        client_secret: String,
    ) -> Result<Keyward, String> {
        let base = base.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        // Only EdDSA: the algorithm is never the token's choice.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&["keyward"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Ok(Keyward {
            jwks: tokio::sync::Mutex::new(Jwks {
                url: format!("{base}/.well-known/jwks.json"),
                keys: JwkSet { keys: Vec::new() },
                fetched_at: None,
            }),
            base,
            http,
            client_id,
            client_secret,
            validation,
            service_token: tokio::sync::Mutex::new(None),
        })
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        let mut jwks = self.jwks.lock().await;
        let stale = match jwks.fetched_at.map(|t| t.elapsed()) {
            None => true,
            Some(age) if age > Duration::from_secs(600) => true,
            Some(age) => jwks.keys.find(kid).is_none() && age > Duration::from_secs(30),
        };
        if stale {
            let reply = self
                .http
                .get(&jwks.url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| unavailable(format!("JWKS: {e}")))?;
            jwks.keys = reply
                .json()
                .await
                .map_err(|e| unavailable(format!("JWKS: {e}")))?;
            jwks.fetched_at = Some(Instant::now());
        }
        let jwk = jwks.keys.find(kid).ok_or_else(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the token's key is not Keyward's",
            )
        })?;
        DecodingKey::from_jwk(jwk).map_err(|e| unavailable(format!("JWKS key: {e}")))
    }

    /// The bearer token's claims, verified offline.
    async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let invalid = |why: String| refuse(StatusCode::UNAUTHORIZED, "invalid_token", why);
        let header = decode_header(token).map_err(|e| invalid(format!("malformed token: {e}")))?;
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some("at+jwt") {
            return Err(invalid("not a Keyward access token".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("the token has no kid".into()))?;
        let key = self.key(&kid).await?;
        decode::<Claims>(token, &key, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| invalid(e.to_string()))
    }

    /// The service's own token (client_credentials), renewed a minute before it ends.
    async fn service_token(&self) -> Result<String, ApiError> {
        let mut slot = self.service_token.lock().await;
        if let Some(t) = slot.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(t.token.clone());
        }
        #[derive(Deserialize)]
        struct Reply {
            access_token: String,
            expires_in: u64,
        }
        let reply: Reply = self
            .http
            .post(format!("{}/v1/oauth/token", self.base))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| unavailable(format!("the token endpoint: {e}")))?
            .json()
            .await
            .map_err(|e| unavailable(format!("the token endpoint: {e}")))?;
        let token = reply.access_token.clone();
        *slot = Some(ServiceToken {
            token: reply.access_token,
            renew_at: Instant::now() + Duration::from_secs(reply.expires_in.saturating_sub(60)),
        });
        Ok(token)
    }

    /// Whether the user holds the permission now (the check API, live grants).
    async fn allowed(&self, user_id: &str, permission: &str) -> Result<bool, ApiError> {
        let token = self.service_token().await?;
        let reply: Value = self
            .http
            .post(format!("{}/v1/access/check", self.base))
            .bearer_auth(token)
            .json(&json!({"user_id": user_id, "permission": permission}))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| unavailable(format!("the check API: {e}")))?
            .json()
            .await
            .map_err(|e| unavailable(format!("the check API: {e}")))?;
        Ok(reply["allowed"] == Value::Bool(true))
    }

    /// An in-app notification to one user, sent once per idempotency key.
    async fn notify(
        &self,
        to: &str,
        template: &str,
        variables: Value,
        key: String,
    ) -> Result<(), ApiError> {
        let token = self.service_token().await?;
        let r = self
            .http
            .post(format!("{}/v1/notifications", self.base))
            .bearer_auth(token)
            .json(&json!({
                "to": [to], "template": template, "category": "orders",
                "variables": variables, "idempotency_key": key,
            }))
            .send()
            .await
            .map_err(|e| unavailable(format!("the notification API: {e}")))?;
        if r.status() != reqwest::StatusCode::ACCEPTED {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            return Err(refuse(
                StatusCode::BAD_GATEWAY,
                "notification_refused",
                format!("Keyward refused {template}: {status} {body}"),
            ));
        }
        Ok(())
    }

    /// The caller's display name from their profile, read with their own token.
    async fn name_of(&self, token: &str, claims: &Claims) -> String {
        let fallback = || claims.email.clone().unwrap_or_else(|| claims.sub.clone());
        let Ok(r) = self
            .http
            .get(format!("{}/v1/users/me", self.base))
            .bearer_auth(token)
            .send()
            .await
        else {
            return fallback();
        };
        let Ok(me) = r.json::<Value>().await else {
            return fallback();
        };
        ["display_name", "username"]
            .iter()
            .find_map(|k| me[*k].as_str().map(str::to_owned))
            .unwrap_or_else(fallback)
    }

    /// `POST /v1/admin/users/{id}/block` as the support agent: Keyward's answer, as is.
    async fn block(&self, token: &str, user_id: &str, reason: &str) -> Result<u16, ApiError> {
        let r = self
            .http
            .post(format!("{}/v1/admin/users/{user_id}/block", self.base))
            .bearer_auth(token)
            .json(&json!({ "reason": reason }))
            .send()
            .await
            .map_err(|e| unavailable(format!("the management API: {e}")))?;
        Ok(r.status().as_u16())
    }
}

// --- The service's state -------------------------------------------------------------------------

#[derive(Clone, serde::Serialize)]
struct Response {
    id: Uuid,
    freelancer_id: String,
    freelancer_name: String,
    price: u64,
    message: String,
}

#[derive(Clone, serde::Serialize)]
struct Order {
    id: Uuid,
    customer_id: String,
    customer_name: String,
    title: String,
    budget: u64,
    status: &'static str,
    accepted_response: Option<Uuid>,
    responses: Vec<Response>,
}

struct State {
    keyward: Keyward,
    orders: Mutex<HashMap<Uuid, Order>>,
    /// Users blocked within the last access-token lifetime: their tokens still verify offline.
    blocked: Mutex<HashMap<String, Instant>>,
    access_ttl: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    fn set_blocked(&self, user_id: &str, blocked: bool) {
        let mut set = lock(&self.blocked);
        let ttl = self.access_ttl;
        set.retain(|_, at| at.elapsed() < ttl);
        if blocked {
            set.insert(user_id.to_owned(), Instant::now());
        } else {
            set.remove(user_id);
        }
    }

    /// The caller: a valid token of a user not blocked since it was issued.
    async fn caller(&self, req: &HttpRequest) -> Result<(Claims, String), ApiError> {
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                refuse(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "send Authorization: Bearer <access token>",
                )
            })?
            .to_owned();
        let claims = self.keyward.verify(&token).await?;
        if lock(&self.blocked)
            .get(&claims.sub)
            .is_some_and(|at| at.elapsed() < self.access_ttl)
        {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "account_blocked",
                "this account is blocked",
            ));
        }
        Ok((claims, token))
    }

    /// The role from the token; the check API when the token's role list was cut short.
    async fn require(&self, claims: &Claims, role: &str, permission: &str) -> Result<(), ApiError> {
        if claims.roles.iter().any(|r| r == role) {
            return Ok(());
        }
        if claims.roles_truncated && self.keyward.allowed(&claims.sub, permission).await? {
            return Ok(());
        }
        Err(refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the role {role}"),
        ))
    }

    fn order(&self, id: Uuid) -> Result<Order, ApiError> {
        lock(&self.orders)
            .get(&id)
            .cloned()
            .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "order_not_found", "no such order"))
    }
}

type Data = web::Data<State>;

// --- HTTP handlers -------------------------------------------------------------------------------

#[derive(Deserialize)]
struct NewOrder {
    title: String,
    budget: u64,
}

async fn create_order(
    st: Data,
    req: HttpRequest,
    body: web::Json<NewOrder>,
) -> Result<HttpResponse, ApiError> {
    let (claims, token) = st.caller(&req).await?;
    st.require(&claims, "customer", "orders:write").await?;
    let title = body.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_title",
            "title is 1-200 characters",
        ));
    }
    let order = Order {
        id: Uuid::new_v4(),
        customer_name: st.keyward.name_of(&token, &claims).await,
        customer_id: claims.sub,
        title: title.to_owned(),
        budget: body.budget,
        status: "open",
        accepted_response: None,
        responses: Vec::new(),
    };
    lock(&st.orders).insert(order.id, order.clone());
    eprintln!(
        "marketplace: order {} {:?} by {}",
        order.id, order.title, order.customer_id
    );
    Ok(HttpResponse::Created().json(order))
}

async fn get_order(
    st: Data,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (claims, _) = st.caller(&req).await?;
    let order = st.order(*id)?;
    let freelancer = claims.roles.iter().any(|r| r == "freelancer");
    if order.customer_id != claims.sub && !freelancer {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "order_not_found",
            "no such order",
        ));
    }
    Ok(HttpResponse::Ok().json(order))
}

#[derive(Deserialize)]
struct NewResponse {
    price: u64,
    message: String,
}

async fn respond(
    st: Data,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: web::Json<NewResponse>,
) -> Result<HttpResponse, ApiError> {
    let (claims, token) = st.caller(&req).await?;
    st.require(&claims, "freelancer", "bids:write").await?;
    if body.message.chars().count() > 2000 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_message",
            "message is at most 2000 characters",
        ));
    }
    let name = st.keyward.name_of(&token, &claims).await;
    let response = Response {
        id: Uuid::new_v4(),
        freelancer_id: claims.sub.clone(),
        freelancer_name: name.clone(),
        price: body.price,
        message: body.message.clone(),
    };
    let order = {
        let mut orders = lock(&st.orders);
        let order = orders
            .get_mut(&id)
            .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "order_not_found", "no such order"))?;
        if order.customer_id == claims.sub {
            return Err(refuse(
                StatusCode::CONFLICT,
                "own_order",
                "you cannot respond to your own order",
            ));
        }
        if order.status != "open" {
            return Err(refuse(
                StatusCode::CONFLICT,
                "order_closed",
                "the customer chose a freelancer already",
            ));
        }
        order.responses.push(response.clone());
        order.clone()
    };
    // The other party learns of it in the app.
    st.keyward
        .notify(
            &order.customer_id,
            "order_response",
            json!({
                "freelancer_name": name, "order_title": order.title,
                "price": response.price.to_string(), "order_id": order.id,
            }),
            format!("order-response-{}", response.id),
        )
        .await?;
    eprintln!(
        "marketplace: response {} by {} to order {}",
        response.id, response.freelancer_id, order.id
    );
    Ok(HttpResponse::Created().json(response))
}

async fn accept(
    st: Data,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (claims, token) = st.caller(&req).await?;
    st.require(&claims, "customer", "orders:write").await?;
    let (order_id, response_id) = *path;
    let (order, freelancer) = {
        let mut orders = lock(&st.orders);
        let order = orders
            .get_mut(&order_id)
            .filter(|o| o.customer_id == claims.sub)
            .ok_or_else(|| {
                refuse(
                    StatusCode::NOT_FOUND,
                    "order_not_found",
                    "you have no such order",
                )
            })?;
        let freelancer = order
            .responses
            .iter()
            .find(|r| r.id == response_id)
            .map(|r| r.freelancer_id.clone())
            .ok_or_else(|| {
                refuse(
                    StatusCode::NOT_FOUND,
                    "response_not_found",
                    "no such response",
                )
            })?;
        if order.status != "open" {
            return Err(refuse(
                StatusCode::CONFLICT,
                "order_closed",
                "you chose a freelancer already",
            ));
        }
        order.status = "assigned";
        order.accepted_response = Some(response_id);
        (order.clone(), freelancer)
    };
    let customer_name = st.keyward.name_of(&token, &claims).await;
    st.keyward
        .notify(
            &freelancer,
            "response_accepted",
            json!({"customer_name": customer_name, "order_title": order.title, "order_id": order.id}),
            format!("order-accepted-{response_id}"),
        )
        .await?;
    eprintln!("marketplace: order {order_id} assigned to {freelancer}");
    Ok(HttpResponse::Ok().json(order))
}

#[derive(Deserialize)]
struct BlockBody {
    reason: String,
}

async fn block(
    st: Data,
    req: HttpRequest,
    user_id: web::Path<Uuid>,
    body: web::Json<BlockBody>,
) -> Result<HttpResponse, ApiError> {
    let (claims, token) = st.caller(&req).await?;
    st.require(&claims, "support", "users:block").await?;
    // Keyward decides (users:block) and records the agent as the actor.
    let status = st
        .keyward
        .block(&token, &user_id.to_string(), &body.reason)
        .await?;
    if status != 204 {
        return Err(refuse(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            "block_refused",
            format!("Keyward answered {status}"),
        ));
    }
    // Do not wait for the event: this node knows already.
    st.set_blocked(&user_id.to_string(), true);
    eprintln!(
        "marketplace: {} blocked {} ({})",
        claims.sub, user_id, body.reason
    );
    Ok(HttpResponse::NoContent().finish())
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

// --- user.blocked / user.unblocked from keyward.events ------------------------------------------

/// Binds the durable queue and applies each event; returns when the connection fails.
async fn consume_accounts(
    st: &State,
    amqp_url: &str,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), lapin::Error> {
    let conn = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(
        EVENTS_EXCHANGE.into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    // Durable and named: a block published while this service restarts waits for it.
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let queue = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(ACCOUNTS_QUEUE.into(), queue, args).await?;
    for key in ["user.blocked", "user.unblocked"] {
        ch.queue_bind(
            ACCOUNTS_QUEUE.into(),
            EVENTS_EXCHANGE.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    ch.basic_qos(16, BasicQosOptions::default()).await?;
    let mut deliveries = ch
        .basic_consume(
            ACCOUNTS_QUEUE.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    eprintln!("marketplace: consuming {ACCOUNTS_QUEUE} (user.blocked, user.unblocked)");
    if let Some(tx) = ready.take() {
        let _ = tx.send(());
    }
    while let Some(delivery) = deliveries.next().await {
        let delivery = delivery?;
        let envelope: Option<Value> = serde_json::from_slice(&delivery.data).ok();
        let kind = envelope.as_ref().and_then(|e| e["type"].as_str());
        let user = envelope
            .as_ref()
            .and_then(|e| e["data"]["user_id"].as_str());
        match (kind, user) {
            (Some(kind @ ("user.blocked" | "user.unblocked")), Some(user)) => {
                // Idempotent: a redelivery sets the same state again.
                st.set_blocked(user, kind == "user.blocked");
                eprintln!("marketplace: {kind} {user}");
                delivery.ack(BasicAckOptions::default()).await?;
            }
            _ => {
                eprintln!("marketplace: not an event I can read, rejected");
                delivery.reject(BasicRejectOptions::default()).await?;
            }
        }
    }
    Ok(())
}

// --- Start ---------------------------------------------------------------------------------------

struct Args {
    keyward_url: String,
    issuer: Option<String>,
    amqp_url: String,
    client_id: String,
    listen: String,
    access_ttl: Duration,
}

fn parse_args() -> Result<Args, String> {
    let (mut keyward_url, mut issuer, mut amqp_url, mut client_id) = (None, None, None, None);
    let mut listen = "127.0.0.1:8083".to_owned();
    let mut access_ttl = Duration::from_secs(900);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--keyward-url" => keyward_url = Some(value),
            "--issuer" => issuer = Some(value),
            "--amqp-url" => amqp_url = Some(value),
            "--client-id" => client_id = Some(value),
            "--listen" => listen = value,
            "--access-ttl-secs" => {
                access_ttl = Duration::from_secs(
                    value
                        .parse()
                        .map_err(|_| format!("--access-ttl-secs: {value:?} is not a number"))?,
                )
            }
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(Args {
        keyward_url: keyward_url.ok_or("--keyward-url is required")?,
        issuer,
        amqp_url: amqp_url.ok_or("--amqp-url is required")?,
        client_id: client_id.ok_or("--client-id is required (keyward admin create-client)")?,
        listen,
        access_ttl,
    })
}

async fn run(args: Args, secret: String) -> Result<(), String> {
    let issuer = args
        .issuer
        .clone()
        .unwrap_or_else(|| args.keyward_url.trim_end_matches('/').to_owned());
    let keyward = Keyward::new(&args.keyward_url, &issuer, args.client_id, secret)?;
    // Fail at start, not at the first notification, if the credentials are wrong.
    keyward
        .service_token()
        .await
        .map_err(|e| format!("client credentials: {e}"))?;
    let state = web::Data::new(State {
        keyward,
        orders: Mutex::new(HashMap::new()),
        blocked: Mutex::new(HashMap::new()),
        access_ttl: args.access_ttl,
    });

    let (tx, ready) = tokio::sync::oneshot::channel();
    let st = Arc::clone(&state.clone().into_inner());
    let amqp_url = args.amqp_url.clone();
    actix_web::rt::spawn(async move {
        let mut ready = Some(tx);
        let mut delay = Duration::from_secs(1);
        loop {
            match consume_accounts(&st, &amqp_url, &mut ready).await {
                Ok(()) => eprintln!("marketplace: the broker closed the consumer; reconnecting"),
                Err(e) => eprintln!("marketplace: RabbitMQ: {e}; reconnecting in {delay:?}"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .map_err(|_| "could not bind the accounts queue within 30 s".to_owned())?
        .map_err(|_| "the consumer stopped".to_owned())?;

    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(64 * 1024)
                    .error_handler(|e, _| {
                        refuse(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()).into()
                    }),
            )
            .route("/health", web::get().to(health))
            .route("/orders", web::post().to(create_order))
            .route("/orders/{id}", web::get().to(get_order))
            .route("/orders/{id}/responses", web::post().to(respond))
            .route(
                "/orders/{id}/responses/{rid}/accept",
                web::post().to(accept),
            )
            .route("/support/users/{id}/block", web::post().to(block))
    })
    .workers(2)
    .bind(&args.listen)
    .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    for addr in server.addrs() {
        println!("marketplace orders listening on http://{addr}");
    }
    server.run().await.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("marketplace_orders: {e}");
            eprintln!("usage: marketplace_orders --keyward-url URL --amqp-url URL --client-id ID [--issuer URL] [--listen HOST:PORT] [--access-ttl-secs N]");
            return ExitCode::from(2);
        }
    };
    let Some(secret) = std::env::var("MARKETPLACE_CLIENT_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        eprintln!(
            "marketplace_orders: set MARKETPLACE_CLIENT_SECRET (keyward admin create-client)"
        );
        return ExitCode::from(2);
    };
    match actix_web::rt::System::new().block_on(run(args, secret)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("marketplace_orders: {e}");
            ExitCode::FAILURE
        }
    }
}
