//! A whole commissioning file: metadata, parameters, definitions and resources, resolved and
//! typed for one service id and one set of parameter values.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::connectware;
use crate::diagnostic::{Diagnostic, Pos, index, join};
use crate::model::{
    Connection, ConnectionShape, Endpoint, EndpointShape, HTTP_SERVER_MAX_BODY, HttpNode,
    HttpServer, Mapping, OpcuaNode, OpcuaServer, Operation, Qos, RESOURCE_TYPES, ResourceKind,
    ResourceRef, Role, User, http_node_path,
};
use crate::params::{self, ParameterSpec};
use crate::protocols;
use crate::resolve::{OtherServices, Resolved, Scope, position_of};
use crate::rules::check_rules;
use crate::topic_pattern::{NamedFilter, Template};
use crate::typed::typed;
use crate::yaml::{self, Node, Value};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub homepage: Option<String>,
}

/// What the gateway tells a service about itself: the `Cybus::Mqtt*` pseudo parameters and the
/// other installed services.
pub struct Environment<'a> {
    pub mqtt_host: String,
    pub mqtt_port: u16,
    /// Password of the service's broker user; the user name is the service id.
    pub mqtt_password: String,
    /// `None` validates offline: references to other services are accepted unchecked.
    pub other_services: Option<&'a dyn OtherServices>,
}

impl Environment<'_> {
    /// For `ironbridge validate`: default ports, no broker credentials, no other services.
    pub fn offline() -> Environment<'static> {
        Environment {
            mqtt_host: "localhost".into(),
            mqtt_port: 1883,
            mqtt_password: String::new(),
            other_services: None,
        }
    }
}

/// A resolved, typed, valid service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub id: String,
    /// What the file says that has no effect in Ironbridge (see [`crate::connectware`]).
    pub warnings: Vec<Diagnostic>,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub mqtt_root: String,
    pub parameters: BTreeMap<String, Json>,
    /// Parameters that hold secrets (see [`crate::secrets`]).
    pub secret_parameters: BTreeSet<String>,
    pub resources: BTreeMap<String, Resource>,
    /// Resource ids in an order where every resource comes after those it references.
    pub start_order: Vec<String>,
    /// Other services this one references with `!ref service::resource`.
    pub depends_on: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    pub id: String,
    pub kind: ResourceKind,
    /// The resolved properties as JSON: what reconfigure compares to decide what restarts.
    pub properties: Json,
    /// Resources of this service it references.
    pub depends_on: BTreeSet<String>,
}

impl Service {
    /// The protocol-mapper agent a resource runs on: a connection's `agentName`; an endpoint's
    /// connection's, when that connection is in this service (endpoints follow their
    /// connection); a mapping's `agentName`. `None` is the gateway itself.
    pub fn agent_of<'a>(&'a self, resource: &'a Resource) -> Option<&'a str> {
        fn connection_agent(resource: &Resource) -> Option<&str> {
            match &resource.kind {
                ResourceKind::Connection(connection) => connection.agent_name.as_deref(),
                _ => None,
            }
        }
        match &resource.kind {
            ResourceKind::Connection(_) => connection_agent(resource),
            ResourceKind::Endpoint(endpoint) if endpoint.connection.service == self.id => self
                .resources
                .get(&endpoint.connection.resource)
                .and_then(connection_agent),
            ResourceKind::Mapping(mapping) => mapping.agent_name.as_deref(),
            _ => None,
        }
    }

    /// Every agent that runs some resource of this service.
    pub fn agents(&self) -> BTreeSet<String> {
        self.resources
            .values()
            .filter_map(|resource| self.agent_of(resource))
            .map(str::to_string)
            .collect()
    }
}

/// An agent's name is its broker user's name and a topic level of its work
/// (`$ironbridge/agents/<name>/...`): 1-64 letters, digits, `-`, `_` or `.`.
pub fn is_valid_agent_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_agent_name(
    name: &str,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    if !is_valid_agent_name(name) {
        diagnostics.push(Diagnostic::new(
            path,
            position_of(positions, path),
            format!(
                "agent name {name:?}: use 1-64 letters, digits, `-`, `_` or `.`; it is the agent's broker user and a topic level"
            ),
        ));
    }
}

/// The default service id from `metadata.name`, as Connectware documents it
/// (https://docs.cybus.io/documentation/services/serviceid): characters a service id may not
/// contain are removed, the rest lower-cased (`Press_Line 2.1` is `press_line2.1`). Only
/// Connectware 1.0.x also removed `_` and `.`.
pub fn derive_service_id(name: &str) -> String {
    let id: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.'))
        .collect();
    // An id starts with a letter or digit.
    id.trim_start_matches(['_', '.']).to_string()
}

/// Service ids match `[a-zA-Z0-9][a-zA-Z0-9_.]*` (at most 128 characters).
pub fn check_service_id(id: &str) -> Result<(), String> {
    let mut chars = id.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && id.len() <= 128;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "service id {id:?} must start with a letter or digit and contain only letters, digits, `_` and `.` (at most 128 characters)"
        ))
    }
}

