//! JSONata expressions of `transform`, `filter` and `setContextVars`, on jsonata-core.
//!
//! An expression is parsed once, when its mapping starts; each message is then evaluated with
//! `$` the payload, `$context` (`topic`, `vars`) and `$last(label?)` reading the chain's stash.
//! jsonata-core values are reference-counted and single-threaded, so they live only inside one
//! evaluation; what a chain keeps between messages is JSON text (see `Stash`).

use jsonata_core::ast::AstNode;
use jsonata_core::evaluator::{Context as Bindings, Evaluator, EvaluatorError, EvaluatorOptions};

/// JSONata's value, which is also what chains compute with between rules: the rest of the
/// crate names it through this module, the only one that imports jsonata-core.
pub use jsonata_core::value::JValue;

use crate::context::Context;
use crate::stash::Stash;

mod limits;

pub use limits::{
    MAX_CONCATENATION_BYTES, MAX_PAD_WIDTH, MAX_VALUE_BYTES, add_guards, register_guards,
};

/// An evaluation longer than this is stopped with an error: a rule must not stall its mapping.
const TIMEOUT_MS: u64 = 1_000;
/// Longest sequence an expression may build (`[1..1e9]`), so one message cannot exhaust memory.
const MAX_SEQUENCE: usize = 1_000_000;
#[derive(Debug)]
pub struct Expression {
    source: String,
    ast: AstNode,
    /// Only expressions that mention them pay for binding `$context` and `$last`.
    uses_context: bool,
    uses_last: bool,
    uses_pad: bool,
    /// The syntax tree calls the size guards of [`limits`].
    uses_guards: bool,
}

impl Expression {
    pub fn compile(source: &str) -> Result<Expression, String> {
        let ast = jsonata_core::parser::parse(source)
            .map_err(|e| format!("not a valid JSONata expression: {e}"))?;
        let (ast, uses_guards) = add_guards(ast)?;
        Ok(Expression {
            source: source.to_string(),
            ast,
            uses_guards,
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
                .register_fn_override("pad", limits::bounded_pad)
                .map_err(|e| describe(&e))?;
        }
        if self.uses_guards {
            register_guards(&mut evaluator).map_err(|e| describe(&e))?;
        }
        if self.uses_last {
            let stash = stash.clone();
            evaluator
                .register_fn("last", move |args: &[JValue]| {
                    stash.last(args).map_err(EvaluatorError::EvaluationError)
                })
                .map_err(|e| describe(&e))?;
        }
        match evaluator.evaluate(&self.ast, input) {
            Ok(JValue::Undefined) => Ok(None),
            Ok(value) if limits::exceeds(&value, MAX_VALUE_BYTES) => Err(format!(
                "the result is larger than the rule engine's limit of {MAX_VALUE_BYTES} bytes"
            )),
            Ok(value) => Ok(Some(value)),
            Err(e) => Err(describe(&e)),
        }
    }
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

    pub(super) fn eval(source: &str, input: &str) -> Result<Option<String>, String> {
        let expression = Expression::compile(source)?;
        let input: JValue = serde_json::from_str(input).map_err(|e| e.to_string())?;
        let mut context = Context::new("plant/m1/temp");
        context.set_var("machine", serde_json::json!("m1"));
        let mut stash = Stash::default();
        stash.put("prev", bytes::Bytes::from_static(br#"{"value": 20}"#));
        let result = expression.evaluate(&input, &context, &stash)?;
        Ok(result.map(|v| v.to_json_string().unwrap_or_default()))
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
