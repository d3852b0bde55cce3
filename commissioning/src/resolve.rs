//! Turns the tagged YAML tree into plain JSON: `!ref`, `!sub` and `!merge` are replaced by what
//! they stand for, and every JSON path remembers the YAML position it came from.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json};

use crate::diagnostic::{Diagnostic, Pos, index, join};
use crate::yaml::{Node, Value};

/// The JSON form of `!ref resource`: an object no YAML author writes by hand, so a plain string
/// where a reference is expected is an error rather than a silent match.
pub const REF_KEY: &str = "$ref";

/// Names a `!ref` or `${...}` can reach, apart from the resources of the file itself.
pub(crate) struct Scope<'a> {
    pub service_id: &'a str,
    pub values: &'a BTreeMap<String, Json>,
    /// Parameters (and definitions built from them) that have no value. Their problem is
    /// reported once where they are declared; a use of one marks what uses it
    /// ([`Resolved::uses_missing`]) instead of adding a diagnostic of its own.
    pub missing: &'a BTreeSet<String>,
    pub resources: &'a BTreeSet<String>,
    pub other_services: Option<&'a dyn OtherServices>,
}

/// What the installed services offer to `!ref other::resource`. `None` in [`Scope`] means offline
/// validation, where such references are accepted unchecked.
pub trait OtherServices {
    /// The type (`Cybus::Connection`, ...) of `resource` in the installed service `service`.
    fn resource_type(&self, service: &str, resource: &str) -> Option<String>;
}

/// The most that `!ref` and `!sub` may produce in one file, counted as JSON text: far beyond any
/// real commissioning file (the API accepts 4 MiB of file), far below what a doubling chain of
/// definitions reaches (`d2: !sub '${d1}${d1}'`, 30 levels: 16 GiB). Like YAML's alias limits,
/// it bounds the work and memory of resolving whatever the file says.
pub const MAX_EXPANDED_BYTES: usize = 8 * 1024 * 1024;

/// Resolution of one subtree: the JSON, the positions of its paths, the resources it references.
#[derive(Default)]
pub(crate) struct Resolved {
    pub positions: BTreeMap<String, Pos>,
    pub local_refs: BTreeSet<String>,
    pub service_refs: BTreeSet<String>,
    /// Bytes produced by `!ref` and `!sub` so far (shared by the whole file).
    pub expanded: usize,
    /// The expansion limit was reported; later expansions fail silently.
    pub limit_reported: bool,
    /// A `!ref` or `${...}` named something in [`Scope::missing`]: whatever this subtree is,
    /// it cannot be checked, and its problems would only repeat the missing value.
    pub uses_missing: bool,
}

/// Why a `!ref` or `${...}` could not be expanded.
enum Expansion {
    /// A problem with this reference, reported where it stands.
    Problem(String),
    /// The file as a whole exceeds [`MAX_EXPANDED_BYTES`]; reported once.
    TooLarge,
    /// A parameter without a value, reported where it is declared.
    Missing,
}

impl From<String> for Expansion {
    fn from(message: String) -> Expansion {
        Expansion::Problem(message)
    }
}

