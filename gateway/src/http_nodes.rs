//! The routes of `Cybus::Server::Http` and `Cybus::Node::Http` resources, served below `/data`
//! on the gateway's HTTP and HTTPS ports (the admin API checks who may call them). A POST or PUT
//! node publishes the request body on its topic: JSON as `{"timestamp", "value"}`, the other
//! media types Connectware documents as they are. A GET node keeps the last message on its
//! topic and answers it.
//!
//! A path belongs to the first node that claims it; a node of another service that wants the
//! same method and path does not start (its service fails to enable with the reason).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use admin::services::BoxFuture;
use admin_api::data::{DataAnswer, DataNodes, DataRefusal, DataRequest};
use axum::body::Bytes;
use axum::http::Method;
use broker::bus::{Connector, Link};
use broker::{Message, QoS};
use commissioning::model::{HttpNode, HttpNodeMethod, HttpServer, http_node_path};
use tokio::task::JoinHandle;

/// Media types a POST or PUT may carry besides JSON; forwarded unchanged (Connectware's list).
const RAW_TYPES: [&str; 4] = [
    "application/octet-stream",
    "text/plain",
    "text/xml",
    "text/csv",
];

type Key = (String, String);

/// Every HTTP server and node of the running services.
#[derive(Default)]
pub struct HttpNodes {
    servers: Mutex<HashMap<Key, HttpServer>>,
    /// Path, then method.
    routes: RwLock<HashMap<String, HashMap<HttpNodeMethod, Arc<Route>>>>,
}

struct Route {
    /// The node, `(service, resource)`.
    owner: Key,
    topic: String,
    max_body: usize,
    serve: Serve,
}

enum Serve {
    /// POST and PUT: the link the body is published through.
    Publish(Link),
    /// GET: the last message on the topic, kept by `task`.
    Last {
        value: Arc<Mutex<Option<Bytes>>>,
        task: JoinHandle<()>,
    },
}

impl Drop for Route {
    fn drop(&mut self) {
        if let Serve::Last { task, .. } = &self.serve {
            task.abort();
        }
    }
}

impl HttpNodes {
    pub fn add_server(&self, service: &str, resource: &str, server: &HttpServer) {
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((service.into(), resource.into()), server.clone());
    }

    /// Starts serving a node; an error when its server is not running or another node has its
    /// method and path. Returns the path.
    pub async fn add_node(
        &self,
        broker: &Connector,
        service: &str,
        resource: &str,
        node: &HttpNode,
        topic: String,
    ) -> Result<String, String> {
        let server_key = (node.parent.service.clone(), node.parent.resource.clone());
        let server = self
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&server_key)
            .cloned()
            .ok_or_else(|| format!("its server {} is not running", node.parent))?;
        let path = http_node_path(&server.base_path, &node.route);
        let owner: Key = (service.into(), resource.into());
        if let Some(taken) = self.owner_of(&path, node.method)
            && taken != owner
        {
            return Err(format!(
                "{} {path} is already served by {}::{}",
                node.method.as_str(),
                taken.0,
                taken.1
            ));
        }
        let mut link = broker
            .connect(&format!("ironbridge/{service}/{resource}"))
            .await
            .map_err(|e| format!("cannot reach the broker: {e}"))?;
        let serve = match node.method {
            HttpNodeMethod::Post | HttpNodeMethod::Put => Serve::Publish(link),
            HttpNodeMethod::Get => {
                link.subscribe(&topic, QoS::AtLeastOnce)
                    .await
                    .map_err(|e| format!("cannot subscribe to {topic}: {e}"))?;
                let value = Arc::new(Mutex::new(None));
                let task = tokio::spawn(keep_last(link, value.clone()));
                Serve::Last { value, task }
            }
        };
        let route = Arc::new(Route {
            owner,
            topic,
            max_body: server.request_max_body_size,
            serve,
        });
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let methods = routes.entry(path.clone()).or_default();
        // Checked again under the lock: two services enabled at once cannot both win.
        if let Some(existing) = methods.get(&node.method)
            && existing.owner != route.owner
        {
            return Err(format!(
                "{} {path} is already served by {}::{}",
                node.method.as_str(),
                existing.owner.0,
                existing.owner.1
            ));
        }
        methods.insert(node.method, route);
        Ok(path)
    }

    fn owner_of(&self, path: &str, method: HttpNodeMethod) -> Option<Key> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes
            .get(path)
            .and_then(|methods| methods.get(&method))
            .map(|route| route.owner.clone())
    }

    /// Stops serving whatever `(service, resource)` served: a node's route or a server.
    pub fn remove(&self, service: &str, resource: &str) {
        let key: Key = (service.into(), resource.into());
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        for methods in routes.values_mut() {
            methods.retain(|_, route| route.owner != key);
        }
        routes.retain(|_, methods| !methods.is_empty());
    }

    fn route(&self, path: &str, method: &Method) -> Result<Arc<Route>, DataRefusal> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let methods = routes.get(path).ok_or(DataRefusal::NoRoute)?;
        let wanted = match *method {
            Method::POST => Some(HttpNodeMethod::Post),
            Method::PUT => Some(HttpNodeMethod::Put),
            Method::GET | Method::HEAD => Some(HttpNodeMethod::Get),
            _ => None,
        };
        match wanted.and_then(|m| methods.get(&m)) {
            Some(route) => Ok(route.clone()),
            None => {
                let mut allowed: Vec<&'static str> = methods.keys().map(|m| m.as_str()).collect();
                allowed.sort_unstable();
                Err(DataRefusal::MethodNotAllowed(allowed))
            }
        }
    }
}

