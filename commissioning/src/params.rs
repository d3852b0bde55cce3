//! Service parameters: their declared schema and the values given at install or reconfigure.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::diagnostic::{Diagnostic, Pos, join};

/// One entry of `parameters:`, in the JSON-schema style Connectware uses.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ParameterSpec {
    #[serde(rename = "type")]
    pub kind: ParameterType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(
        default,
        rename = "enum",
        alias = "allowedValues",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_values: Option<Vec<Json>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// JSON schema's `format`; `password` marks a secret (masked in every answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
}

impl ParameterSpec {
    /// Checks one value against the spec. Strings are converted to numbers and booleans when the
    /// type asks for them, because values given as URL query parameters arrive as text.
    pub fn check(&self, value: Json) -> Result<Json, String> {
        let value = self.coerce(value)?;
        if let Some(allowed) = &self.allowed_values
            && !allowed.contains(&value)
        {
            let list: Vec<String> = allowed.iter().map(Json::to_string).collect();
            return Err(format!("must be one of {}, got {value}", list.join(", ")));
        }
        if let Some(n) = value.as_f64() {
            if let Some(min) = self.minimum
                && n < min
            {
                return Err(format!("must be at least {min}, got {n}"));
            }
            if let Some(max) = self.maximum
                && n > max
            {
                return Err(format!("must be at most {max}, got {n}"));
            }
        }
        if let Some(s) = value.as_str() {
            let len = s.chars().count();
            if let Some(min) = self.min_length
                && len < min
            {
                return Err(format!("must be at least {min} characters long, got {len}"));
            }
            if let Some(max) = self.max_length
                && len > max
            {
                return Err(format!("must be at most {max} characters long, got {len}"));
            }
            if let Some(pattern) = &self.pattern {
                let re = Regex::new(pattern).map_err(|e| format!("invalid pattern: {e}"))?;
                if !re.is_match(s) {
                    return Err(format!("must match the pattern {pattern:?}, got {s:?}"));
                }
            }
        }
        Ok(value)
    }

    fn coerce(&self, value: Json) -> Result<Json, String> {
        let got = describe(&value);
        match (self.kind, value) {
            (ParameterType::String, Json::String(s)) => Ok(Json::String(s)),
            (ParameterType::Number, Json::Number(n)) => Ok(Json::Number(n)),
            (ParameterType::Number, Json::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Json::Number)
                .ok_or_else(|| format!("expected a number, got {got}")),
            (ParameterType::Integer, Json::Number(n)) if n.is_i64() || n.is_u64() => {
                Ok(Json::Number(n))
            }
            (ParameterType::Integer, Json::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Json::from)
                .map_err(|_| format!("expected an integer, got {got}")),
            (ParameterType::Boolean, Json::Bool(b)) => Ok(Json::Bool(b)),
            (ParameterType::Boolean, Json::String(s)) if s == "true" || s == "false" => {
                Ok(Json::Bool(s == "true"))
            }
            (ParameterType::Array, Json::Array(a)) => Ok(Json::Array(a)),
            (ParameterType::Array, Json::String(s)) => match serde_json::from_str(&s) {
                Ok(Json::Array(a)) => Ok(Json::Array(a)),
                _ => Err(format!("expected an array, got {got}")),
            },
            (kind, _) => Err(format!("expected {}, got {got}", kind.describe())),
        }
    }
}

impl ParameterType {
    fn describe(self) -> &'static str {
        match self {
            ParameterType::String => "a string",
            ParameterType::Number => "a number",
            ParameterType::Integer => "an integer",
            ParameterType::Boolean => "a boolean",
            ParameterType::Array => "an array",
        }
    }
}

