//! JSONata expressions of `transform`, `filter` and `setContextVars`, on jsonata-core.
//!
//! An expression is parsed once, when its mapping starts; each message is then evaluated with
//! `$` the payload, `$context` (`topic`, `vars`) and `$last(label?)` reading the chain's stash.
//! jsonata-core values are reference-counted and single-threaded, so they live only inside one
//! evaluation; what a chain keeps between messages is JSON text (see `Stash`).

use jsonata_core::ast::AstNode;
use jsonata_core::evaluator::{Context as Bindings, Evaluator, EvaluatorError, EvaluatorOptions};
use jsonata_core::value::JValue;

use crate::context::Context;
use crate::stash::Stash;

/// An evaluation longer than this is stopped with an error: a rule must not stall its mapping.
const TIMEOUT_MS: u64 = 1_000;
/// Longest sequence an expression may build (`[1..1e9]`), so one message cannot exhaust memory.
const MAX_SEQUENCE: usize = 1_000_000;
/// Widest `$pad` result, in characters. `$pad` is the one built-in whose result size is a number
/// in its arguments rather than a multiple of its input: `$pad('x', 4e8)` from a 16-byte payload
/// allocated 1.2 GiB before the time limit could say a word.
pub const MAX_PAD_WIDTH: usize = 1 << 20;
/// Longest string `&` may build, in bytes (four times the `$pad` width: as many characters of
/// up to four bytes). An expression can double a string on every step of a `$reduce` or a
/// recursion, and each step is fast enough that the time limit alone let one evaluation reach
/// gigabytes; checked after every `&`, a string stops growing at twice this at most.
pub const MAX_CONCATENATION_BYTES: usize = 4 << 20;
/// The host function every `&` result passes through (see [`bound_concatenation`]). Its name
/// cannot clash with a user's function: JSONata names do not start with an underscore pair
/// by convention, and the rule engine registers no other.
const CONCATENATION_GUARD: &str = "__ironbridge_concatenated";

#[derive(Debug)]
pub struct Expression {
    source: String,
    ast: AstNode,
    /// Only expressions that mention them pay for binding `$context` and `$last`.
    uses_context: bool,
    uses_last: bool,
    uses_pad: bool,
    uses_concatenation: bool,
}

