//! A rule chain: the rules of a mapping entry or an endpoint, compiled once and
//! run in order on each message. Synchronous and free of I/O; the task that owns a chain feeds
//! it messages and the clock, and publishes what comes out.
//!
//! A message ends in one of three ways: it comes out (possibly changed), a rule holds or drops
//! it (filter, cov, burst), or a rule fails and it is dropped with a [`RuleError`]. A burst that
//! is emitted on its timer continues with the rules after it.

use std::fmt;

use bytes::Bytes;
use commissioning::model::{ParseFormat, Rule};
use commissioning::topic_pattern::Template;
use tokio::time::Instant;

use crate::burst::Burst;
use crate::collect::Collect;
use crate::context::Context;
use crate::cov::Cov;
use crate::expression::{Expression, truthy};
use crate::parse::parse;
use crate::payload::Payload;
use crate::stash::Stash;

/// A message entering the chain.
#[derive(Debug, Clone)]
pub struct Input {
    pub context: Context,
    /// What `collect` files the payload under: the subscription's label or the topic.
    pub label: String,
    pub payload: Bytes,
}

/// A message leaving the chain, with the context its publish topic is rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub context: Context,
    pub payload: Bytes,
}

/// Why a message was dropped: which rule failed and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// 0-based position in the chain; `None` when publishing after the last rule failed.
    pub rule: Option<usize>,
    pub kind: &'static str,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            Some(i) => write!(f, "rules[{i}] ({}): {}", self.kind, self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

enum Step {
    Parse(ParseFormat),
    Transform(Expression),
    Filter(Expression),
    SetContextVars(Vec<(String, Expression)>),
    Cov(Cov),
    Burst(Box<BurstStep>),
    Collect {
        label: Option<Template>,
        state: Collect,
    },
    Stash(String),
}

/// A burst and the context of its latest message, which a timed emission goes on with.
struct BurstStep {
    burst: Burst,
    latest: Option<(Context, String)>,
}

impl Step {
    fn kind(&self) -> &'static str {
        match self {
            Step::Parse(_) => "parse",
            Step::Transform(_) => "transform",
            Step::Filter(_) => "filter",
            Step::SetContextVars(_) => "setContextVars",
            Step::Cov(_) => "cov",
            Step::Burst(_) => "burst",
            Step::Collect { .. } => "collect",
            Step::Stash(_) => "stash",
        }
    }
}

pub struct Chain {
    steps: Vec<Step>,
    stash: Stash,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = self.steps.iter().map(Step::kind).collect();
        f.debug_struct("Chain").field("rules", &kinds).finish()
    }
}

