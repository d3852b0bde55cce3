//! Deserialises resolved JSON into typed models and turns serde's complaints into diagnostics
//! with YAML paths and positions. After a complaint the offending value is taken out and the
//! attempt repeated, so one pass reports every problem rather than the first. When the value
//! deserialises after such removals it is still returned, so the caller can check the rest of it;
//! the diagnostics already say it is invalid.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use crate::diagnostic::{Diagnostic, Pos, join};
use crate::resolve::position_of;

/// The most problems reported for one value before giving up on it.
const MAX_PROBLEMS: usize = 32;

pub(crate) fn typed<T: DeserializeOwned>(
    mut value: Json,
    base: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<T> {
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..MAX_PROBLEMS {
        let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(typed) => return Some(typed),
            Err(error) => error,
        };
        let relative = match error.path().to_string() {
            p if p == "." => String::new(),
            p => p,
        };
        let message = error.inner().to_string();
        // Taking out a wrongly typed required field makes serde say it is missing; that is the
        // same problem again, already reported.
        let repeated = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .is_some_and(|field| removed.contains(&join(&relative, field)));
        if repeated {
            return None;
        }
        let path = join_relative(base, &relative);
        // A value whose `!ref` or `!sub` failed was reported when it was resolved.
        if !diagnostics.iter().any(|d| d.path == path) {
            diagnostics.push(Diagnostic::new(
                &path,
                position_of(positions, &path),
                friendly(&message),
            ));
        }
        if relative.is_empty() || !remove(&mut value, &relative) {
            return None;
        }
        removed.push(relative);
    }
    None
}

fn join_relative(base: &str, relative: &str) -> String {
    match (base.is_empty(), relative.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => relative.to_string(),
        (false, false) if relative.starts_with('[') => format!("{base}{relative}"),
        (false, false) => format!("{base}.{relative}"),
    }
}

/// Removes the value at a serde path (`a.b[2].c`); false when there is nothing to remove.
fn remove(value: &mut Json, path: &str) -> bool {
    let segments = segments(path);
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = value;
    for segment in parents {
        let next = match segment {
            Segment::Key(key) => node.get_mut(key.as_str()),
            Segment::Index(i) => node.get_mut(*i),
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match (last, node) {
        (Segment::Key(key), Json::Object(map)) => map.remove(key).is_some(),
        (Segment::Index(i), Json::Array(items)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(Segment::Key(rest[..open].to_string()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(i) = stripped[..close].parse() {
                    out.push(Segment::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else if !rest.is_empty() {
            out.push(Segment::Key(rest.to_string()));
        }
    }
    out
}

/// Rewrites serde's wording into what a technician reads: `expected integer 0-65535, got
/// string "5o2"` instead of `invalid type: string "5o2", expected u16`.
fn friendly(message: &str) -> String {
    let expected = |what: &str| -> String {
        match what {
            "u8" => "integer 0-255".into(),
            "u16" => "integer 0-65535".into(),
            "u32" | "u64" | "usize" => "a whole number, 0 or more".into(),
            "i32" | "i64" => "an integer".into(),
            "f32" | "f64" => "a number".into(),
            "a boolean" => "true or false".into(),
            other => other.to_string(),
        }
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((got, what)) = rest.rsplit_once(", expected ")
        {
            return format!("expected {}, got {}", expected(what), got.replace('`', ""));
        }
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once("`, expected ")
    {
        let allowed = expected.replace("one of ", "");
        return match nearest(field, &allowed) {
            Some(near) => format!(
                "unknown property `{field}`; did you mean `{near}`? allowed here: {allowed}"
            ),
            None => format!("unknown property `{field}`; allowed here: {allowed}"),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((variant, expected)) = rest.split_once("`, expected ")
    {
        return format!("unknown value `{variant}`; expected {expected}");
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        return format!("missing required property `{}", rest);
    }
    message.to_string()
}

/// The allowed name (from serde's "`a`, `b`" list) a misspelt one most likely meant: the
/// same but for case, or at most a third of its letters away (a swap of two counts as one).
fn nearest<'a>(field: &str, allowed: &'a str) -> Option<&'a str> {
    let names = allowed
        .split(", ")
        .map(|name| name.trim_matches(['`', ' ']));
    let (distance, name) = names
        .map(|name| {
            let distance = if name.eq_ignore_ascii_case(field) {
                0
            } else {
                strsim::osa_distance(&field.to_lowercase(), &name.to_lowercase()).max(1)
            };
            (distance, name)
        })
        .min()?;
    (distance <= (field.chars().count() / 3).max(1)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Connection {
        host: String,
        port: u16,
        #[serde(default)]
        tags: Vec<u8>,
    }

    fn problems(value: Json) -> Vec<String> {
        let mut diagnostics = Vec::new();
        let _: Option<Connection> = typed(value, "c", &BTreeMap::new(), &mut diagnostics);
        // The order follows serde's walk of the object; the file loader sorts by position.
        let mut found: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        found.sort();
        found
    }

    #[test]
    fn reports_every_problem_once() {
        assert_eq!(
            problems(json!({"host": "h", "port": 502})),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(
                json!({"host": 1, "port": "5o2", "tags": [1, 300], "colour": "red", "hots": 1})
            ),
            [
                "c.colour: unknown property `colour`; allowed here: `host`, `port`, `tags`",
                "c.host: expected a string, got integer 1",
                "c.hots: unknown property `hots`; did you mean `host`? allowed here: `host`, `port`, `tags`",
                "c.port: expected integer 0-65535, got string \"5o2\"",
                "c.tags[1]: expected integer 0-255, got integer 300",
            ]
        );
        assert_eq!(
            problems(json!({"host": "h"})),
            ["c: missing required property `port`"]
        );
    }
}