pub(crate) fn describe(value: &Json) -> String {
    match value {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) => format!("string {s:?}"),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

/// The declared parameters with a value, and those without one (each reported once, here).
#[derive(Default)]
pub(crate) struct Values {
    pub values: BTreeMap<String, Json>,
    pub missing: BTreeSet<String>,
}

/// Resolves the value of every declared parameter: the given value, else the default, else an
/// error. Values for undeclared parameters are errors too, because they are usually typos.
pub(crate) fn resolve(
    specs: &BTreeMap<String, (ParameterSpec, Pos)>,
    given: &serde_json::Map<String, Json>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Values {
    let mut values = BTreeMap::new();
    let mut missing = BTreeSet::new();
    for name in given.keys() {
        if !specs.contains_key(name) {
            diagnostics.push(Diagnostic::new(
                join("parameters", name),
                None,
                "a value was given for a parameter the file does not declare",
            ));
        }
    }
    for (name, (spec, pos)) in specs {
        let path = join("parameters", name);
        if let Some(default) = &spec.default
            && let Err(e) = spec.check(default.clone())
        {
            diagnostics.push(Diagnostic::new(join(&path, "default"), Some(*pos), e));
        }
        let value = match given.get(name) {
            Some(value) => match spec.check(value.clone()) {
                Ok(value) => value,
                Err(e) => {
                    diagnostics.push(Diagnostic::new(&path, None, e));
                    missing.insert(name.clone());
                    continue;
                }
            },
            None => match &spec.default {
                Some(default) => default.clone(),
                None => {
                    diagnostics.push(Diagnostic::new(
                        &path,
                        Some(*pos),
                        "required parameter has no value and no default",
                    ));
                    missing.insert(name.clone());
                    continue;
                }
            },
        };
        values.insert(name.clone(), value);
    }
    Values { values, missing }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Json) -> ParameterSpec {
        serde_json::from_value(value).expect("spec")
    }

    #[test]
    fn checks_each_constraint() {
        let cases = [
            (
                json!({"type": "integer", "minimum": 1, "maximum": 65535}),
                json!(502),
                Ok(json!(502)),
            ),
            (
                json!({"type": "integer", "minimum": 1, "maximum": 65535}),
                json!("502"),
                Ok(json!(502)),
            ),
            (
                json!({"type": "integer"}),
                json!("5o2"),
                Err("expected an integer, got string \"5o2\""),
            ),
            (
                json!({"type": "integer", "maximum": 10}),
                json!(11),
                Err("must be at most 10, got 11"),
            ),
            (json!({"type": "number"}), json!(1.5), Ok(json!(1.5))),
            (json!({"type": "boolean"}), json!("true"), Ok(json!(true))),
            (
                json!({"type": "boolean"}),
                json!(1),
                Err("expected a boolean, got number 1"),
            ),
            (
                json!({"type": "string", "enum": ["a", "b"]}),
                json!("c"),
                Err("must be one of \"a\", \"b\", got \"c\""),
            ),
            (
                json!({"type": "string", "allowedValues": ["a"]}),
                json!("a"),
                Ok(json!("a")),
            ),
            (
                json!({"type": "string", "minLength": 2}),
                json!("a"),
                Err("must be at least 2 characters long, got 1"),
            ),
            (
                json!({"type": "string", "maxLength": 2}),
                json!("abc"),
                Err("must be at most 2 characters long, got 3"),
            ),
            (
                json!({"type": "string", "pattern": "^[0-9.]+$"}),
                json!("10.0.0.1"),
                Ok(json!("10.0.0.1")),
            ),
            (
                json!({"type": "string", "pattern": "^[0-9.]+$"}),
                json!("plc"),
                Err("must match the pattern \"^[0-9.]+$\", got \"plc\""),
            ),
            (json!({"type": "array"}), json!([1]), Ok(json!([1]))),
        ];
        for (s, value, expected) in cases {
            let got = spec(s.clone()).check(value.clone());
            assert_eq!(got, expected.map_err(String::from), "{s} with {value}");
        }
    }

    #[test]
    fn missing_undeclared_and_defaults() {
        let mut specs = BTreeMap::new();
        specs.insert(
            "host".to_string(),
            (spec(json!({"type": "string"})), Pos::default()),
        );
        specs.insert(
            "port".to_string(),
            (
                spec(json!({"type": "integer", "default": 502})),
                Pos::default(),
            ),
        );
        let mut diagnostics = Vec::new();
        let given = json!({"hots": "x"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let values = resolve(&specs, &given, &mut diagnostics);
        assert_eq!(values.values.get("port"), Some(&json!(502)));
        let messages: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "parameters.hots: a value was given for a parameter the file does not declare",
                "parameters.host: required parameter has no value and no default (line 0, column 0)",
            ]
        );
    }
}
