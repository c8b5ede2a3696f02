//! SMS texts through the provider `KEYWARD_SMS__PROVIDER` names: `log` (a JSON file per text
//! under `{data_dir}/sms/`, the embedded default), `webhook` (POST `{to, text}` signed with
//! HMAC-SHA256) or `twilio` (Twilio's Messages API).
//!
//! The webhook's `X-Keyward-Signature` is `t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">`: the receiver recomputes it with the shared secret and refuses an old `t`,
//! so a captured request cannot be replayed later. `Idempotency-Key` carries the job's id, the
//! same on every retry, so a receiver can drop a repeat.

use std::path::PathBuf;

use keyward_config::SmsProvider;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::StartError;

/// How many codes by SMS a sender may cost in an hour: per account, per client IP and per
/// phone number. Every code sent by SMS (phone verification, a second factor) takes a place
/// in each, so a pumping run is bounded by the number of addresses it sends from.
#[derive(Clone, Debug)]
pub struct SmsBudget {
    pub per_account: u64,
    pub per_ip: u64,
    pub per_number: u64,
}

impl SmsBudget {
    pub fn from_settings(s: &keyward_config::SmsSettings) -> Self {
        Self {
            per_account: 5,
            per_ip: u64::from(s.max_per_ip_per_hour),
            per_number: u64::from(s.max_per_number_per_hour),
        }
    }

    /// Spends a place under each of the budgets a text to `phone` for `user` from `ip` takes,
    /// inside `tx`, the transaction that queues the text; or the seconds to wait when any of
    /// them is spent (then `tx` is to be dropped).
    pub async fn spend(
        &self,
        tx: &keyward_storage::Tx,
        user: keyward_messages::UserId,
        ip: Option<std::net::IpAddr>,
        phone: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Result<(), u64>, keyward_storage::StorageError> {
        let mut keys = vec![
            (format!("sms:user:{user}"), self.per_account),
            (format!("sms:number:{phone}"), self.per_number),
        ];
        if let Some(ip) = ip {
            keys.push((format!("sms:ip:{ip}"), self.per_ip));
        }
        let limits: Vec<(&str, u64)> = keys.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        Ok(
            match tx.login_failures().spend_hourly(&limits, now).await? {
                Some(wait) => Err(wait),
                None => Ok(()),
            },
        )
    }
}

/// What the provider answered.
#[derive(Debug)]
pub enum Texted {
    /// Taken; the provider's answer (its message id where it gives one).
    Sent(String),
    /// Refused for good (a 4xx other than 408 and 429).
    Refused(String),
    /// Worth a retry (408, 429, 5xx, no answer).
    Retry(String),
}

/// Where texts go.
pub enum SmsSender {
    Log(PathBuf),
    Webhook {
        url: String,
        secret: SecretString,
        http: reqwest::Client,
    },
    Twilio {
        /// `{api}/2010-04-01/Accounts/{sid}/Messages.json`.
        url: String,
        account_sid: String,
        auth_token: SecretString,
        from: String,
        http: reqwest::Client,
    },
}

impl SmsSender {
    /// The sender for `provider`; the log provider writes under `{data_dir}/sms/`.
    pub fn new(provider: SmsProvider, data_dir: &std::path::Path) -> Result<Self, StartError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| StartError::Config(format!("the SMS provider's HTTP client: {e}")))?;
        Ok(match provider {
            SmsProvider::Log => {
                let dir = data_dir.join("sms");
                std::fs::create_dir_all(&dir).map_err(|source| StartError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
                SmsSender::Log(dir)
            }
            SmsProvider::Webhook { url, secret } => SmsSender::Webhook { url, secret, http },
            SmsProvider::Twilio {
                api_url,
                account_sid,
                auth_token,
                from,
            } => SmsSender::Twilio {
                url: format!("{api_url}/2010-04-01/Accounts/{account_sid}/Messages.json"),
                account_sid,
                auth_token,
                from,
                http,
            },
        })
    }

    /// Sends `text` to `to`; `id` names it (the same on every retry).
    pub async fn send(&self, id: Uuid, to: &str, text: &str) -> Texted {
        match self {
            SmsSender::Log(dir) => write_log(dir, id, to, text).await,
            SmsSender::Webhook { url, secret, http } => {
                let body = serde_json::json!({"to": to, "text": text}).to_string();
                let t = chrono::Utc::now().timestamp();
                let request = http
                    .post(url)
                    .header("content-type", "application/json")
                    .header("idempotency-key", id.to_string())
                    .header("x-keyward-signature", signature(secret, t, &body))
                    .body(body);
                answer(request.send().await, |_| None).await
            }
            SmsSender::Twilio {
                url,
                account_sid,
                auth_token,
                from,
                http,
            } => {
                let sender = if from.starts_with("MG") {
                    "MessagingServiceSid"
                } else {
                    "From"
                };
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("To", to)
                    .append_pair(sender, from)
                    .append_pair("Body", text)
                    .finish();
                let request = http
                    .post(url)
                    .basic_auth(account_sid, Some(auth_token.expose_secret()))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("i-twilio-idempotency-token", id.to_string())
                    .body(form);
                answer(request.send().await, twilio_answer).await
            }
        }
    }
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &SecretString, t: i64, body: &str) -> String {
    let mac = crate::tokens::hmac_hex(
        secret.expose_secret().as_bytes(),
        &[format!("{t}.").as_bytes(), body.as_bytes()],
    );
    format!("t={t},v1={mac}")
}

/// Twilio's `{sid, status}` on success, `{code, message}` on a refusal.
fn twilio_answer(body: &serde_json::Value) -> Option<String> {
    if let Some(sid) = body["sid"].as_str() {
        return Some(format!("{sid} {}", body["status"].as_str().unwrap_or("")));
    }
    body["message"]
        .as_str()
        .map(|m| format!("{} {m}", body["code"]).trim().to_owned())
}

async fn answer(
    sent: Result<reqwest::Response, reqwest::Error>,
    summary: fn(&serde_json::Value) -> Option<String>,
) -> Texted {
    let r = match sent {
        Ok(r) => r,
        Err(e) => return Texted::Retry(format!("the SMS provider did not answer: {e}")),
    };
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    let said = serde_json::from_str(&body)
        .ok()
        .and_then(|v| summary(&v))
        .unwrap_or_else(|| body.chars().take(200).collect());
    let answer = format!("{status} {said}").trim().to_owned();
    match status.as_u16() {
        200..=299 => Texted::Sent(answer),
        408 | 429 | 500..=599 => Texted::Retry(answer),
        _ => Texted::Refused(answer),
    }
}

async fn write_log(dir: &std::path::Path, id: Uuid, to: &str, text: &str) -> Texted {
    let line = serde_json::json!({
        "id": id,
        "to": to,
        "text": text,
        "at": chrono::Utc::now(),
    });
    let path = dir.join(format!("{id}.json"));
    match tokio::fs::write(&path, format!("{line}\n")).await {
        Ok(()) => Texted::Sent(format!("written to {}", path.display())),
        Err(e) => Texted::Retry(format!("writing {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_time_and_body() {
        // Computed apart, with Python's hmac: hmac.new(b"0123456789abcdef",
        // b'1700000000.{"to":"+1","text":"hi"}', hashlib.sha256).hexdigest()
        let secret = SecretString::from("0123456789abcdef");
        let sig = signature(&secret, 1_700_000_000, r#"{"to":"+1","text":"hi"}"#);
        assert_eq!(
            sig,
            "t=1700000000,v1=3785abe2addcf51963f93ea34031f5d11040ede443ba914181c1ddb684cc5b02"
        );
    }
}
