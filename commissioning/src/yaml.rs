//! Loads YAML into a tree that keeps every tag and every position. saphyr parses and expands
//! aliases (`*name`, within its node budget against "billion laughs"); this module converts its
//! nodes into ours (string keys, duplicate keys refused) and applies merge keys (`<<`).

use std::collections::HashSet;

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

use crate::diagnostic::{Diagnostic, Pos, index, join};

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in file order, each with its own position.
    Map(Vec<(Key, Node)>),
    /// `!ref x`, `!sub '...'`, `!merge [...]` or an unknown tag (the name without `!`).
    Tagged(String, Box<Node>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// How the value reads in a message: `string "5o2"`, `a map`.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "null".into(),
            Value::Bool(b) => format!("boolean {b}"),
            Value::Int(i) => format!("integer {i}"),
            Value::Float(f) => format!("number {f}"),
            Value::Str(s) => format!("string {s:?}"),
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a map".into(),
            Value::Tagged(tag, _) => format!("!{tag}"),
        }
    }
}

/// The deepest nesting of maps and lists accepted. Real commissioning files stay under 15; the
/// limit keeps hostile input from exhausting the stack of the recursive steps that follow.
pub const MAX_DEPTH: usize = 64;

/// Parses one YAML document. Syntax errors and unsupported constructs come back as diagnostics.
pub fn parse(source: &str) -> Result<Node, Vec<Diagnostic>> {
    check_depth(source)?;
    let docs = MarkedYamlOwned::load_from_str(source).map_err(|e| {
        let marker = e.marker();
        vec![Diagnostic::new(
            "",
            Some(Pos {
                line: marker.line(),
                column: marker.col() + 1,
            }),
            format!("YAML syntax error: {}", e.info()),
        )]
    })?;
    let mut docs = docs.into_iter();
    let Some(doc) = docs.next() else {
        return Err(vec![Diagnostic::new("", None, "the file is empty")]);
    };
    if let Some(extra) = docs.next() {
        return Err(vec![Diagnostic::new(
            "",
            Some(pos_of(&extra)),
            "one commissioning file holds one YAML document; remove the `---` separator",
        )]);
    }
    let mut diagnostics = Vec::new();
    let node = convert(doc, "", &mut diagnostics);
    if diagnostics.is_empty() {
        Ok(node)
    } else {
        Err(diagnostics)
    }
}

/// Walks the parser's event stream (flat, no recursion) and refuses documents nested deeper
/// than [`MAX_DEPTH`] before any tree is built.
fn check_depth(source: &str) -> Result<(), Vec<Diagnostic>> {
    use saphyr_parser::{Event, Parser};
    let mut depth = 0usize;
    for event in Parser::new_from_str(source) {
        // Syntax errors are reported by the loader, with its message.
        let Ok((event, span)) = event else {
            return Ok(());
        };
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(vec![Diagnostic::new(
                        "",
                        Some(Pos {
                            line: span.start.line(),
                            column: span.start.col() + 1,
                        }),
                        format!("maps and lists are nested deeper than {MAX_DEPTH} levels"),
                    )]);
                }
            }
            Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn pos_of(node: &MarkedYamlOwned) -> Pos {
    Pos {
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
    }
}

