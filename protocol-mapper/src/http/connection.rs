//! The HTTP/REST driver: polls its subscribe endpoints with GET, fetches read endpoints on
//! `/req` and sends write endpoints' messages on `/set`. The session is "the server answers":
//! a probe (`probeMethod` on `probePath`) opens it and runs again whenever `probeInterval` ms
//! pass without an answer to a poll. A server
//! that cannot be reached loses the session and the shared state machine reconnects with
//! back-off; an answer that is not 2xx, or one that comes too late, is an error for that
//! endpoint only, with the status.

use std::time::{Duration, Instant};

use broker::bus::Link;
use commissioning::model::{
    Address, ConnectionTargetState, HttpAddress, HttpConnection, HttpProbeMethod, HttpScheme,
    HttpWriteMethod, Operation,
};
use futures_util::future::{BoxFuture, join_all};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value as Json, json};

use super::body::{self, MAX_BODY};
use super::oauth::{self, Token};
use crate::backoff::Backoff;
use crate::driver::{
    self, ConnectionHandle, Driver, DriverError, EndpointSpec, PolledEndpoints, Refusal, Reporter,
};
use crate::envelope;

/// Starts an HTTP connection. `link` is the broker connection it publishes and subscribes
/// through.
pub fn start(
    service: &str,
    resource: &str,
    spec: HttpConnection,
    target: ConnectionTargetState,
    link: impl Into<Link>,
) -> ConnectionHandle {
    driver::spawn(HttpDriver::new(spec), service, resource, target, link)
}

pub(crate) struct HttpDriver {
    spec: HttpConnection,
    /// `scheme://host:port` and the connection's `prefix`.
    base: String,
    /// Built in `prepare` from the TLS settings, which are checked once.
    client: Option<Client>,
    endpoints: PolledEndpoints<HttpAddress>,
    next_probe: Instant,
}

/// The session: the server answered the last probe.
pub(crate) struct Session {
    client: Client,
    /// The bearer token of `oauthClientCredentials`, when the connection has them.
    token: Option<Token>,
}

/// What came due.
pub(crate) enum Due {
    Probe,
    Polls,
}

impl HttpDriver {
    pub fn new(spec: HttpConnection) -> HttpDriver {
        let scheme = match spec.scheme {
            HttpScheme::Http => "http",
            HttpScheme::Https => "https",
        };
        let host = if spec.host.contains(':') && !spec.host.starts_with('[') {
            format!("[{}]", spec.host) // an IPv6 address in a URL
        } else {
            spec.host.clone()
        };
        let base = format!(
            "{scheme}://{host}:{}{}",
            spec.port(),
            spec.prefix.trim_end_matches('/')
        );
        HttpDriver {
            base,
            spec,
            client: None,
            endpoints: PolledEndpoints::default(),
            next_probe: Instant::now(),
        }
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.spec.request_timeout.max(1))
    }

    fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.spec.probe_interval.max(1))
    }

    /// A request to `path` below the base with the connection's and the endpoint's headers
    /// and query variables (the endpoint's win).
    fn build_request(
        &self,
        session: &Session,
        method: Method,
        address: &HttpAddress,
    ) -> RequestBuilder {
        let mut headers = self.spec.headers.clone();
        headers.extend(address.headers.clone());
        let mut query = self.spec.query.clone();
        query.extend(address.query.clone());
        let mut url = format!("{}{}", self.base, address.path);
        if !query.is_empty() {
            let encoded = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&query)
                .finish();
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&encoded);
        }
        let mut request = session
            .client
            .request(method, url)
            .timeout(self.request_timeout());
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(auth) = &self.spec.auth {
            request = request.basic_auth(&auth.username, Some(&auth.password));
        }
        if let Some(token) = &session.token {
            request = request.bearer_auth(&token.value);
        }
        request
    }

    /// GET an endpoint's path: its value, or why there is none.
    async fn fetch(&self, session: &Session, address: &HttpAddress) -> Fetched {
        let sent = self
            .build_request(session, Method::GET, address)
            .send()
            .await;
        match sent {
            Err(error) => Fetched::Failed(failure(&error, self.request_timeout())),
            Ok(response) => match read_body(response).await {
                Ok((status, value)) if status.is_success() => Fetched::Value(value),
                Ok((status, value)) => Fetched::Refused(status_refusal(status, &value)),
                Err(error) => Fetched::Failed(failure(&error, self.request_timeout())),
            },
        }
    }
}

/// The outcome of one GET.
enum Fetched {
    Value(Json),
    /// The server answered, but not with 2xx.
    Refused(Refusal),
    Failed(Failure),
}

/// A request that got no answer.
enum Failure {
    /// The server cannot be reached: the session is lost.
    Unreachable(String),
    /// It took too long or broke off: an error for that request only.
    Request(String),
}

fn failure(error: &reqwest::Error, timeout: Duration) -> Failure {
    if error.is_timeout() {
        Failure::Request(format!("no answer within {} ms", timeout.as_millis()))
    } else if error.is_connect() {
        Failure::Unreachable(format!("cannot reach the server: {}", chain(error)))
    } else {
        Failure::Request(chain(error))
    }
}

