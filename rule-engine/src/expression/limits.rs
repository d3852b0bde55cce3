//! What one evaluation may build. jsonata-core bounds time and sequence length; strings and the
//! values built-ins turn into text have no bound of their own, and a few bytes of payload could
//! make them gigabytes (`$pad('x', 4e8)`, a string doubled by `&` in a `$reduce`, a million
//! references to one large string joined or written out). Each of those is checked here before
//! it can grow further, and an evaluation that goes beyond a bound stops with an error that
//! says which one, so its message is dropped like any failed rule.
//!
//! The checks are host functions the syntax tree is rewritten to call once, when an expression
//! is compiled; the built-ins and operators themselves stay jsonata-core's, so what they compute
//! does not change (the JSONata suite runs with the same rewrite).

use jsonata_core::ast::AstNode;
use jsonata_core::evaluator::{Evaluator, EvaluatorError};
use jsonata_core::value::JValue;

/// Widest `$pad` result, in characters. `$pad` is the one built-in whose result size is a number
/// in its arguments rather than a multiple of its input: `$pad('x', 4e8)` from a 16-byte payload
/// allocated 1.2 GiB before the time limit could say a word.
pub const MAX_PAD_WIDTH: usize = 1 << 20;
/// Longest string `&` may build, in bytes (four times the `$pad` width: as many characters of
/// up to four bytes). Checked after every `&`, a string stops growing at twice this at most.
pub const MAX_CONCATENATION_BYTES: usize = 4 << 20;
/// Most text a value may stand for, in bytes of its JSON form: the argument of `$join` and
/// `$string`, and an evaluation's result, which is published as JSON. Values share what they
/// repeat (a million references to one string cost a million pointers), so a small value can
/// stand for terabytes of text; it is measured before it is written out.
pub const MAX_VALUE_BYTES: usize = 16 << 20;

/// Host function that passes an `&` result through if it is within bounds.
const CONCATENATION_GUARD: &str = "__ironbridge_concatenated";
/// Host function that passes a value through if its text is within bounds.
const VALUE_GUARD: &str = "__ironbridge_sized";
/// Built-ins whose first argument becomes text in one allocation.
const TEXT_BUILDERS: [&str; 2] = ["join", "string"];

/// Rewrites the syntax tree so that every `a & b` result, and the first argument of `$join` and
/// `$string`, pass through a size guard; says whether anything was rewritten. The tree is walked
/// through its serde form, which names every kind of node the parser makes, so none is missed.
pub fn add_guards(ast: AstNode) -> Result<(AstNode, bool), String> {
    let internal = |e: serde_json::Error| format!("internal error adding size guards: {e}");
    let mut tree = serde_json::to_value(&ast).map_err(internal)?;
    let mut guarded = false;
    guard(&mut tree, &mut guarded);
    if !guarded {
        return Ok((ast, false));
    }
    Ok((serde_json::from_value(tree).map_err(internal)?, true))
}

fn guard(node: &mut serde_json::Value, guarded: &mut bool) {
    use serde_json::Value;
    match node {
        Value::Array(items) => items.iter_mut().for_each(|item| guard(item, guarded)),
        Value::Object(fields) => {
            fields.values_mut().for_each(|field| guard(field, guarded));
            if let Some(Value::Object(call)) = fields.get_mut("Function")
                && call.get("is_builtin") == Some(&Value::Bool(true))
                && call
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|name| TEXT_BUILDERS.contains(&name))
                && let Some(Value::Array(args)) = call.get_mut("args")
                && let Some(first) = args.first_mut()
            {
                *first = call_guard(VALUE_GUARD, std::mem::take(first));
                *guarded = true;
            }
            let is_concatenation = fields
                .get("Binary")
                .and_then(|binary| binary.get("op"))
                .is_some_and(|op| op == "Concatenate");
            if is_concatenation {
                *node = call_guard(CONCATENATION_GUARD, std::mem::take(node));
                *guarded = true;
            }
        }
        _ => {}
    }
}

fn call_guard(name: &str, argument: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "Function": { "name": name, "args": [argument], "is_builtin": true } })
}