impl Expression {
    pub fn compile(source: &str) -> Result<Expression, String> {
        let ast = jsonata_core::parser::parse(source)
            .map_err(|e| format!("not a valid JSONata expression: {e}"))?;
        let uses_concatenation = source.contains('&');
        let ast = match uses_concatenation {
            true => bound_concatenation(ast)?,
            false => ast,
        };
        Ok(Expression {
            source: source.to_string(),
            ast,
            uses_concatenation,
            uses_context: source.contains("$context"),
            uses_last: source.contains("$last"),
            uses_pad: source.contains("$pad"),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The result, or `None` when the expression yields nothing (JSONata's `undefined`).
    pub fn evaluate(
        &self,
        input: &JValue,
        context: &Context,
        stash: &Stash,
    ) -> Result<Option<JValue>, String> {
        let mut bindings = Bindings::new();
        if self.uses_context {
            bindings.bind("context".into(), context.to_jvalue());
        }
        let options = EvaluatorOptions {
            timeout_ms: Some(TIMEOUT_MS),
            max_sequence_length: Some(MAX_SEQUENCE),
            ..EvaluatorOptions::default()
        };
        let mut evaluator = Evaluator::with_options(bindings, options);
        if self.uses_pad {
            evaluator
                .register_fn_override("pad", bounded_pad)
                .map_err(|e| describe(&e))?;
        }
        if self.uses_concatenation {
            register_concatenation_guard(&mut evaluator).map_err(|e| describe(&e))?;
        }
        if self.uses_last {
            let stash = stash.clone();
            evaluator
                .register_fn("last", move |args: &[JValue]| stash.last(args))
                .map_err(|e| describe(&e))?;
        }
        match evaluator.evaluate(&self.ast, input) {
            Ok(JValue::Undefined) => Ok(None),
            Ok(value) => Ok(Some(value)),
            Err(e) => Err(describe(&e)),
        }
    }
}

/// Rewrites every `a & b` of a parsed expression into a call of the concatenation guard with
/// `a & b` as its argument, so each result is checked before the next step can grow it. The
/// operator itself is left to jsonata-core, so its semantics (how numbers, null and objects
/// are written) do not change. jsonata-core has no size limit of its own for strings; the
/// syntax tree is walked through its serde form, which names every kind of node the parser
/// makes, so no kind can be missed.
pub fn bound_concatenation(ast: AstNode) -> Result<AstNode, String> {
    fn wrap(node: &mut serde_json::Value) {
        match node {
            serde_json::Value::Array(items) => items.iter_mut().for_each(wrap),
            serde_json::Value::Object(fields) => {
                fields.values_mut().for_each(wrap);
                let is_concatenation = fields
                    .get("Binary")
                    .and_then(|binary| binary.get("op"))
                    .is_some_and(|op| op == "Concatenate");
                if is_concatenation {
                    let concatenation = std::mem::take(node);
                    *node = serde_json::json!({ "Function": {
                        "name": CONCATENATION_GUARD,
                        "args": [concatenation],
                        "is_builtin": true,
                    }});
                }
            }
            _ => {}
        }
    }
    let internal = |e: serde_json::Error| format!("internal error guarding `&`: {e}");
    let mut tree = serde_json::to_value(&ast).map_err(internal)?;
    wrap(&mut tree);
    serde_json::from_value(tree).map_err(internal)
}

/// Registers the function [`bound_concatenation`] calls: it passes a string through, or stops
/// the evaluation when the string is longer than [`MAX_CONCATENATION_BYTES`].
pub fn register_concatenation_guard(evaluator: &mut Evaluator) -> Result<(), EvaluatorError> {
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
    })
}

/// JSONata's `$pad(string, width, char?)` (pad to `|width|` characters with the repeated
/// `char`, default a space; a negative width pads on the left), refusing widths beyond
/// [`MAX_PAD_WIDTH`] before anything is allocated.
fn bounded_pad(args: &[JValue]) -> Result<JValue, EvaluatorError> {
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

fn describe(error: &EvaluatorError) -> String {
    error.to_string()
}

/// JSONata truthiness (`$boolean`): false, 0, "", null, empty arrays and objects, functions and
/// nothing at all are false; an array is true when one of its items is.
pub fn truthy(value: Option<&JValue>) -> bool {
    match value {
        None | Some(JValue::Null | JValue::Undefined) => false,
        Some(JValue::Bool(b)) => *b,
        Some(JValue::Number(n)) => *n != 0.0,
        Some(JValue::String(s)) => !s.is_empty(),
        Some(JValue::Array(items)) => items.iter().any(|item| truthy(Some(item))),
        Some(JValue::Object(map)) => !map.is_empty(),
        Some(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn eval(source: &str, input: &str) -> Result<Option<String>, String> {
        let expression = Expression::compile(source)?;
        let input: JValue = serde_json::from_str(input).map_err(|e| e.to_string())?;
        let mut context = Context::new("plant/m1/temp");
        context.set_var("machine", serde_json::json!("m1"));
        let mut stash = Stash::default();
        stash.put("prev", bytes::Bytes::from_static(br#"{"value": 20}"#));
        let result = expression.evaluate(&input, &context, &stash)?;
        Ok(result.map(|v| v.to_json_string().unwrap_or_default()))
    }

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

    #[test]
    fn sees_payload_context_and_stash() {
        let doc = r#"{"value": 21.5, "timestamp": 1763800000000}"#;
        assert_eq!(eval("value * 2", doc).unwrap().as_deref(), Some("43"));
        assert_eq!(
            eval("$context.topic & '/' & $context.vars.machine", doc)
                .unwrap()
                .as_deref(),
            Some("\"plant/m1/temp/m1\"")
        );
        assert_eq!(
            eval("value - $last('prev').value", doc).unwrap().as_deref(),
            Some("1.5")
        );
        assert_eq!(
            eval("$last()", doc).unwrap().as_deref(),
            Some("{\"value\":20}")
        );
        assert_eq!(
            eval("$exists($last('never'))", doc).unwrap().as_deref(),
            Some("false")
        );
        assert_eq!(eval("missing.path", doc).unwrap(), None);
        assert_eq!(
            eval("$fromMillis(timestamp)", doc).unwrap().as_deref(),
            Some("\"2025-11-22T08:26:40.000Z\"")
        );
    }

    #[test]
    fn now_is_the_current_time() {
        let at: f64 = eval("$toMillis($now())", "{}")
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as f64;
        assert!((at - clock).abs() < 5_000.0, "{at} vs {clock}");
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(
            Expression::compile("value +")
                .unwrap_err()
                .contains("S0207")
        );
        let err = eval("$number('abc') + {}", "{}").unwrap_err();
        assert!(!err.is_empty());
        let err = eval("$count([1..10000000])", "{}").unwrap_err();
        assert!(err.contains("D2015") || err.contains("sequence"), "{err}");
    }

    #[test]
    fn truthiness_follows_jsonata() {
        let t = |s: &str| truthy(Some(&serde_json::from_str::<JValue>(s).unwrap()));
        assert!(t("true") && t("1") && t("\"x\"") && t("[0, 1]") && t("{\"a\": 1}"));
        assert!(!t("false") && !t("0") && !t("\"\"") && !t("[0, false]") && !t("{}"));
        assert!(!t("null") && !truthy(None));
    }
}