/// Keeps the last message of the GET node's subscription until the link ends.
async fn keep_last(mut link: Link, value: Arc<Mutex<Option<Bytes>>>) {
    while let Some(delivery) = link.recv().await {
        let payload = Bytes::copy_from_slice(&delivery.message.payload);
        *value.lock().unwrap_or_else(|e| e.into_inner()) = Some(payload);
    }
}

impl DataNodes for HttpNodes {
    fn handle(&self, request: DataRequest) -> BoxFuture<'_, Result<DataAnswer, DataRefusal>> {
        Box::pin(async move {
            let route = self.route(&request.path, &request.method)?;
            match &route.serve {
                Serve::Last { value, .. } => {
                    let last = value.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    Ok(last.map_or(DataAnswer::NoValueYet, DataAnswer::Value))
                }
                Serve::Publish(link) => {
                    if request.body.len() > route.max_body {
                        return Err(DataRefusal::TooLarge(route.max_body));
                    }
                    let payload = payload(request.content_type.as_deref(), &request.body)?;
                    link.publish(Message::new(
                        route.topic.clone(),
                        payload,
                        QoS::AtLeastOnce,
                        false,
                    ))
                    .await
                    .map_err(|e| DataRefusal::Unavailable(format!("the broker: {e}")))?;
                    Ok(DataAnswer::Published)
                }
            }
        })
    }
}

/// What a POST or PUT publishes: JSON wrapped as `{"timestamp", "value"}`, the raw media types
/// as they came.
fn payload(content_type: Option<&str>, body: &[u8]) -> Result<Vec<u8>, DataRefusal> {
    match content_type {
        Some("application/json") => {
            let value: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| DataRefusal::BadJson(format!("the body is not JSON: {e}")))?;
            Ok(protocol_mapper::envelope::data(
                value,
                protocol_mapper::envelope::now_millis(),
            ))
        }
        Some(kind) if RAW_TYPES.contains(&kind) => Ok(body.to_vec()),
        other => Err(DataRefusal::UnsupportedType(format!(
            "Content-Type {} is not taken; send application/json (published as {{\"timestamp\", \"value\"}}) or one of {} (published as it is)",
            other.map_or("(none)".to_string(), |t| format!("`{t}`")),
            RAW_TYPES.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_wrapped_and_raw_types_pass_unchanged() {
        let wrapped = payload(Some("application/json"), br#"{"t": 21}"#).unwrap_or_default();
        let wrapped: serde_json::Value = serde_json::from_slice(&wrapped).unwrap_or_default();
        assert_eq!(wrapped["value"], serde_json::json!({"t": 21}));
        assert!(wrapped["timestamp"].as_i64().is_some_and(|t| t > 0));
        assert_eq!(
            payload(Some("text/csv"), b"a,b").ok(),
            Some(b"a,b".to_vec())
        );
        assert!(matches!(
            payload(Some("application/json"), b"{nope"),
            Err(DataRefusal::BadJson(_))
        ));
        assert!(matches!(
            payload(None, b"x"),
            Err(DataRefusal::UnsupportedType(_))
        ));
    }
}
