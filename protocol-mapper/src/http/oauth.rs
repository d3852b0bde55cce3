//! OAuth 2.0 client credentials (RFC 6749 section 4.4): the connection asks the token endpoint
//! for a bearer token with its client id and secret, sends it with every request, and asks
//! again before it expires or when the server answers 401.

use std::time::{Duration, Instant};

use commissioning::model::OAuthClientCredentials;
use reqwest::{Client, header};
use serde::Deserialize;

/// Without `expires_in` a token is used for an hour (or until a 401).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

pub(super) struct Token {
    pub value: String,
    /// A tenth of the lifetime before it ends, so a request never carries an expired token.
    pub renew_at: Instant,
}

impl Token {
    pub fn is_due(&self) -> bool {
        Instant::now() >= self.renew_at
    }

    /// The server refused it: ask for a new one before the next request.
    pub fn expire(&mut self) {
        self.renew_at = Instant::now();
    }
}

#[derive(Deserialize)]
struct Answer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

pub(super) async fn fetch(
    client: &Client,
    oauth: &OAuthClientCredentials,
    timeout: Duration,
) -> Result<Token, String> {
    let form = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", &oauth.grant_type)
            .append_pair("client_id", &oauth.client_id)
            .append_pair("client_secret", &oauth.client_secret);
        if let Some(audience) = &oauth.audience {
            form.append_pair("audience", audience);
        }
        form.finish()
    };
    let answer = client
        .post(&oauth.auth_url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(form)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("token endpoint {}: {}", oauth.auth_url, super::chain(&e)))?;
    let status = answer.status();
    let body = answer
        .bytes()
        .await
        .map_err(|e| format!("token endpoint {}: {}", oauth.auth_url, super::chain(&e)))?;
    if !status.is_success() {
        let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        return Err(format!(
            "token endpoint {} refused the client credentials: HTTP {status}: {text}",
            oauth.auth_url
        ));
    }
    let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "token endpoint {} answered without an access_token: {e}",
            oauth.auth_url
        )
    })?;
    let lifetime = answer
        .expires_in
        .map_or(DEFAULT_LIFETIME, Duration::from_secs);
    Ok(Token {
        value: answer.access_token,
        renew_at: Instant::now() + lifetime.mul_f64(0.9),
    })
}
