//! Which values of a service are secrets, and masking them in text shown to people.
//!
//! A secret is a parameter declared with `format: password` or named like one (`cloudPassword`,
//! `apiToken`), and any string property named like one (`password`, `clientPrivateKey`). The API
//! shows the file, its parameters and errors with every secret value replaced by [`MASK`], so a
//! user who may read a service does not learn the device and cloud passwords in it.

use std::borrow::Cow;

use serde_json::{Map, Value as Json};

use crate::params::ParameterSpec;
use crate::service::Service;

/// What a secret is replaced by.
pub const MASK: &str = "********";

/// Parts of names that mark a secret, compared case-insensitively and without `-` and `_`
/// (an HTTP header `X-Api-Key` or `Authorization` holds one as much as `apiKey` does).
const SECRET_WORDS: &[&str] = &[
    "password",
    "secret",
    "token",
    "privatekey",
    "apikey",
    "authorization",
];

/// Is a parameter or property with this name a secret?
pub fn is_secret_name(name: &str) -> bool {
    let name: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SECRET_WORDS.iter().any(|word| name.contains(word))
}

pub fn is_secret_parameter(name: &str, spec: &ParameterSpec) -> bool {
    spec.format.as_deref() == Some("password") || is_secret_name(name)
}

impl Service {
    /// Every secret value of the service: secret parameters and secret-named properties of its
    /// resources (which covers literal passwords in the file and `!sub` expansions of secrets).
    pub fn secret_values(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self
            .secret_parameters
            .iter()
            .filter_map(|name| self.parameters.get(name))
            .filter_map(Json::as_str)
            .map(str::to_string)
            .collect();
        for resource in self.resources.values() {
            collect_secret_properties(&resource.properties, &mut secrets);
        }
        secrets
    }

    /// The parameter values with secret ones masked.
    pub fn masked_parameters(&self, given: &Map<String, Json>) -> Map<String, Json> {
        given
            .iter()
            .map(|(name, value)| {
                let secret = self.secret_parameters.contains(name) || is_secret_name(name);
                let value = match secret {
                    true => Json::String(MASK.into()),
                    false => value.clone(),
                };
                (name.clone(), value)
            })
            .collect()
    }
}

fn collect_secret_properties(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::Object(map) => {
            for (key, value) in map {
                match value {
                    Json::String(secret) if is_secret_name(key) => out.push(secret.clone()),
                    other => collect_secret_properties(other, out),
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|v| collect_secret_properties(v, out)),
        _ => {}
    }
}

/// `text` with every whole occurrence of a secret replaced by [`MASK`]. Multi-line secrets
/// (PEM keys) are masked line by line, since a YAML block scalar indents each line. An occurrence
/// counts only where it is not part of a longer word, so a short password does not mask the
/// middle of other words.
pub fn mask<'t>(text: &'t str, secrets: &[String]) -> Cow<'t, str> {
    let mut pieces: Vec<&str> = secrets
        .iter()
        .flat_map(|s| s.lines())
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != MASK)
        .collect();
    // Longest first, so a secret containing another is masked whole.
    pieces.sort_by_key(|s| std::cmp::Reverse(s.len()));
    pieces.dedup();
    let mut text = Cow::Borrowed(text);
    for piece in pieces {
        if let Some(masked) = mask_one(&text, piece) {
            text = Cow::Owned(masked);
        }
    }
    text
}

fn mask_one(text: &str, secret: &str) -> Option<String> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find(secret) {
        let start = from + found;
        let end = start + secret.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        let whole = !before.is_some_and(is_word) && !after.is_some_and(is_word)
            || !secret.starts_with(is_word) && !secret.ends_with(is_word);
        if whole {
            out.push_str(&text[copied..start]);
            out.push_str(MASK);
            copied = end;
        }
        from = end;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            "password",
            "cloudPassword",
            "apiToken",
            "clientPrivateKey",
            "SECRET",
            "Authorization",
            "X-Api-Key",
            "client_secret",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["host", "username", "clientCert", "caCert", "port"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn masking_whole_occurrences() {
        let secrets = vec!["hunter2".to_string(), "ab".to_string()];
        let text = "password: hunter2\nother: hunter22\nlabel: ab, tab, 'ab'\n";
        assert_eq!(
            mask(text, &secrets),
            "password: ********\nother: hunter22\nlabel: ********, tab, '********'\n"
        );
        assert!(matches!(mask("nothing here", &secrets), Cow::Borrowed(_)));
    }

    #[test]
    fn multi_line_secrets_are_masked_line_by_line() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";
        let file = "clientPrivateKey: |\n  -----BEGIN PRIVATE KEY-----\n  MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n  -----END PRIVATE KEY-----\n";
        let masked = mask(file, &[key.to_string()]);
        assert!(!masked.contains("MIIEvQ"), "{masked}");
        assert!(!masked.contains("BEGIN PRIVATE KEY"), "{masked}");
    }
}