/// Registers the host functions [`add_guards`] makes the tree call.
pub fn register_guards(evaluator: &mut Evaluator) -> Result<(), EvaluatorError> {
    evaluator.register_fn(CONCATENATION_GUARD, |args: &[JValue]| {
        let value = args.first().cloned().unwrap_or(JValue::Undefined);
        if let JValue::String(s) = &value
            && s.len() > MAX_CONCATENATION_BYTES
        {
            return Err(EvaluatorError::EvaluationError(format!(
                "`&` built a string of {} bytes, beyond the rule engine's limit of {MAX_CONCATENATION_BYTES}",
                s.len()
            )));
        }
        Ok(value)
    })?;
    evaluator.register_fn(VALUE_GUARD, |args: &[JValue]| {
        let value = args.first().cloned().unwrap_or(JValue::Undefined);
        if exceeds(&value, MAX_VALUE_BYTES) {
            return Err(EvaluatorError::EvaluationError(format!(
                "a value given to $join or $string stands for more than the rule engine's limit of {MAX_VALUE_BYTES} bytes of text"
            )));
        }
        Ok(value)
    })
}

/// Whether `value` written as JSON would take more than `limit` bytes (an upper estimate:
/// numbers count as their longest form, escapes are not counted). Stops counting at the limit,
/// so it costs at most as much as writing `limit` bytes, and walks with its own stack, so deep
/// values cannot overflow the thread's.
pub fn exceeds(value: &JValue, limit: usize) -> bool {
    let mut total = 0usize;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        total = total.saturating_add(match value {
            JValue::String(s) => s.len() + 2,
            JValue::Number(_) => 24,
            JValue::Bool(_) | JValue::Null => 5,
            JValue::Array(items) => {
                pending.extend(items.iter());
                2 + items.len()
            }
            JValue::Object(map) => {
                pending.extend(map.values());
                2 + map.keys().map(|key| key.len() + 4).sum::<usize>()
            }
            _ => 0,
        });
        if total > limit {
            return true;
        }
    }
    false
}

