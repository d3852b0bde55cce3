//! Mapping topics: subscriptions with named wildcards (`factory/+machine/#rest`)
//! and publish topics or labels that use what they bound (`out/$machine/{rest}`).
//!
//! Both are parsed once at install time; at run time a subscription binds the levels of a
//! concrete topic and a template renders with those bindings and the context variables.

use std::fmt::Write as _;

/// A subscription topic whose wildcards may carry names: `+name` binds one level, `#name` the
/// rest of the topic (joined with `/`). Unnamed `+` and `#` match without binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFilter {
    levels: Vec<Level>,
    filter: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(String),
    One(Option<String>),
    Rest(Option<String>),
}

impl NamedFilter {
    /// Parses a subscription topic; wildcards must be whole levels and `#` the last one.
    pub fn parse(topic: &str) -> Result<NamedFilter, String> {
        if topic.is_empty() {
            return Err("a topic must not be empty".into());
        }
        let parts: Vec<&str> = topic.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let level = match part.chars().next() {
                Some('+') => Level::One(wildcard_name(part)?),
                Some('#') if i + 1 == parts.len() => Level::Rest(wildcard_name(part)?),
                Some('#') => return Err(format!("`{part}`: `#` must be the last topic level")),
                _ if part.contains(['+', '#']) => {
                    return Err(format!("`{part}`: `+` and `#` must start a topic level"));
                }
                _ => Level::Exact(part.to_string()),
            };
            levels.push(level);
        }
        let filter = levels
            .iter()
            .map(|level| match level {
                Level::Exact(text) => text.as_str(),
                Level::One(_) => "+",
                Level::Rest(_) => "#",
            })
            .collect::<Vec<_>>()
            .join("/");
        Ok(NamedFilter { levels, filter })
    }

    /// The MQTT topic filter to subscribe with (names removed).
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The names this filter binds, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().filter_map(|level| match level {
            Level::One(Some(name)) | Level::Rest(Some(name)) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The named levels of `topic`, or `None` when it does not match. Topics starting with `$`
    /// match a leading wildcard only if the filter spells the `$` level out (MQTT-4.7.2-1).
    pub fn bind<'t>(&self, topic: &'t str) -> Option<Vec<(&str, &'t str)>> {
        if topic.starts_with('$') && !matches!(self.levels.first(), Some(Level::Exact(_))) {
            return None;
        }
        let mut bound = Vec::new();
        let mut rest = Some(topic);
        for level in &self.levels {
            match level {
                Level::Rest(name) => {
                    // `a/#` matches `a` itself, with an empty rest.
                    if let Some(name) = name {
                        bound.push((name.as_str(), rest.unwrap_or("")));
                    }
                    return Some(bound);
                }
                Level::Exact(text) => {
                    let (head, tail) = split_level(rest?);
                    if head != text {
                        return None;
                    }
                    rest = tail;
                }
                Level::One(name) => {
                    let (head, tail) = split_level(rest?);
                    if let Some(name) = name {
                        bound.push((name.as_str(), head));
                    }
                    rest = tail;
                }
            }
        }
        rest.is_none().then_some(bound)
    }
}

fn split_level(topic: &str) -> (&str, Option<&str>) {
    match topic.split_once('/') {
        Some((head, tail)) => (head, Some(tail)),
        None => (topic, None),
    }
}