fn convert(node: MarkedYamlOwned, path: &str, diagnostics: &mut Vec<Diagnostic>) -> Node {
    let pos = pos_of(&node);
    let value = match node.data {
        YamlDataOwned::Value(scalar) => match scalar {
            ScalarOwned::Null => Value::Null,
            ScalarOwned::Boolean(b) => Value::Bool(b),
            ScalarOwned::Integer(i) => Value::Int(i),
            ScalarOwned::FloatingPoint(f) => Value::Float(f.into_inner()),
            ScalarOwned::String(s) => Value::Str(s),
        },
        YamlDataOwned::Representation(text, _, _) => Value::Str(text),
        YamlDataOwned::Sequence(items) => Value::Seq(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| convert(item, &index(path, i), diagnostics))
                .collect(),
        ),
        YamlDataOwned::Mapping(entries) => {
            let mut out: Vec<(Key, Node)> = Vec::with_capacity(entries.len());
            let mut merge: Option<(usize, Node)> = None;
            for (key, value) in entries {
                let key_pos = pos_of(&key);
                let name = match key.data {
                    YamlDataOwned::Value(ScalarOwned::String(s)) => s,
                    YamlDataOwned::Value(ScalarOwned::Integer(i)) => i.to_string(),
                    YamlDataOwned::Value(ScalarOwned::Boolean(b)) => b.to_string(),
                    _ => {
                        diagnostics.push(Diagnostic::new(
                            path,
                            Some(key_pos),
                            "map keys must be plain text",
                        ));
                        continue;
                    }
                };
                let child = convert(value, &join(path, &name), diagnostics);
                if name == MERGE_KEY {
                    // Merged where it stands, once every local key is known.
                    merge = Some((out.len(), child));
                    continue;
                }
                out.push((Key { name, pos: key_pos }, child));
            }
            if let Some((at, sources)) = merge {
                merge_into(&mut out, at, sources, path, diagnostics);
            }
            Value::Map(out)
        }
        YamlDataOwned::Tagged(tag, inner) => {
            let inner = convert(*inner, path, diagnostics);
            if tag.handle == "!" {
                Value::Tagged(tag.suffix, Box::new(inner))
            } else if tag.is_yaml_core_schema() {
                // `!!str 5` and friends: the parser already applied the core schema.
                return inner;
            } else {
                Value::Tagged(format!("{}{}", tag.handle, tag.suffix), Box::new(inner))
            }
        }
        YamlDataOwned::Alias(_) => {
            diagnostics.push(Diagnostic::new(
                path,
                Some(pos),
                "a YAML alias (*name) that names no anchor (&name) before it",
            ));
            Value::Null
        }
        YamlDataOwned::BadValue => {
            diagnostics.push(Diagnostic::new(path, Some(pos), "unreadable value"));
            Value::Null
        }
    };
    Node { value, pos }
}

/// YAML 1.1's merge key (<https://yaml.org/type/merge.html>): `<<: *defaults` inserts the
/// entries of an anchored map, `<<: [*a, *b]` those of several. YAML 1.2 dropped it, yet the
/// YAML loaders of JavaScript (js-yaml), Python and Java still read it by default, so files
/// written for other tools use it to share endpoint settings.
const MERGE_KEY: &str = "<<";