/// An error with its causes (reqwest's own text is only the outermost, "error sending request").
pub(super) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn status_refusal(status: StatusCode, body: &Json) -> Refusal {
    let mut message = format!("HTTP {status}");
    let excerpt = match body {
        Json::Null => String::new(),
        Json::String(text) => text.chars().take(200).collect(),
        other => other.to_string().chars().take(200).collect(),
    };
    if !excerpt.is_empty() {
        message.push_str(": ");
        message.push_str(&excerpt);
    }
    Refusal::with_code(message, status.as_u16())
}

/// The status and the body as a value: JSON when it parses, else the text. At most
/// [`MAX_BODY`] bytes are read, so a server cannot make the gateway hold more.
async fn read_body(mut response: Response) -> Result<(StatusCode, Json), reqwest::Error> {
    let status = response.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Ok((
                status,
                Json::String(format!(
                    "the answer is larger than {} KiB and was not read",
                    MAX_BODY / 1024
                )),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, body::value(&bytes)))
}

impl Driver for HttpDriver {
    const PROTOCOL: &'static str = "HTTP";
    type Session = Session;
    type Wake = Due;

    fn backoff(&self) -> Backoff {
        Backoff::new(self.spec.connection_strategy.as_ref())
    }

    /// Builds the client: certificates that do not parse cannot be fixed by retrying.
    async fn prepare(&mut self) -> Result<(), DriverError> {
        let tls = crate::tls::client_config(&self.spec).map_err(DriverError::Configuration)?;
        let client = Client::builder()
            .tls_backend_preconfigured(std::sync::Arc::unwrap_or_clone(tls))
            .connect_timeout(self.request_timeout())
            .build()
            .map_err(|e| DriverError::Configuration(format!("HTTP client: {}", chain(&e))))?;
        self.client = Some(client);
        Ok(())
    }

    fn connect(&mut self) -> BoxFuture<'static, Result<Session, DriverError>> {
        let client = self.client.clone();
        let probe = self.probe();
        let oauth = self.spec.oauth_client_credentials.clone();
        let timeout = self.request_timeout();
        Box::pin(async move {
            let client = client.ok_or(DriverError::Stopped)?;
            probe.run(&client).await.map_err(DriverError::Connection)?;
            let token = match &oauth {
                Some(oauth) => Some(
                    oauth::fetch(&client, oauth, timeout)
                        .await
                        .map_err(DriverError::Connection)?,
                ),
                None => None,
            };
            Ok(Session { client, token })
        })
    }

    async fn on_connected(&mut self, _: &mut Session, _: &Reporter) -> Result<(), DriverError> {
        self.next_probe = Instant::now() + self.probe_interval();
        Ok(())
    }

    async fn wake<'a>(&'a mut self, session: Option<&'a mut Session>) -> Due {
        if session.is_none() {
            return std::future::pending().await;
        }
        let next_poll = self.endpoints.next_due();
        match next_poll {
            Some(poll) if poll < self.next_probe => {
                tokio::time::sleep_until(poll.into()).await;
                Due::Polls
            }
            _ => {
                tokio::time::sleep_until(self.next_probe.into()).await;
                Due::Probe
            }
        }
    }

    async fn work(
        &mut self,
        due: Due,
        session: Option<&mut Session>,
        report: &Reporter,
    ) -> Result<(), DriverError> {
        let Some(session) = session else {
            return Ok(());
        };
        match due {
            Due::Probe => {
                self.next_probe = Instant::now() + self.probe_interval();
                self.probe()
                    .run(&session.client)
                    .await
                    .map_err(DriverError::Connection)
            }
            Due::Polls => {
                self.renew_token(session).await?;
                self.poll_due(session, report).await
            }
        }
    }

    async fn add_endpoint(
        &mut self,
        spec: EndpointSpec,
        _: Option<&mut Session>,
        _: &Reporter,
    ) -> Result<(), DriverError> {
        let Address::Http(address) = spec.address.clone() else {
            return Err(DriverError::Endpoint(
                "an HTTP connection only runs HTTP endpoints".into(),
            ));
        };
        let (interval, cron) = (address.interval, address.cron_expression.clone());
        self.endpoints
            .insert(spec, address, interval, cron.as_deref())
    }

    async fn remove_endpoint(&mut self, id: &str, _: Option<&mut Session>) {
        self.endpoints.remove(id);
    }

    async fn request(
        &mut self,
        id: &str,
        value: Json,
        session: &mut Session,
        _: &Reporter,
    ) -> Result<Result<Json, Refusal>, DriverError> {
        let Some(endpoint) = self.endpoints.get(id) else {
            return Ok(Err(Refusal::new("the endpoint has been removed")));
        };
        let address = endpoint.address.clone();
        if endpoint.spec.operation != Operation::Write {
            self.renew_token(session).await?;
            return match self.fetch(session, &address).await {
                Fetched::Value(value) => Ok(Ok(value)),
                Fetched::Refused(refusal) => Ok(Err(refusal)),
                Fetched::Failed(Failure::Request(message)) => Ok(Err(Refusal::new(message))),
                Fetched::Failed(Failure::Unreachable(message)) => {
                    Err(DriverError::Connection(message))
                }
            };
        }
        let method = match address.method.unwrap_or(HttpWriteMethod::Post) {
            HttpWriteMethod::Post => Method::POST,
            HttpWriteMethod::Put => Method::PUT,
            HttpWriteMethod::Patch => Method::PATCH,
        };
        self.renew_token(session).await?;
        let request = self.build_request(session, method, &address);
        let request = match &value {
            // Text goes as it is; anything else as JSON.
            Json::String(text) => request
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(text.clone()),
            other => request.json(other),
        };
        let timeout = self.request_timeout();
        let answer = match request.send().await {
            Ok(response) => read_body(response).await,
            Err(error) => Err(error),
        };
        match answer {
            Ok((status, body)) if status.is_success() => {
                Ok(Ok(json!({"status": status.as_u16(), "body": body})))
            }
            Ok((status, body)) => Ok(Err(status_refusal(status, &body))),
            Err(error) => match failure(&error, timeout) {
                Failure::Unreachable(message) => Err(DriverError::Connection(message)),
                Failure::Request(message) => Ok(Err(Refusal::new(message))),
            },
        }
    }

    async fn close(&mut self, _: Session) {}
}