/// The id a file would be installed under: the given one, or the one derived from its
/// `metadata.name`, which may use the parameters (`!sub 'Machine ${machineNum}'`).
pub fn service_id_for(
    source: &str,
    given: Option<&str>,
    parameters: &Map<String, Json>,
) -> Result<String, Vec<Diagnostic>> {
    if let Some(id) = given {
        check_service_id(id).map_err(|e| vec![Diagnostic::new("id", None, e)])?;
        return Ok(id.to_string());
    }
    let root = yaml::parse(source)?;
    let missing_name = || {
        vec![Diagnostic::new(
            "metadata.name",
            Some(root.pos),
            "missing: a service needs a name (or an explicit id at install)",
        )]
    };
    let node = root
        .get("metadata")
        .and_then(|m| m.get("name"))
        .ok_or_else(missing_name)?;
    let mut diagnostics = Vec::new();
    let declared = declared_parameters(&root, &mut Vec::new());
    let values = params::resolve(&declared.specs, parameters, &mut diagnostics);
    let mut scratch = Resolved::default();
    let name = Scope {
        service_id: "",
        values: &values.values,
        missing: &values.missing,
        resources: &BTreeSet::new(),
        other_services: None,
    }
    .resolve(node, "metadata.name", &mut scratch, &mut diagnostics);
    let Json::String(name) = name else {
        if diagnostics.is_empty() {
            diagnostics.push(Diagnostic::new(
                "metadata.name",
                Some(node.pos),
                format!("expected text, got {}", params::describe(&name)),
            ));
        }
        return Err(diagnostics);
    };
    let id = derive_service_id(&name);
    check_service_id(&id).map_err(|e| {
        vec![Diagnostic::new(
            "metadata.name",
            Some(node.pos),
            format!("{e}; give the service an id at install"),
        )]
    })?;
    Ok(id)
}

/// Derives the service id (or takes the given one) and loads the file: every problem of both,
/// so a name that cannot become an id hides nothing else. A placeholder id stands in for the
/// checks that need one.
pub fn load_file(
    source: &str,
    given_id: Option<&str>,
    parameters: &Map<String, Json>,
    env: &Environment<'_>,
) -> Result<Service, Vec<Diagnostic>> {
    match service_id_for(source, given_id, parameters) {
        Ok(id) => load(source, &id, parameters, env),
        Err(mut problems) => {
            if let Err(more) = load(source, "service", parameters, env) {
                for diagnostic in more {
                    if !problems.contains(&diagnostic) {
                        problems.push(diagnostic);
                    }
                }
            }
            Err(problems)
        }
    }
}

/// Parses, resolves and validates a commissioning file. Every problem found is reported; a
/// file with warnings alone loads, with them in [`Service::warnings`].
pub fn load(
    source: &str,
    service_id: &str,
    given: &Map<String, Json>,
    env: &Environment<'_>,
) -> Result<Service, Vec<Diagnostic>> {
    let root = yaml::parse(source)?;
    let mut diagnostics = Vec::new();
    let service = load_tree(&root, service_id, given, env, &mut diagnostics);
    match service {
        Some(mut service) if !diagnostics.iter().any(Diagnostic::is_error) => {
            service.warnings = diagnostics;
            Ok(service)
        }
        _ => Err(diagnostics),
    }
}

/// The parameters a file declares, in the order the file lists them, for forms that ask for
/// their values. Parameters whose declaration is broken are left out (validation reports them);
/// a file that is not YAML declares none.
pub fn declared_parameter_specs(source: &str) -> Vec<(String, ParameterSpec)> {
    let Ok(root) = yaml::parse(source) else {
        return Vec::new();
    };
    let mut specs: Vec<_> = declared_parameters(&root, &mut Vec::new())
        .specs
        .into_iter()
        .collect();
    specs.sort_by_key(|(_, (_, pos))| (pos.line, pos.column));
    specs
        .into_iter()
        .map(|(name, (spec, _))| (name, spec))
        .collect()
}

/// The `parameters:` section, typed.
struct Declared {
    specs: BTreeMap<String, (ParameterSpec, Pos)>,
    /// Bytes the parameter specs expanded, counted against the file's budget.
    resolved: Resolved,
}

fn declared_parameters(root: &Node, diagnostics: &mut Vec<Diagnostic>) -> Declared {
    let mut specs = BTreeMap::new();
    let mut resolved = Resolved::default();
    let plain = Scope {
        service_id: "",
        values: &BTreeMap::new(),
        missing: &BTreeSet::new(),
        resources: &BTreeSet::new(),
        other_services: None,
    };
    if let Some(node) = root.get("parameters") {
        for (name, spec_node) in entries(node, "parameters", diagnostics) {
            let path = join("parameters", &name.name);
            let json = plain.resolve(spec_node, &path, &mut resolved, diagnostics);
            if let Some(spec) =
                typed::<ParameterSpec>(json, &path, &resolved.positions, diagnostics)
            {
                specs.insert(name.name.clone(), (spec, spec_node.pos));
            }
        }
    }
    Declared { specs, resolved }
}