impl Chain {
    /// Compiles every rule; the error names the first rule that cannot run.
    pub fn new(rules: &[Rule]) -> Result<Chain, String> {
        let steps = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| compile(rule).map_err(|e| format!("rules[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Chain {
            steps,
            stash: Stash::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs one message through the chain.
    pub fn process(&mut self, input: Input, now: Instant) -> Result<Option<Output>, RuleError> {
        let payload = Payload::from_bytes(input.payload);
        self.run(0, payload, input.context, input.label, now)
    }

    /// The earliest moment a burst wants to be emitted.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.steps
            .iter()
            .filter_map(|step| match step {
                Step::Burst(b) => b.burst.deadline(),
                _ => None,
            })
            .min()
    }

    /// Emits every burst whose interval has run out, each continuing with the rules after it.
    pub fn flush_due(&mut self, now: Instant) -> Vec<Result<Option<Output>, RuleError>> {
        let mut results = Vec::new();
        for i in 0..self.steps.len() {
            let Step::Burst(step) = &mut self.steps[i] else {
                continue;
            };
            let Some(array) = step.burst.flush_due(now) else {
                continue;
            };
            let (context, label) = step.latest.take().unwrap_or_default();
            results.push(self.run(i + 1, Payload::from_bytes(array), context, label, now));
        }
        results
    }

    fn run(
        &mut self,
        from: usize,
        mut payload: Payload,
        mut context: Context,
        label: String,
        now: Instant,
    ) -> Result<Option<Output>, RuleError> {
        for i in from..self.steps.len() {
            let step = &mut self.steps[i];
            let kind = step.kind();
            let fail = |message: String| RuleError {
                rule: Some(i),
                kind,
                message,
            };
            match step {
                Step::Parse(format) => payload = parse(*format, &mut payload).map_err(fail)?,
                Step::Transform(expression) => {
                    let input = payload.value().map_err(fail)?;
                    match expression
                        .evaluate(input, &context, &self.stash)
                        .map_err(fail)?
                    {
                        Some(value) => payload = Payload::from_value(value),
                        None => {
                            return Err(fail(
                                "the expression gave no value (undefined), so there is nothing to publish"
                                    .into(),
                            ));
                        }
                    }
                }
                Step::Filter(expression) => {
                    let input = payload.value().map_err(fail)?;
                    let verdict = expression
                        .evaluate(input, &context, &self.stash)
                        .map_err(fail)?;
                    if !truthy(verdict.as_ref()) {
                        return Ok(None);
                    }
                }
                Step::SetContextVars(vars) => {
                    for (name, expression) in vars.iter() {
                        let input = payload.value().map_err(fail)?;
                        match expression
                            .evaluate(input, &context, &self.stash)
                            .map_err(fail)?
                        {
                            Some(value) => {
                                let json = serde_json::to_value(&value)
                                    .map_err(|e| fail(format!("`{name}`: {e}")))?;
                                context.set_var(name, json);
                            }
                            None => {
                                context.vars.remove(name.as_str());
                            }
                        }
                    }
                }
                Step::Cov(cov) => {
                    let input = payload.value().map_err(fail)?;
                    if !cov.passes(input).map_err(fail)? {
                        return Ok(None);
                    }
                }
                Step::Burst(step) => {
                    let item = payload.json_bytes().map_err(fail)?;
                    match step.burst.push(item, now) {
                        Some(array) => {
                            step.latest = None;
                            payload = Payload::from_bytes(array);
                        }
                        None => {
                            step.latest = Some((context, label));
                            return Ok(None);
                        }
                    }
                }
                Step::Collect { label: own, state } => {
                    let item = payload.json_bytes().map_err(fail)?;
                    let key = match own {
                        Some(template) => context.render(template).map_err(fail)?,
                        None => label.clone(),
                    };
                    payload = Payload::from_bytes(state.add(key, item).map_err(fail)?);
                }
                Step::Stash(stash_label) => {
                    let item = payload.json_bytes().map_err(fail)?;
                    self.stash.put(stash_label, item);
                }
            }
        }
        let payload = payload.into_bytes().map_err(|message| RuleError {
            rule: None,
            kind: "publish",
            message,
        })?;
        Ok(Some(Output { context, payload }))
    }
}

fn compile(rule: &Rule) -> Result<Step, String> {
    Ok(match rule {
        Rule::Parse(rule) => Step::Parse(
            ParseFormat::from_name(&rule.format)
                .ok_or_else(|| format!("`{}` is not a parse format", rule.format))?,
        ),
        Rule::Transform(rule) => Step::Transform(Expression::compile(&rule.expression)?),
        Rule::Filter(rule) => Step::Filter(Expression::compile(&rule.expression)?),
        Rule::SetContextVars(rule) => Step::SetContextVars(
            rule.vars
                .iter()
                .map(|(name, source)| {
                    Expression::compile(source)
                        .map(|e| (name.clone(), e))
                        .map_err(|e| format!("`{name}`: {e}"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Rule::Cov(rule) => Step::Cov(Cov::new(rule)),
        Rule::Burst(rule) => Step::Burst(Box::new(BurstStep {
            burst: Burst::new(rule),
            latest: None,
        })),
        Rule::Collect(rule) => Step::Collect {
            label: rule.label.as_deref().map(Template::parse).transpose()?,
            state: Collect::default(),
        },
        Rule::Stash(rule) => Step::Stash(rule.label.clone()),
    })
}