/// Inserts the entries of the merged map(s) at `at`: a key of the map itself wins over a
/// merged one, and among merged maps the earlier wins, as the merge key's definition says.
/// Merged entries keep their own positions, so a diagnostic about one points at the anchor.
fn merge_into(
    out: &mut Vec<(Key, Node)>,
    at: usize,
    sources: Node,
    path: &str,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let maps = match sources.value {
        Value::Map(entries) => vec![entries],
        Value::Seq(items) => {
            let mut maps = Vec::with_capacity(items.len());
            for item in items {
                match item.value {
                    Value::Map(entries) => maps.push(entries),
                    _ => diagnostics.push(Diagnostic::new(
                        join(path, MERGE_KEY),
                        Some(item.pos),
                        format!("`<<` merges maps; this list holds {}", item.describe()),
                    )),
                }
            }
            maps
        }
        _ => {
            diagnostics.push(Diagnostic::new(
                join(path, MERGE_KEY),
                Some(sources.pos),
                format!(
                    "`<<` merges a map or a list of maps (`<<: *defaults`), not {}",
                    sources.describe()
                ),
            ));
            return;
        }
    };
    // A set, not a scan per key: a hostile file may merge a map of thousands of keys.
    let mut taken: HashSet<String> = out.iter().map(|(k, _)| k.name.clone()).collect();
    let merged: Vec<(Key, Node)> = maps
        .into_iter()
        .flatten()
        .filter(|(key, _)| taken.insert(key.name.clone()))
        .collect();
    out.splice(at..at, merged);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_tags_and_positions() {
        let node = parse("a: !ref foo\nb:\n  c: !sub 'x ${y}'\n").expect("valid");
        let a = node.get("a").expect("a");
        assert_eq!(a.pos, Pos { line: 1, column: 4 });
        assert!(
            matches!(&a.value, Value::Tagged(t, inner) if t == "ref" && inner.value == Value::Str("foo".into()))
        );
        let c = node.get("b").and_then(|b| b.get("c")).expect("c");
        assert_eq!(c.pos.line, 3);
    }

    #[test]
    fn syntax_errors_and_duplicates_are_diagnostics() {
        let errors = parse("a: [1,\n b: c").expect_err("invalid");
        assert!(
            errors[0].message.starts_with("YAML syntax error"),
            "{errors:?}"
        );
        assert!(errors[0].pos.is_some());
        let errors = parse("a: 1\na: 2\n").expect_err("duplicate");
        assert!(errors[0].to_string().contains("line"), "{errors:?}");
        assert!(parse("").is_err());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn aliases_repeat_what_their_anchor_holds() {
        let node = parse("a: &x {b: 1}\nc: *x\n").expect("valid");
        assert_eq!(
            node.get("c").and_then(|c| c.get("b")).map(|b| &b.value),
            Some(&Value::Int(1))
        );
    }

    fn keys(node: &Node) -> Vec<(&str, &Value)> {
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.name.as_str(), &v.value))
                .collect(),
            other => panic!("not a map: {other:?}"),
        }
    }

    /// The examples of <https://yaml.org/type/merge.html>: all four maps are equal.
    #[test]
    fn merge_keys_follow_the_yaml_definition() {
        let file = "\
anchors:
  - &CENTER { x: 1, y: 2 }
  - &LEFT { x: 0, y: 2 }
  - &BIG { r: 10 }
  - &SMALL { r: 1 }
explicit: { x: 1, y: 2, r: 10, label: center/big }
one: { <<: *CENTER, r: 10, label: center/big }
several: { <<: [*CENTER, *BIG], label: center/big }
override: { <<: [*BIG, *LEFT, *SMALL], x: 1, label: center/big }
";
        let node = parse(file).expect("valid");
        let sorted = |name: &str| {
            let mut entries = keys(node.get(name).expect(name));
            entries.sort_by_key(|(k, _)| *k);
            entries
        };
        for name in ["one", "several", "override"] {
            assert_eq!(sorted(name), sorted("explicit"), "{name}");
        }
    }

    #[test]
    fn merged_keys_stand_where_the_merge_key_stands_and_keep_their_positions() {
        let node = parse(
            "base: &base\n  fc: 3\n  length: 1\nep:\n  address: 10\n  <<: *base\n  length: 2\n",
        )
        .expect("valid");
        let ep = node.get("ep").expect("ep");
        assert_eq!(
            keys(ep),
            [
                ("address", &Value::Int(10)),
                ("fc", &Value::Int(3)),
                ("length", &Value::Int(2))
            ]
        );
        assert_eq!(ep.get("fc").map(|fc| fc.pos.line), Some(2), "at the anchor");
    }

    #[test]
    fn a_merge_of_anything_but_maps_is_a_diagnostic() {
        for (file, expected) in [
            ("a:\n  <<: 5\n", "`<<` merges a map or a list of maps"),
            (
                "b: &b [1]\na:\n  <<: [*b]\n",
                "`<<` merges maps; this list holds a list",
            ),
        ] {
            let errors = parse(file).expect_err(file);
            assert!(errors[0].message.starts_with(expected), "{errors:?}");
            assert_eq!(errors[0].path, "a.<<");
        }
    }

    /// Guards against a stack overflow: a file with 3,000 nested block maps crashed the
    /// process before the depth check existed.
    #[test]
    fn deep_nesting_is_refused_before_building_a_tree() {
        let deep: String = (0..3000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        let errors = parse(&deep).expect_err("too deep");
        assert!(
            errors[0].message.contains("nested deeper than 64"),
            "{errors:?}"
        );
        let flow = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&flow).is_err());
        let ok: String = (0..20).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(parse(&ok).is_ok());
    }
}