/// JSONata's `$pad(string, width, char?)` (pad to `|width|` characters with the repeated
/// `char`, default a space; a negative width pads on the left), refusing widths beyond
/// [`MAX_PAD_WIDTH`] before anything is allocated.
pub(super) fn bounded_pad(args: &[JValue]) -> Result<JValue, EvaluatorError> {
    let string = match args.first() {
        Some(JValue::String(s)) => s.clone(),
        Some(JValue::Null) => return Ok(JValue::Null),
        Some(JValue::Undefined) | None => return Ok(JValue::Undefined),
        Some(_) => {
            return Err(EvaluatorError::TypeError(
                "T0410: Argument 1 of function \"pad\" does not match function signature".into(),
            ));
        }
    };
    let width = match args.get(1) {
        Some(JValue::Number(n)) if n.is_finite() => n.trunc(),
        // Like jsonata-js: a missing or NaN width pads nothing.
        Some(JValue::Number(_) | JValue::Undefined) | None => return Ok(JValue::String(string)),
        Some(_) => {
            return Err(EvaluatorError::TypeError(
                "T0410: Argument 2 of function \"pad\" does not match function signature".into(),
            ));
        }
    };
    if width.abs() > MAX_PAD_WIDTH as f64 {
        return Err(EvaluatorError::EvaluationError(format!(
            "$pad to {width} characters is beyond the rule engine's limit of {MAX_PAD_WIDTH}"
        )));
    }
    let pad: Vec<char> = match args.get(2) {
        Some(JValue::String(s)) if !s.is_empty() => s.chars().collect(),
        _ => vec![' '],
    };
    let target = width.abs() as usize;
    let length = string.chars().count();
    if length >= target {
        return Ok(JValue::String(string));
    }
    let padding: String = pad.iter().cycle().take(target - length).collect();
    let padded = match width < 0.0 {
        true => format!("{padding}{string}"),
        false => format!("{string}{padding}"),
    };
    Ok(JValue::from(padded))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::expression::tests::eval;

    /// Scenario: a string doubled on every step of a `$reduce` reached gigabytes inside the
    /// time limit. Every `&` result is now checked, so the doubling stops at the limit.
    #[test]
    fn concatenation_is_bounded() {
        let error = eval(
            "$reduce([1..40], function($acc, $i) { $acc & $acc }, 'x')",
            "{}",
        )
        .unwrap_err();
        assert!(error.contains("beyond the rule engine's limit"), "{error}");
        let recursive = "($double := function($s, $n) { $n = 0 ? $s : $double($s & $s, $n - 1) }; $double('ab', n))";
        assert!(
            eval(recursive, r#"{"n": 40}"#)
                .unwrap_err()
                .contains("`&` built a string")
        );
        assert_eq!(
            eval(recursive, r#"{"n": 3}"#).unwrap().as_deref(),
            Some(r#""abababababababab""#),
            "below the limit nothing changes"
        );
    }

    /// The guard leaves `&` as JSONata defines it, wherever it appears.
    #[test]
    fn concatenation_keeps_its_meaning() {
        let cases = [
            ("'a' & 'b'", "{}", r#""ab""#),
            (
                "n & '/' & missing & '/' & null & '/' & true",
                r#"{"n": 1.5}"#,
                r#""1.5//null/true""#,
            ),
            ("o & ''", r#"{"o": {"k": [1, 2]}}"#, r#""{\"k\":[1,2]}""#),
            (
                "items.(name & '-' & id)",
                r#"{"items": [{"name": "a", "id": 1}, {"name": "b", "id": 2}]}"#,
                r#"["a-1","b-2"]"#,
            ),
            (
                "$map(xs, function($x) { $x & '!' })",
                r#"{"xs": ["p", "q"]}"#,
                r#"["p!","q!"]"#,
            ),
            ("{'k' & 1: 'v' & 2}", "{}", r#"{"k1":"v2"}"#),
            ("'a&b'", "{}", r#""a&b""#),
        ];
        for (source, input, expected) in cases {
            assert_eq!(
                eval(source, input).unwrap().as_deref(),
                Some(expected),
                "{source}"
            );
        }
    }

    /// Scenario: `$pad('x', n)` with n from a 16-byte payload (4e8) allocated 1.2 GiB in 2 s
    /// and the result was still published.
    #[test]
    fn pad_is_bounded_and_otherwise_jsonata_s() {
        let error = eval("$pad('x', n)", r#"{"n": 4e8}"#).unwrap_err();
        assert!(error.contains("beyond the rule engine's limit"), "{error}");
        assert!(eval("$pad('x', -n)", r#"{"n": 4e8}"#).is_err());
        let cases = [
            ("$pad('foo', 5)", r#""foo  ""#),
            ("$pad('foo', -5)", r#""  foo""#),
            ("$pad('foo', -5, '*')", r#""**foo""#),
            ("$pad('foo', 8, '-+')", r#""foo-+-+-""#),
            ("$pad('foobar', 3)", r#""foobar""#),
            ("$pad('ğ', 3, 'é')", r#""ğéé""#),
            ("$pad('foo', 5.7)", r#""foo  ""#),
            ("$pad('x', 1048576) ~> $length()", "1048576"),
        ];
        for (expression, expected) in cases {
            assert_eq!(
                eval(expression, "{}").unwrap().as_deref(),
                Some(expected),
                "{expression}"
            );
        }
        assert_eq!(eval("$pad(nothing, 5)", "{}").unwrap(), None);
    }

    /// Scenario: a million references to one string under the `&` limit, joined or written
    /// out, would ask for terabytes at once (and abort the process when the allocation fails).
    #[test]
    fn text_built_from_shared_values_is_bounded() {
        let many = |then: &str| {
            format!(
                "($s := $pad('x', 1000000); $many := $map([1..n], function($i) {{ $s }}); {then})"
            )
        };
        let join = eval(&many("$join($many)"), r#"{"n": 100000}"#).unwrap_err();
        assert!(join.contains("$join or $string"), "{join}");
        let string = eval(&many("$string($many)"), r#"{"n": 100000}"#).unwrap_err();
        assert!(string.contains("$join or $string"), "{string}");
        let result = eval(&many("$many"), r#"{"n": 100000}"#).unwrap_err();
        assert!(result.contains("the result is larger"), "{result}");
        assert_eq!(
            eval(&many("$length($join($many))"), r#"{"n": 3}"#)
                .unwrap()
                .as_deref(),
            Some("3000000"),
            "below the limit nothing changes"
        );
    }

    #[test]
    fn measuring_stops_at_the_limit() {
        let value: JValue =
            serde_json::from_str(r#"{"a": ["xy", 1, true, null], "b": {}}"#).unwrap();
        assert!(!exceeds(&value, 100));
        assert!(exceeds(&value, 10));
    }
}