/// One probe: any answer, whatever its status, means the server is there.
struct Probe {
    url: String,
    method: Method,
    timeout: Duration,
}

impl Probe {
    async fn run(&self, client: &Client) -> Result<(), String> {
        let sent = client
            .request(self.method.clone(), &self.url)
            .timeout(self.timeout)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(error) if error.is_timeout() => Err(format!(
                "{} {} got no answer within {} ms",
                self.method,
                self.url,
                self.timeout.as_millis()
            )),
            Err(error) => Err(format!("{} {}: {}", self.method, self.url, chain(&error))),
        }
    }
}

impl HttpDriver {
    fn probe(&self) -> Probe {
        let timeout = match self.spec.probe_timeout {
            0 => self.request_timeout(),
            ms => Duration::from_millis(ms),
        };
        Probe {
            url: format!("{}{}", self.base, self.spec.probe_path),
            method: match self.spec.probe_method {
                HttpProbeMethod::Get => Method::GET,
                HttpProbeMethod::Head => Method::HEAD,
            },
            timeout,
        }
    }

    /// GETs every subscribe endpoint that is due, all at once, and publishes what each got. A
    /// server that cannot be reached loses the session; anything else is the endpoint's error.
    /// Asks for a new bearer token when the one in hand is about to expire or was refused. A
    /// token endpoint that does not answer loses the session, like the server itself.
    async fn renew_token(&self, session: &mut Session) -> Result<(), DriverError> {
        let (Some(oauth), Some(token)) = (&self.spec.oauth_client_credentials, &session.token)
        else {
            return Ok(());
        };
        if token.is_due() {
            let renewed = oauth::fetch(&session.client, oauth, self.request_timeout())
                .await
                .map_err(DriverError::Connection)?;
            session.token = Some(renewed);
        }
        Ok(())
    }

    async fn poll_due(
        &mut self,
        session: &mut Session,
        report: &Reporter,
    ) -> Result<(), DriverError> {
        let now = Instant::now();
        let due = self.endpoints.due(now);
        let fetches = due.iter().map(|(_, address)| self.fetch(session, address));
        let outcomes = join_all(fetches).await;
        let timestamp = envelope::now_millis();
        let mut lost = None;
        // A refused token is renewed before the next request.
        if outcomes
            .iter()
            .any(|o| matches!(o, Fetched::Refused(r) if r.code == Some(Json::from(401))))
            && let Some(token) = &mut session.token
        {
            token.expire();
        }
        // An answer shows the server is there as well as a probe would.
        if outcomes
            .iter()
            .any(|o| matches!(o, Fetched::Value(_) | Fetched::Refused(_)))
        {
            self.next_probe = Instant::now() + self.probe_interval();
        }
        for ((id, _), outcome) in due.iter().zip(outcomes) {
            let Some(endpoint) = self.endpoints.get(id) else {
                continue;
            };
            match outcome {
                Fetched::Value(value) => {
                    report.publish_data(&endpoint.spec, value, timestamp).await
                }
                Fetched::Refused(refusal) => report.endpoint_failed(id, refusal.message),
                Fetched::Failed(Failure::Request(message)) => report.endpoint_failed(id, message),
                Fetched::Failed(Failure::Unreachable(message)) => lost = Some(message),
            }
        }
        let now = Instant::now();
        self.endpoints.polled_at(&due, now);
        match lost {
            Some(message) => Err(DriverError::Connection(message)),
            None => Ok(()),
        }
    }
}