fn wildcard_name(level: &str) -> Result<Option<String>, String> {
    let name = &level[1..];
    if name.is_empty() {
        return Ok(None);
    }
    if !name.chars().all(is_name_char) {
        return Err(format!(
            "`{level}`: a wildcard name may only use letters, digits and `_`"
        ));
    }
    Ok(Some(name.to_string()))
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A publish topic or label with variables: `$name` or `{name}`, replaced by a bound wildcard or
/// a context variable. Everything else is literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let name = match c {
                '{' => {
                    let close = text[i..]
                        .find('}')
                        .ok_or_else(|| format!("`{{` at {} is never closed", i + 1))?;
                    let name = &text[i + 1..i + close];
                    if name.is_empty() || !name.chars().all(is_name_char) {
                        return Err(format!(
                            "`{{{name}}}`: a variable name may only use letters, digits and `_`"
                        ));
                    }
                    while chars.next_if(|(j, _)| *j <= i + close).is_some() {}
                    name
                }
                '$' if chars.peek().is_some_and(|(_, next)| is_name_char(*next)) => {
                    let start = i + 1;
                    let mut end = start;
                    while let Some((j, next)) = chars.next_if(|(_, next)| is_name_char(*next)) {
                        end = j + next.len_utf8();
                    }
                    &text[start..end]
                }
                other => {
                    literal.push(other);
                    continue;
                }
            };
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(name.to_string()));
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The variables the template uses.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Var(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The literal text when the template has no variables.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// Fills in the variables: `write_var` appends a variable's text to the output and says
    /// whether the variable is set.
    pub fn render(
        &self,
        mut write_var: impl FnMut(&str, &mut String) -> bool,
    ) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(name) => {
                    if !write_var(name, &mut out) {
                        return Err(format!(
                            "`{name}` is neither a wildcard of the topic nor a context variable"
                        ));
                    }
                }
            }
        }
        Ok(out)
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(text)?,
                Part::Var(name) => write!(f, "{{{name}}}")?,
            }
        }
        Ok(())
    }
}

/// Text for a context variable's JSON value in a topic: strings as they are, other values as
/// JSON.
pub fn variable_text(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::String(s) => out.push_str(s),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bind(filter: &str, topic: &str) -> Option<Vec<(String, String)>> {
        NamedFilter::parse(filter)
            .unwrap()
            .bind(topic)
            .map(|b| b.into_iter().map(|(n, v)| (n.into(), v.into())).collect())
    }

    fn pairs(items: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            items
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn named_wildcards_bind_levels() {
        let f = NamedFilter::parse("factory/+machine/sensors/#path").unwrap();
        assert_eq!(f.filter(), "factory/+/sensors/#");
        assert_eq!(f.names().collect::<Vec<_>>(), ["machine", "path"]);
        assert_eq!(
            bind(
                "factory/+machine/sensors/#path",
                "factory/m1/sensors/temp/in"
            ),
            pairs(&[("machine", "m1"), ("path", "temp/in")])
        );
        assert_eq!(
            bind("factory/+machine/sensors/#path", "factory/m1/sensors"),
            pairs(&[("machine", "m1"), ("path", "")])
        );
        assert_eq!(bind("factory/+machine", "factory/m1/extra"), None);
        assert_eq!(bind("factory/+machine", "factory"), None);
        assert_eq!(bind("a/+/c", "a/b/c"), pairs(&[]));
        assert_eq!(bind("+/x", "a/x"), pairs(&[]));
        assert_eq!(bind("+/x", "$SYS/x"), None);
        assert_eq!(bind("#", "$SYS/x"), None);
        assert_eq!(bind("a/+empty/b", "a//b"), pairs(&[("empty", "")]));
    }

    #[test]
    fn bad_filters_say_why() {
        assert!(
            NamedFilter::parse("a/#rest/b")
                .unwrap_err()
                .contains("last")
        );
        assert!(NamedFilter::parse("a/b+/c").unwrap_err().contains("start"));
        assert!(
            NamedFilter::parse("a/+ma-chine")
                .unwrap_err()
                .contains("letters")
        );
        assert!(NamedFilter::parse("").is_err());
    }

    #[test]
    fn templates_use_both_spellings() {
        let t = Template::parse("out/$machine/{sensor}_raw/$/x{").err();
        assert!(t.unwrap().contains("never closed"));
        let t = Template::parse("out/$machine/{sensor}_raw/$/cost$").unwrap();
        assert_eq!(t.names().collect::<Vec<_>>(), ["machine", "sensor"]);
        let vars = [("machine", "m1"), ("sensor", "temp")];
        let lookup = |n: &str, out: &mut String| match vars.iter().find(|(k, _)| *k == n) {
            Some((_, v)) => {
                out.push_str(v);
                true
            }
            None => false,
        };
        assert_eq!(t.render(lookup).unwrap(), "out/m1/temp_raw/$/cost$");
        assert!(
            Template::parse("x/$other")
                .unwrap()
                .render(lookup)
                .unwrap_err()
                .contains("`other`")
        );
        assert_eq!(
            Template::parse("plain/topic").unwrap().as_literal(),
            Some("plain/topic")
        );
    }
}