impl Scope<'_> {
    pub(crate) fn resolve(
        &self,
        node: &Node,
        path: &str,
        out: &mut Resolved,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Json {
        out.positions.insert(path.to_string(), node.pos);
        match &node.value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            Value::Str(s) => Json::String(s.clone()),
            Value::Seq(items) => Json::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.resolve(item, &index(path, i), out, diagnostics))
                    .collect(),
            ),
            Value::Map(entries) => {
                let mut map = Map::new();
                for (key, value) in entries {
                    let child = join(path, &key.name);
                    let value = self.resolve(value, &child, out, diagnostics);
                    map.insert(key.name.clone(), value);
                }
                Json::Object(map)
            }
            Value::Tagged(tag, inner) => match (tag.as_str(), &inner.value) {
                ("ref", Value::Str(name)) => match self.lookup(name, out) {
                    Ok(value) => value,
                    Err(Expansion::Problem(message)) => {
                        diagnostics.push(Diagnostic::new(path, Some(node.pos), message));
                        // Stands in for the missing target so the rest of the resource is still
                        // checked; the diagnostic above already makes the file invalid.
                        reference(self.service_id, name)
                    }
                    Err(Expansion::TooLarge) => {
                        too_large(path, node.pos, out, diagnostics);
                        Json::Null
                    }
                    Err(Expansion::Missing) => Json::Null,
                },
                ("ref", _) => {
                    diagnostics.push(Diagnostic::new(
                        path,
                        Some(node.pos),
                        format!("!ref takes a name, got {}", inner.describe()),
                    ));
                    Json::Null
                }
                ("sub", Value::Str(template)) => match self.substitute(template, out) {
                    Ok(text) => Json::String(text),
                    Err(Expansion::Problem(message)) => {
                        diagnostics.push(Diagnostic::new(path, Some(node.pos), message));
                        Json::Null
                    }
                    Err(Expansion::TooLarge) => {
                        too_large(path, node.pos, out, diagnostics);
                        Json::Null
                    }
                    Err(Expansion::Missing) => Json::Null,
                },
                ("sub", _) => {
                    diagnostics.push(Diagnostic::new(
                        path,
                        Some(node.pos),
                        format!("!sub takes a text, got {}", inner.describe()),
                    ));
                    Json::Null
                }
                ("merge", Value::Seq(items)) => {
                    let mut merged = Map::new();
                    for (i, item) in items.iter().enumerate() {
                        let item_path = index(path, i);
                        match self.resolve(item, &item_path, out, diagnostics) {
                            Json::Object(map) => deep_merge(&mut merged, map),
                            Json::Null if !diagnostics.is_empty() => {}
                            other => diagnostics.push(Diagnostic::new(
                                item_path,
                                Some(item.pos),
                                format!(
                                    "!merge takes a list of maps, got {}",
                                    crate::params::describe(&other)
                                ),
                            )),
                        }
                    }
                    Json::Object(merged)
                }
                ("merge", _) => {
                    diagnostics.push(Diagnostic::new(
                        path,
                        Some(node.pos),
                        format!("!merge takes a list of maps, got {}", inner.describe()),
                    ));
                    Json::Null
                }
                (other, _) => {
                    diagnostics.push(Diagnostic::new(
                        path,
                        Some(node.pos),
                        format!("unknown tag !{other}; supported tags are !ref, !sub and !merge"),
                    ));
                    Json::Null
                }
            },
        }
    }

    /// What `!ref name` stands for: a parameter, definition or pseudo parameter value, or a
    /// reference to a resource of this or another service.
    fn lookup(&self, name: &str, out: &mut Resolved) -> Result<Json, Expansion> {
        if self.missing.contains(name) {
            out.uses_missing = true;
            return Err(Expansion::Missing);
        }
        if let Some(value) = self.values.get(name) {
            // Counted before it is copied: a doubling chain stops at the limit, not at the
            // memory's end.
            charge(out, json_size(value))?;
            return Ok(value.clone());
        }
        if self.resources.contains(name) {
            out.local_refs.insert(name.to_string());
            return Ok(reference(self.service_id, name));
        }
        if let Some((service, resource)) = name.split_once("::")
            && service != "Cybus"
        {
            if service == self.service_id && self.resources.contains(resource) {
                out.local_refs.insert(resource.to_string());
                return Ok(reference(service, resource));
            }
            if let Some(others) = self.other_services
                && others.resource_type(service, resource).is_none()
            {
                return Err(Expansion::Problem(format!(
                    "`{name}` refers to resource `{resource}` of service `{service}`, which is not installed; install `{service}` first"
                )));
            }
            out.service_refs.insert(service.to_string());
            return Ok(reference(service, resource));
        }
        Err(Expansion::Problem(format!(
            "`{name}` is not a parameter, definition, pseudo parameter or resource of this service"
        )))
    }

    /// Expands `${name}` in a `!sub` text. Texts are inserted as they are, numbers and booleans
    /// unquoted, resource references as `service::resource`.
    fn substitute(&self, template: &str, out: &mut Resolved) -> Result<String, Expansion> {
        let mut text = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            text.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("unclosed `${{` in {template:?}").into());
            };
            let name = after[..end].trim();
            match self.lookup(name, out)? {
                Json::String(s) => text.push_str(&s),
                Json::Number(n) => text.push_str(&n.to_string()),
                Json::Bool(b) => text.push_str(if b { "true" } else { "false" }),
                Json::Object(map) if map.contains_key(REF_KEY) => {
                    if let Some(Json::String(target)) = map.get(REF_KEY) {
                        text.push_str(target);
                    }
                }
                other => {
                    return Err(format!(
                        "`${{{name}}}` is {}, which cannot be put into a text",
                        crate::params::describe(&other)
                    )
                    .into());
                }
            }
            rest = &after[end + 1..];
        }
        text.push_str(rest);
        Ok(text)
    }
}

/// Adds `bytes` to what the file has expanded so far.
fn charge(out: &mut Resolved, bytes: usize) -> Result<(), Expansion> {
    out.expanded = out.expanded.saturating_add(bytes);
    match out.expanded > MAX_EXPANDED_BYTES {
        true => Err(Expansion::TooLarge),
        false => Ok(()),
    }
}

fn too_large(path: &str, pos: Pos, out: &mut Resolved, diagnostics: &mut Vec<Diagnostic>) {
    if out.limit_reported {
        return;
    }
    out.limit_reported = true;
    diagnostics.push(Diagnostic::new(
        path,
        Some(pos),
        format!(
            "{TOO_LARGE} {} MiB from here on (do definitions refer to each other many times over?); nothing of the file was applied",
            MAX_EXPANDED_BYTES / (1024 * 1024)
        ),
    ));
}

/// How the expansion-limit diagnostic starts; what follows from the limit is not reported.
pub(crate) const TOO_LARGE: &str = "!ref and !sub expand this file beyond";

/// The size of a value as JSON text, near enough to bound memory.
fn json_size(value: &Json) -> usize {
    match value {
        Json::Null | Json::Bool(_) | Json::Number(_) => 8,
        Json::String(s) => s.len() + 2,
        Json::Array(items) => items.iter().map(json_size).sum::<usize>() + 2,
        Json::Object(map) => {
            map.iter()
                .map(|(k, v)| k.len() + 4 + json_size(v))
                .sum::<usize>()
                + 2
        }
    }
}

pub(crate) fn reference(service: &str, resource: &str) -> Json {
    let mut map = Map::new();
    map.insert(
        REF_KEY.into(),
        Json::String(format!("{service}::{resource}")),
    );
    Json::Object(map)
}

/// `!merge`: later maps win; nested maps merge key by key; anything else is replaced.
fn deep_merge(into: &mut Map<String, Json>, from: Map<String, Json>) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Json::Object(existing)), Json::Object(incoming)) => {
                deep_merge(existing, incoming)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// The position for a JSON path: its own, or that of the nearest ancestor that has one (values
/// that came through `!ref` only know where the `!ref` was).
pub(crate) fn position_of(positions: &BTreeMap<String, Pos>, path: &str) -> Option<Pos> {
    let mut path = path;
    loop {
        if let Some(pos) = positions.get(path) {
            return Some(*pos);
        }
        let cut = path.rfind(['.', '['])?;
        path = &path[..cut];
    }
}
