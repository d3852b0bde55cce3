//! Install-time checks of rule chains: every JSONata expression compiles, every
//! option is in range, every label template parses. The rule engine compiles the same text again
//! when the mapping starts; nothing here runs an expression.

use std::collections::BTreeMap;

use crate::diagnostic::{Diagnostic, Pos, join};
use crate::model::{ParseFormat, Rule};
use crate::resolve::position_of;
use crate::topic_pattern::Template;

/// Checks a chain at `path` (`...rules`) and returns the context variables it sets, which a
/// publish topic may use.
pub(crate) fn check_rules(
    rules: &[Rule],
    path: &str,
    positions: &BTreeMap<String, Pos>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut context_vars = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let rule_path = format!("{path}[{i}]");
        let mut problem = |key: &str, message: String| {
            let path = join(&rule_path, key);
            diagnostics.push(Diagnostic::new(
                &path,
                position_of(positions, &path),
                message,
            ));
        };
        match rule {
            Rule::Transform(rule) => {
                if let Err(e) = check_expression(&rule.expression) {
                    problem("transform.expression", e);
                }
            }
            Rule::Filter(rule) => {
                if let Err(e) = check_expression(&rule.expression) {
                    problem("filter.expression", e);
                }
            }
            Rule::SetContextVars(rule) => {
                for (name, expression) in &rule.vars {
                    let key = format!("setContextVars.vars.{name}");
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        problem(
                            &key,
                            format!(
                                "`{name}`: a context variable name may only use letters, digits and `_`"
                            ),
                        );
                    }
                    if let Err(e) = check_expression(expression) {
                        problem(&key, e);
                    }
                    context_vars.push(name.clone());
                }
            }
            Rule::Cov(rule) => {
                if rule.key.is_empty() {
                    problem("cov.key", "name the payload key to watch".into());
                }
                if let Some(deadband) = rule.deadband
                    && !(deadband.is_finite() && deadband >= 0.0)
                {
                    problem(
                        "cov.deadband",
                        format!("expected a number 0 or more, got {deadband}"),
                    );
                }
            }
            Rule::Burst(rule) => {
                if rule.interval.is_none() && rule.max_size.is_none() {
                    problem(
                        "burst",
                        "give `interval` (ms), `maxSize` or both: a burst needs something that ends it"
                            .into(),
                    );
                }
                if rule.interval == Some(0) {
                    problem("burst.interval", "expected at least 1 ms".into());
                }
                if rule.max_size == Some(0) {
                    problem("burst.maxSize", "expected at least 1 message".into());
                }
            }
            Rule::Collect(rule) => {
                if let Some(label) = &rule.label
                    && let Err(e) = Template::parse(label)
                {
                    problem("collect.label", e);
                }
            }
            Rule::Stash(rule) => {
                if rule.label.is_empty() {
                    problem(
                        "stash.label",
                        "name the label `$last(\"label\")` reads".into(),
                    );
                }
            }
            Rule::Parse(rule) => {
                if ParseFormat::from_name(&rule.format).is_none() {
                    let known: Vec<String> = ParseFormat::ALL
                        .iter()
                        .map(|(_, n)| format!("`{n}`"))
                        .collect();
                    problem(
                        "parse.format",
                        format!(
                            "unknown value `{}`; expected one of {}",
                            rule.format,
                            known.join(", ")
                        ),
                    );
                }
            }
        }
    }
    context_vars
}

/// Compiles a JSONata expression and throws the result away; the error names what is wrong.
fn check_expression(expression: &str) -> Result<(), String> {
    jsonata_core::parser::parse(expression)
        .map(|_| ())
        .map_err(|e| format!("not a valid JSONata expression: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::{BurstRule, CovRule, ExpressionRule, StashRule};

    fn problems(rules: &[Rule]) -> Vec<String> {
        let mut diagnostics = Vec::new();
        check_rules(rules, "r", &BTreeMap::new(), &mut diagnostics);
        diagnostics.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn reports_each_bad_option_with_its_path() {
        let rules = [
            Rule::Transform(ExpressionRule {
                expression: "{\"a\": value *}".into(),
            }),
            Rule::Filter(ExpressionRule {
                expression: "value > 3".into(),
            }),
            Rule::Cov(CovRule {
                key: String::new(),
                deadband: Some(-1.0),
                deadband_mode: None,
            }),
            Rule::Burst(BurstRule {
                interval: None,
                max_size: None,
            }),
            Rule::Stash(StashRule {
                label: String::new(),
            }),
        ];
        let found = problems(&rules);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(found[0].starts_with("r[0].transform.expression: not a valid JSONata expression"));
        assert!(found[1].starts_with("r[2].cov.key"));
        assert!(found[2].starts_with("r[2].cov.deadband: expected a number 0 or more, got -1"));
        assert!(found[3].starts_with("r[3].burst: give `interval`"));
        assert!(found[4].starts_with("r[4].stash.label"));
    }
}