fn load_tree(
    root: &Node,
    service_id: &str,
    given: &Map<String, Json>,
    env: &Environment<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Service> {
    let Value::Map(top) = &root.value else {
        diagnostics.push(Diagnostic::new(
            "",
            Some(root.pos),
            format!(
                "a commissioning file is a map with `metadata` and `resources`, got {}",
                root.describe()
            ),
        ));
        return None;
    };
    for (key, _) in top {
        if ![
            "description",
            "metadata",
            "parameters",
            "definitions",
            "resources",
        ]
        .contains(&key.name.as_str())
        {
            diagnostics.push(Diagnostic::new(
                &key.name,
                Some(key.pos),
                "unknown top-level key; allowed: description, metadata, parameters, definitions, resources",
            ));
        }
    }
    if let Err(e) = check_service_id(service_id) {
        diagnostics.push(Diagnostic::new("id", None, e));
    }

    // Parameters first: everything else may refer to them.
    let Declared {
        specs,
        resolved: mut scratch,
    } = declared_parameters(root, diagnostics);
    let params::Values {
        mut values,
        mut missing,
    } = params::resolve(&specs, given, diagnostics);
    let parameters = values.clone();
    let secret_parameters = specs
        .iter()
        .filter(|(name, (spec, _))| crate::secrets::is_secret_parameter(name, spec))
        .map(|(name, _)| name.clone())
        .collect();
    let no_resources = BTreeSet::new();

    // Pseudo parameters, then definitions in file order (each may use the ones before it).
    values.insert("Cybus::ServiceId".into(), Json::String(service_id.into()));
    values.insert(
        "Cybus::MqttHost".into(),
        Json::String(env.mqtt_host.clone()),
    );
    values.insert("Cybus::MqttPort".into(), Json::from(env.mqtt_port));
    values.insert("Cybus::MqttUser".into(), Json::String(service_id.into()));
    values.insert(
        "Cybus::MqttPassword".into(),
        Json::String(env.mqtt_password.clone()),
    );
    values.insert(
        "Cybus::MqttRoot".into(),
        Json::String(format!("services/{service_id}")),
    );
    if let Some(node) = root.get("definitions") {
        for (name, definition) in entries(node, "definitions", diagnostics) {
            let path = join("definitions", &name.name);
            scratch.uses_missing = false;
            let value = Scope {
                service_id,
                values: &values,
                missing: &missing,
                resources: &no_resources,
                other_services: None,
            }
            .resolve(definition, &path, &mut scratch, diagnostics);
            if scratch.uses_missing {
                // Built from a parameter without a value: missing too, and reported there.
                missing.insert(name.name.clone());
                continue;
            }
            if name.name == "CYBUS_MQTT_ROOT" {
                match &value {
                    Json::String(root) => match concrete_topic_root(root) {
                        Ok(root) => {
                            values.insert("Cybus::MqttRoot".into(), Json::String(root.into()));
                        }
                        Err(problem) => {
                            diagnostics.push(Diagnostic::new(&path, Some(definition.pos), problem))
                        }
                    },
                    other => diagnostics.push(Diagnostic::new(
                        &path,
                        Some(definition.pos),
                        format!("expected a topic, got {}", params::describe(other)),
                    )),
                }
            }
            values.insert(name.name.clone(), value);
        }
    }
    let plain = Scope {
        service_id,
        values: &values,
        missing: &missing,
        resources: &no_resources,
        other_services: None,
    };
    let mqtt_root = values
        .get("Cybus::MqttRoot")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();

    let metadata = root.get("metadata").and_then(|node| {
        scratch.uses_missing = false;
        let json = plain.resolve(node, "metadata", &mut scratch, diagnostics);
        if scratch.uses_missing {
            return None;
        }
        let metadata = typed::<Metadata>(json, "metadata", &scratch.positions, diagnostics)?;
        if metadata.name.chars().count() > 80 {
            diagnostics.push(Diagnostic::new(
                "metadata.name",
                position_of(&scratch.positions, "metadata.name"),
                "must be at most 80 characters",
            ));
        }
        Some(metadata)
    });
    if root.get("metadata").is_none() {
        diagnostics.push(Diagnostic::new(
            "metadata",
            Some(root.pos),
            "missing: every commissioning file needs `metadata` with a `name`",
        ));
    }
    let description = root.get("description").and_then(|node| {
        scratch.uses_missing = false;
        match plain.resolve(node, "description", &mut scratch, diagnostics) {
            _ if scratch.uses_missing => None,
            Json::String(s) => Some(s),
            other => {
                diagnostics.push(Diagnostic::new(
                    "description",
                    Some(node.pos),
                    format!("expected text, got {}", params::describe(&other)),
                ));
                None
            }
        }
    });

    // Resources: first their ids and types (so references can be checked), then each one.
    let resource_nodes: Vec<_> = match root.get("resources") {
        Some(node) => entries(node, "resources", diagnostics),
        None => {
            diagnostics.push(Diagnostic::new(
                "resources",
                Some(root.pos),
                "missing: a service needs at least one resource",
            ));
            Vec::new()
        }
    };
    let ids: BTreeSet<String> = resource_nodes.iter().map(|(k, _)| k.name.clone()).collect();
    let mut types = BTreeMap::new();
    for (key, node) in &resource_nodes {
        if let Some(Node {
            value: Value::Str(t),
            ..
        }) = node.get("type")
        {
            types.insert(key.name.clone(), t.clone());
        }
    }
    let scope = Scope {
        service_id,
        values: &values,
        missing: &missing,
        resources: &ids,
        other_services: env.other_services,
    };
    let mut resources = BTreeMap::new();
    let mut depends_on = BTreeSet::new();
    // One expansion budget for the whole file: what definitions used carries over.
    let mut expanded = scratch.expanded;
    let mut limit_reported = scratch.limit_reported;
    for (key, node) in &resource_nodes {
        let path = join("resources", &key.name);
        let mut out = Resolved {
            expanded,
            limit_reported,
            ..Resolved::default()
        };
        let loaded = load_resource(
            &scope,
            &key.name,
            node,
            &path,
            &types,
            &mqtt_root,
            &mut out,
            diagnostics,
        );
        (expanded, limit_reported) = (out.expanded, out.limit_reported);
        if let Some(resource) = loaded {
            depends_on.extend(
                out.service_refs
                    .iter()
                    .filter(|s| *s != service_id)
                    .cloned(),
            );
            resources.insert(key.name.clone(), resource);
        }
    }
    if limit_reported {
        // Whatever failed after the limit failed because of it: report the cause alone.
        diagnostics.retain(|d| d.message.starts_with(crate::resolve::TOO_LARGE));
        return None;
    }
    check_http_routes(service_id, &resources, diagnostics);
    let start_order = start_order(&resources, diagnostics);
    Some(Service {
        id: service_id.to_string(),
        warnings: Vec::new(),
        description,
        metadata: metadata?,
        mqtt_root,
        parameters,
        secret_parameters,
        resources,
        start_order,
        depends_on,
    })
}

fn entries<'n>(
    node: &'n Node,
    path: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<(&'n crate::yaml::Key, &'n Node)> {
    match &node.value {
        Value::Map(entries) => entries.iter().map(|(k, v)| (k, v)).collect(),
        Value::Null => Vec::new(),
        _ => {
            diagnostics.push(Diagnostic::new(
                path,
                Some(node.pos),
                format!("expected a map, got {}", node.describe()),
            ));
            Vec::new()
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn load_resource(
    scope: &Scope<'_>,
    id: &str,
    node: &Node,
    path: &str,
    types: &BTreeMap<String, String>,
    mqtt_root: &str,
    out: &mut Resolved,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Resource> {
    let before = diagnostics.len();
    // Dots appear in real files (`1.1_DataNodes`); `::` separates service and resource.
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || id.is_empty()
    {
        diagnostics.push(Diagnostic::new(
            path,
            Some(node.pos),
            "resource ids may contain only letters, digits, `_`, `-` and `.`",
        ));
    }
    let Value::Map(fields) = &node.value else {
        diagnostics.push(Diagnostic::new(
            path,
            Some(node.pos),
            format!(
                "expected a map with `type` and `properties`, got {}",
                node.describe()
            ),
        ));
        return None;
    };
    for (key, _) in fields {
        if key.name != "type" && key.name != "properties" {
            diagnostics.push(Diagnostic::new(
                join(path, &key.name),
                Some(key.pos),
                "unknown key; a resource has only `type` and `properties`",
            ));
        }
    }
    let type_name = match node.get("type").map(|t| &t.value) {
        Some(Value::Str(t)) if RESOURCE_TYPES.contains(&t.as_str()) => t.clone(),
        Some(Value::Str(t)) => {
            let pos = node.get("type").map(|t| t.pos);
            diagnostics.push(Diagnostic::new(
                join(path, "type"),
                pos,
                format!(
                    "unknown resource type `{t}`; supported: {}",
                    RESOURCE_TYPES.join(", ")
                ),
            ));
            return None;
        }
        _ => {
            diagnostics.push(Diagnostic::new(
                join(path, "type"),
                Some(node.pos),
                "missing: every resource needs a `type`",
            ));
            return None;
        }
    };
    let props_path = join(path, "properties");
    let mut properties = match node.get("properties") {
        Some(props) => scope.resolve(props, &props_path, out, diagnostics),
        None => Json::Object(Map::new()),
    };
    if out.uses_missing {
        // It uses a parameter without a value: that one problem is reported where the
        // parameter is declared, and whatever else would be said here follows from it.
        return None;
    }
    if type_name == "Cybus::Mapping" {
        expand_mqtt_root(&mut properties, mqtt_root);
        references_from_strings(&mut properties, scope, types, out);
    }
    let section = match type_name.as_str() {
        "Cybus::Connection" => Some(&connectware::CONNECTION),
        "Cybus::Endpoint" => Some(&connectware::ENDPOINT),
        "Cybus::Mapping" => Some(&connectware::MAPPING),
        "Cybus::Server::Http" => Some(&connectware::HTTP_SERVER),
        "Cybus::Node::Http" => Some(&connectware::HTTP_NODE),
        "Cybus::Server::Opcua" => Some(&connectware::OPCUA_SERVER),
        "Cybus::Node::Opcua" => Some(&connectware::OPCUA_NODE),
        _ => None,
    };
    if let Some(section) = section {
        section.take_ignored(&mut properties, &props_path, &out.positions, diagnostics);
    }
    let positions = &out.positions;
    let kind = match type_name.as_str() {
        "Cybus::Connection" => {
            let shape: ConnectionShape =
                typed(properties.clone(), &props_path, positions, diagnostics)?;
            let conn_path = join(&props_path, "connection");
            let params = protocols::connection(
                shape.protocol,
                shape.connection,
                &conn_path,
                positions,
                diagnostics,
            )?;
            if let Some(agent) = &shape.agent_name {
                check_agent_name(
                    agent,
                    &join(&props_path, "agentName"),
                    positions,
                    diagnostics,
                );
            }
            ResourceKind::Connection(Connection {
                protocol: shape.protocol,
                params,
                target_state: shape.target_state,
                agent_name: shape.agent_name,
            })
        }
        "Cybus::Endpoint" => {
            let shape: EndpointShape =
                typed(properties.clone(), &props_path, positions, diagnostics)?;
            check_ref(
                scope,
                &shape.connection,
                &["Cybus::Connection"],
                types,
                &join(&props_path, "connection"),
                positions,
                diagnostics,
            );
            let chosen: Vec<(Operation, Json, &str)> = [
                (Operation::Subscribe, shape.subscribe, "subscribe"),
                (Operation::Read, shape.read, "read"),
                (Operation::Write, shape.write, "write"),
            ]
            .into_iter()
            .filter_map(|(op, v, name)| v.map(|v| (op, v, name)))
            .collect();
            let [(operation, address, name)] = <[_; 1]>::try_from(chosen).ok().or_else(|| {
                diagnostics.push(Diagnostic::new(
                    &props_path,
                    position_of(positions, &props_path),
                    "an endpoint needs exactly one of `subscribe`, `read` or `write`",
                ));
                None
            })?;
            let address_path = join(&props_path, name);
            let address = protocols::address(
                shape.protocol,
                operation,
                address,
                &address_path,
                positions,
                diagnostics,
            )?;
            check_rules(
                &shape.rules,
                &join(&props_path, "rules"),
                positions,
                diagnostics,
            );
            let topic = shape.topic.unwrap_or_else(|| id.to_string());
            check_topic(
                &topic,
                false,
                false,
                &join(&props_path, "topic"),
                positions,
                diagnostics,
            );
            ResourceKind::Endpoint(Endpoint {
                protocol: shape.protocol,
                connection: shape.connection,
                operation,
                address,
                topic,
                qos: shape.qos.unwrap_or(Qos(0)),
                retain: shape.retain,
                rules: shape.rules,
            })
        }
        "Cybus::Mapping" => {
            let mapping: Mapping = typed(properties.clone(), &props_path, positions, diagnostics)?;
            check_mapping(scope, &mapping, types, &props_path, positions, diagnostics);
            if let Some(agent) = &mapping.agent_name {
                check_agent_name(
                    agent,
                    &join(&props_path, "agentName"),
                    positions,
                    diagnostics,
                );
            }
            ResourceKind::Mapping(mapping)
        }
        "Cybus::User" => {
            let user: User = typed(properties.clone(), &props_path, positions, diagnostics)?;
            for (i, role) in user.roles.iter().enumerate() {
                check_ref(
                    scope,
                    role,
                    &["Cybus::Role"],
                    types,
                    &index(&join(&props_path, "roles"), i),
                    positions,
                    diagnostics,
                );
            }
            if user.password.is_empty() {
                let p = join(&props_path, "password");
                diagnostics.push(Diagnostic::new(
                    &p,
                    position_of(positions, &p),
                    "must not be empty",
                ));
            }
            ResourceKind::User(user)
        }
        "Cybus::Role" => ResourceKind::Role(typed::<Role>(
            properties.clone(),
            &props_path,
            positions,
            diagnostics,
        )?),
        "Cybus::Server::Http" => {
            let server: HttpServer =
                typed(properties.clone(), &props_path, positions, diagnostics)?;
            check_http_path(
                &server.base_path,
                true,
                &join(&props_path, "basePath"),
                positions,
                diagnostics,
            );
            if !(1..=HTTP_SERVER_MAX_BODY).contains(&server.request_max_body_size) {
                let p = join(&props_path, "requestMaxBodySize");
                diagnostics.push(Diagnostic::new(
                    &p,
                    position_of(positions, &p),
                    format!(
                        "expected 1-{HTTP_SERVER_MAX_BODY} bytes, got {}",
                        server.request_max_body_size
                    ),
                ));
            }
            ResourceKind::HttpServer(server)
        }
        "Cybus::Node::Http" => {
            let node: HttpNode = typed(properties.clone(), &props_path, positions, diagnostics)?;
            check_ref(
                scope,
                &node.parent,
                &["Cybus::Server::Http"],
                types,
                &join(&props_path, "parent"),
                positions,
                diagnostics,
            );
            check_http_path(
                &node.route,
                false,
                &join(&props_path, "route"),
                positions,
                diagnostics,
            );
            if let Some(topic) = &node.topic {
                check_topic(
                    topic,
                    false,
                    false,
                    &join(&props_path, "topic"),
                    positions,
                    diagnostics,
                );
            }
            ResourceKind::HttpNode(node)
        }
        "Cybus::Server::Opcua" => {
            let server: OpcuaServer =
                typed(properties.clone(), &props_path, positions, diagnostics)?;
            crate::opcua_server::check_server(&server, &props_path, positions, diagnostics);
            ResourceKind::OpcuaServer(server)
        }
        "Cybus::Node::Opcua" => {
            let node: OpcuaNode = typed(properties.clone(), &props_path, positions, diagnostics)?;
            check_ref(
                scope,
                &node.parent,
                &["Cybus::Server::Opcua", "Cybus::Node::Opcua"],
                types,
                &join(&props_path, "parent"),
                positions,
                diagnostics,
            );
            crate::opcua_server::check_node(&node, &props_path, positions, diagnostics);
            if let Some(topic) = &node.topic {
                check_topic(
                    topic,
                    false,
                    false,
                    &join(&props_path, "topic"),
                    positions,
                    diagnostics,
                );
            }
            ResourceKind::OpcuaNode(node)
        }
        _ => return None,
    };
    let valid = !diagnostics[before..].iter().any(Diagnostic::is_error);
    valid.then(|| Resource {
        id: id.to_string(),
        kind,
        properties,
        depends_on: out.local_refs.clone(),
    })
}

/// What a mapping's `endpoint` may name: an endpoint, or a node of the gateway's OPC UA server
/// (a mapping publishes into it, or subscribes to what clients write to it).
const ENDPOINT_LIKE: &[&str] = &["Cybus::Endpoint", "Cybus::Node::Opcua"];

/// Two HTTP nodes of this service on one method and path: the second could never be reached.
/// (Nodes of other services are checked when they start: a path belongs to the first.)
fn check_http_routes(
    service_id: &str,
    resources: &BTreeMap<String, Resource>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut seen: BTreeMap<(&str, String), &str> = BTreeMap::new();
    for (id, resource) in resources {
        let ResourceKind::HttpNode(node) = &resource.kind else {
            continue;
        };
        if node.parent.service != service_id {
            continue;
        }
        let Some(ResourceKind::HttpServer(server)) =
            resources.get(&node.parent.resource).map(|r| &r.kind)
        else {
            continue;
        };
        let path = http_node_path(&server.base_path, &node.route);
        if let Some(first) = seen.insert((node.method.as_str(), path.clone()), id) {
            diagnostics.push(Diagnostic::new(
                join("resources", id),
                None,
                format!(
                    "{} {path} is already served by node `{first}`",
                    node.method.as_str()
                ),
            ));
        }
    }
}

/// A `basePath` (may be empty or `/`) or `route`: `/`-separated segments of letters, digits and
/// `-._~`, so a path is also a permission pattern without wildcards and nothing escapes
/// `/data` with `..`.
fn check_http_path(
    text: &str,
    may_be_empty: bool,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let segments: Vec<&str> = text.split('/').filter(|s| !s.is_empty()).collect();
    let unusable = |segment: &&&str| {
        **segment == "."
            || **segment == ".."
            || !segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
    };
    let problem = if segments.is_empty() && !may_be_empty {
        Some("a route needs at least one segment, e.g. `/temperature`".to_string())
    } else if !text.is_empty() && !text.starts_with('/') {
        Some(format!("`{text}` must start with `/`"))
    } else {
        segments.iter().find(unusable).map(|bad| {
            format!("`{bad}` in `{text}`: use letters, digits and `-._~` between the `/`")
        })
    };
    if let Some(problem) = problem {
        diagnostics.push(Diagnostic::new(path, position_of(positions, path), problem));
    }
}

/// `${Cybus::MqttRoot}` in a mapping topic is expanded even without `!sub`.
/// A service's topic root (`CYBUS_MQTT_ROOT`) is where its broker user may read and write
/// everything, so it must be a concrete prefix: a wildcard would reach other services' topics,
/// and `$`-topics belong to the broker. Returns the root without trailing slashes.
fn concrete_topic_root(root: &str) -> Result<&str, String> {
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return Err("the topic root must not be empty".into());
    }
    if root.contains(['+', '#']) {
        return Err(format!(
            "the topic root {root:?} must be a concrete topic prefix without `+` or `#`: the service's broker user may read and write everything below it"
        ));
    }
    if root.starts_with('$') {
        return Err(format!(
            "the topic root {root:?} must not start with `$`: those topics belong to the broker"
        ));
    }
    if root.split('/').any(str::is_empty) || root.contains('\0') {
        return Err(format!(
            "the topic root {root:?} must not contain empty levels (`//`) or NUL"
        ));
    }
    Ok(root)
}

/// Connectware types a mapping's `endpoint` and `connection` as strings: a `!ref` is the usual
/// way to write them, but the bare name of a resource of this service, or `service::resource`,
/// means the same. Both become references here, counted as dependencies like a `!ref`.
fn references_from_strings(
    properties: &mut Json,
    scope: &Scope<'_>,
    types: &BTreeMap<String, String>,
    out: &mut Resolved,
) {
    let Some(Json::Array(entries)) = properties.get_mut("mappings") else {
        return;
    };
    for entry in entries {
        for side in ["subscribe", "publish"] {
            let places: Vec<&mut Json> = match entry.get_mut(side) {
                Some(Json::Array(items)) => items.iter_mut().collect(),
                Some(item) => vec![item],
                None => Vec::new(),
            };
            for place in places {
                for key in ["endpoint", "connection"] {
                    let Some(value) = place.get_mut(key) else {
                        continue;
                    };
                    let Json::String(text) = value else {
                        continue;
                    };
                    let (service, resource) = match text.split_once("::") {
                        Some((service, resource)) => (service.to_string(), resource.to_string()),
                        None if types.contains_key(text.as_str()) => {
                            (scope.service_id.to_string(), text.clone())
                        }
                        // Reported when typed, with what to write instead.
                        None => continue,
                    };
                    if service == scope.service_id {
                        out.local_refs.insert(resource.clone());
                    } else {
                        out.service_refs.insert(service.clone());
                    }
                    *value = crate::resolve::reference(&service, &resource);
                }
            }
        }
    }
}

fn expand_mqtt_root(value: &mut Json, root: &str) {
    match value {
        Json::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Json::String(s) if key == "topic" => *s = s.replace("${Cybus::MqttRoot}", root),
                    _ => expand_mqtt_root(child, root),
                }
            }
        }
        Json::Array(items) => items
            .iter_mut()
            .for_each(|item| expand_mqtt_root(item, root)),
        _ => {}
    }
}

fn check_ref(
    scope: &Scope<'_>,
    reference: &ResourceRef,
    expected: &[&str],
    types: &BTreeMap<String, String>,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let actual = if reference.service == scope.service_id {
        types.get(&reference.resource).cloned()
    } else {
        match scope.other_services {
            Some(others) => others.resource_type(&reference.service, &reference.resource),
            None => return,
        }
    };
    if let Some(actual) = actual
        && !expected.contains(&actual.as_str())
    {
        diagnostics.push(Diagnostic::new(
            path,
            position_of(positions, path),
            format!(
                "`{reference}` is a {actual}; expected a {}",
                expected.join(" or a ")
            ),
        ));
    }
}

fn check_mapping(
    scope: &Scope<'_>,
    mapping: &Mapping,
    types: &BTreeMap<String, String>,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let problem = |diagnostics: &mut Vec<Diagnostic>, path: &str, message: String| {
        diagnostics.push(Diagnostic::new(path, position_of(positions, path), message));
    };
    for (i, entry) in mapping.mappings.iter().enumerate() {
        let entry_path = index(&join(path, "mappings"), i);
        let many = matches!(entry.subscribe, crate::model::OneOrMany::Many(_));
        // Names a publish topic may use: bound by some source's wildcards or set by a rule.
        let mut bound: BTreeSet<String> = BTreeSet::new();
        for (j, source) in entry.subscribe.iter().enumerate() {
            let source_path = match many {
                true => index(&join(&entry_path, "subscribe"), j),
                false => join(&entry_path, "subscribe"),
            };
            let mut wildcards = BTreeSet::new();
            match (&source.endpoint, &source.topic) {
                (Some(endpoint), None) => check_ref(
                    scope,
                    endpoint,
                    ENDPOINT_LIKE,
                    types,
                    &join(&source_path, "endpoint"),
                    positions,
                    diagnostics,
                ),
                (None, Some(topic)) => match NamedFilter::parse(topic) {
                    Ok(filter) => wildcards.extend(filter.names().map(str::to_string)),
                    Err(e) => problem(diagnostics, &join(&source_path, "topic"), e),
                },
                _ => problem(
                    diagnostics,
                    &source_path,
                    "give exactly one of `endpoint` or `topic`".into(),
                ),
            }
            if let Some(label) = &source.label {
                let label_path = join(&source_path, "label");
                match Template::parse(label) {
                    Ok(template) => {
                        if let Some(name) = template.names().find(|n| !wildcards.contains(*n)) {
                            problem(
                                diagnostics,
                                &label_path,
                                format!("`{name}` is not a named wildcard of this subscription"),
                            );
                        }
                    }
                    Err(e) => problem(diagnostics, &label_path, e),
                }
            }
            if let Some(connection) = &source.connection {
                check_ref(
                    scope,
                    connection,
                    &["Cybus::Connection"],
                    types,
                    &join(&source_path, "connection"),
                    positions,
                    diagnostics,
                );
            }
            bound.extend(wildcards);
        }
        bound.extend(check_rules(
            &entry.rules,
            &join(&entry_path, "rules"),
            positions,
            diagnostics,
        ));
        let sink_path = join(&entry_path, "publish");
        match (&entry.publish.endpoint, &entry.publish.topic) {
            (Some(endpoint), None) => check_ref(
                scope,
                endpoint,
                ENDPOINT_LIKE,
                types,
                &join(&sink_path, "endpoint"),
                positions,
                diagnostics,
            ),
            (None, Some(topic)) => {
                let topic_path = join(&sink_path, "topic");
                check_topic(topic, false, true, &topic_path, positions, diagnostics);
                match Template::parse(topic) {
                    Ok(template) => {
                        if let Some(name) = template.names().find(|n| !bound.contains(*n)) {
                            problem(
                                diagnostics,
                                &topic_path,
                                format!(
                                    "`{name}` is neither a named wildcard of a subscription nor set by `setContextVars`"
                                ),
                            );
                        }
                    }
                    Err(e) => problem(diagnostics, &topic_path, e),
                }
            }
            _ => problem(
                diagnostics,
                &sink_path,
                "give exactly one of `endpoint` or `topic`".into(),
            ),
        }
        if let Some(connection) = &entry.publish.connection {
            check_ref(
                scope,
                connection,
                &["Cybus::Connection"],
                types,
                &join(&sink_path, "connection"),
                positions,
                diagnostics,
            );
        }
    }
}

/// Topic syntax: no empty topic, no NUL; wildcards (`+`, `#`, and the named forms `+name`,
/// `#name`) only in subscriptions, `#` only last.
fn check_topic(
    topic: &str,
    wildcards: bool,
    absolute: bool,
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let problem = if topic.is_empty() {
        Some("a topic must not be empty".to_string())
    } else if topic.contains('\0') {
        Some("a topic must not contain NUL".to_string())
    } else if !absolute && topic.starts_with('/') {
        Some(
            "an endpoint topic is relative to the service root; remove the leading `/`".to_string(),
        )
    } else {
        let levels: Vec<&str> = topic.split('/').collect();
        levels.iter().enumerate().find_map(|(i, level)| {
            let wildcard = level.starts_with('+') || level.starts_with('#');
            if !wildcard && (level.contains('+') || level.contains('#')) {
                Some(format!("`{level}`: `+` and `#` must start a topic level"))
            } else if wildcard && !wildcards {
                Some(format!(
                    "`{level}`: wildcards are allowed only where the mapping subscribes"
                ))
            } else if level.starts_with('#') && i + 1 != levels.len() {
                Some(format!("`{level}`: `#` must be the last topic level"))
            } else {
                None
            }
        })
    };
    if let Some(problem) = problem {
        diagnostics.push(Diagnostic::new(path, position_of(positions, path), problem));
    }
}

/// Orders resources so each starts after those it references; a cycle is reported.
fn start_order(
    resources: &BTreeMap<String, Resource>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut order = Vec::with_capacity(resources.len());
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 visiting, 2 done
    fn visit<'r>(
        id: &'r str,
        resources: &'r BTreeMap<String, Resource>,
        state: &mut BTreeMap<&'r str, u8>,
        order: &mut Vec<String>,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        match state.get(id) {
            Some(2) => return,
            Some(_) => {
                diagnostics.push(Diagnostic::new(
                    join("resources", id),
                    None,
                    "resources reference each other in a cycle",
                ));
                return;
            }
            None => {}
        }
        state.insert(id, 1);
        if let Some(resource) = resources.get(id) {
            for dep in &resource.depends_on {
                if resources.contains_key(dep) {
                    visit(dep, resources, state, order, diagnostics);
                }
            }
        }
        state.insert(id, 2);
        order.push(id.to_string());
    }
    for id in resources.keys() {
        visit(id, resources, &mut state, &mut order, diagnostics);
    }
    order
}
