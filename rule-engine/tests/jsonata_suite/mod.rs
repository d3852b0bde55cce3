//! The official JSONata test suite as data: loading its cases, running one on jsonata-core the
//! way the rule engine evaluates (one parse, the tree-walking evaluator with bindings), and
//! judging the outcome. Shared by `jsonata_conformance.rs` and `bench/jsonata-compare`, which
//! includes this file by path.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonata_core::evaluator::{Context, Evaluator, EvaluatorOptions};
use jsonata_core::value::JValue;
use serde_json::Value;

/// `JSONATA_TEST_SUITE` if set, else the copy in the repository at `repository`
/// (`rule-engine/tests/data/jsonata-test-suite`, MIT, with its licence).
pub fn suite_dir(repository: &Path) -> PathBuf {
    match std::env::var_os("JSONATA_TEST_SUITE") {
        Some(dir) => PathBuf::from(dir),
        None => repository.join("rule-engine/tests/data/jsonata-test-suite"),
    }
}

pub struct Case {
    pub name: String,
    pub group: String,
    pub expr: String,
    pub data: Option<Value>,
    pub bindings: serde_json::Map<String, Value>,
    pub expected: Expected,
    pub unordered: bool,
    pub timelimit: Option<u64>,
    pub depth: Option<usize>,
}

pub enum Expected {
    Value(Value),
    Undefined,
    ErrorCode(String),
    /// The case file itself cannot be read: it holds a lone UTF-16 surrogate, which no Rust
    /// string can.
    Unloadable(String),
}

pub fn load_cases(root: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut groups: Vec<PathBuf> = std::fs::read_dir(root.join("groups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    groups.sort();
    for group_dir in groups {
        let group = group_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&group_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for file in files {
            let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&file).unwrap();
            let parsed: Value = match serde_json::from_str(&text) {
                Ok(parsed) => parsed,
                Err(e) => {
                    cases.push(Case {
                        name: format!("{group}/{file_name}"),
                        group: group.clone(),
                        expr: String::new(),
                        data: None,
                        bindings: Default::default(),
                        expected: Expected::Unloadable(e.to_string()),
                        unordered: false,
                        timelimit: None,
                        depth: None,
                    });
                    continue;
                }
            };
            let items = match parsed {
                Value::Array(items) => items,
                single => vec![single],
            };
            for (i, case) in items.into_iter().enumerate() {
                cases.push(read_case(root, &group_dir, &group, &file_name, i, case));
            }
        }
    }
    cases
}

fn read_case(
    root: &Path,
    group_dir: &Path,
    group: &str,
    file_name: &str,
    index: usize,
    case: Value,
) -> Case {
    let expr = match (case.get("expr"), case.get("expr-file")) {
        (Some(Value::String(expr)), _) => expr.clone(),
        (_, Some(Value::String(file))) => std::fs::read_to_string(group_dir.join(file)).unwrap(),
        _ => panic!("{group}/{file_name}: no expression"),
    };
    let data = match (case.get("data"), case.get("dataset")) {
        (Some(data), _) => Some(data.clone()),
        (None, Some(Value::String(dataset))) => {
            let path = root.join("datasets").join(format!("{dataset}.json"));
            Some(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
        }
        _ => None,
    };
    let code = case
        .get("code")
        .or_else(|| case.get("error").and_then(|e| e.get("code")));
    let expected = if let Some(code) = code {
        Expected::ErrorCode(code.as_str().unwrap().to_string())
    } else if let Some(result) = case.get("result") {
        Expected::Value(result.clone())
    } else {
        Expected::Undefined
    };
    Case {
        name: format!("{group}/{file_name}#{index}"),
        group: group.to_string(),
        expr,
        data,
        bindings: case
            .get("bindings")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        expected,
        unordered: case.get("unordered") == Some(&Value::Bool(true)),
        timelimit: case.get("timelimit").and_then(Value::as_u64),
        depth: case
            .get("depth")
            .and_then(Value::as_u64)
            .map(|d| d as usize),
    }
}

pub enum Outcome {
    Value(Option<Value>),
    Error(Option<String>),
}

pub fn evaluate(case: &Case) -> Outcome {
    let ast = match jsonata_core::parser::parse(&case.expr) {
        Ok(ast) => ast,
        Err(e) => return Outcome::Error(error_code(&e.to_string())),
    };
    // As the rule engine evaluates: `&` results and what `$join` and `$string` write out pass
    // size guards, which must not change what any case computes.
    let Ok((ast, _)) = rule_engine::expression::add_guards(ast) else {
        return Outcome::Error(None);
    };
    let mut bindings = Context::new();
    for (name, value) in &case.bindings {
        bindings.bind(name.clone(), JValue::from(value.clone()));
    }
    let options = EvaluatorOptions {
        timeout_ms: case.timelimit,
        max_stack_depth: case.depth,
        ..EvaluatorOptions::default()
    };
    let input = case.data.clone().map_or(JValue::Undefined, JValue::from);
    let mut evaluator = Evaluator::with_options(bindings, options);
    if rule_engine::expression::register_guards(&mut evaluator).is_err() {
        return Outcome::Error(None);
    }
    match evaluator.evaluate(&ast, &input) {
        Ok(JValue::Undefined) => Outcome::Value(None),
        Ok(value) => Outcome::Value(
            value
                .to_json_string()
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok()),
        ),
        Err(e) => {
            let code = e
                .code()
                .map(str::to_string)
                .or_else(|| error_code(&e.to_string()));
            // The suite's own runner raises U1001 when its depth or time box is exceeded;
            // jsonata-core names the same two limits D1011 (depth) and D1012 (time).
            let boxed = case.depth.is_some() || case.timelimit.is_some();
            Outcome::Error(match code.as_deref() {
                Some("D1011" | "D1012") if boxed => Some("U1001".into()),
                _ => code,
            })
        }
    }
}

/// The JSONata error code (`S0207`, `T2001`, ...) in a message.
fn error_code(message: &str) -> Option<String> {
    message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|word| {
            word.len() == 5
                && word.starts_with(|c: char| c.is_ascii_uppercase())
                && word[1..].chars().all(|c| c.is_ascii_digit())
        })
        .map(str::to_string)
}

/// Deep equality with numbers compared as numbers (JSON `1` and `1.0` are the same value) and
/// a relative tolerance for the last bits of floating-point results.
fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        _ => expected == actual,
    }
}

pub fn passes(case: &Case, outcome: &Outcome) -> bool {
    match (&case.expected, outcome) {
        (Expected::Value(Value::Array(want)), Outcome::Value(Some(Value::Array(got))))
            if case.unordered =>
        {
            want.len() == got.len() && want.iter().all(|w| got.iter().any(|g| same(w, g)))
        }
        (Expected::Value(want), Outcome::Value(Some(got))) => same(want, got),
        (Expected::Undefined, Outcome::Value(None)) => true,
        (Expected::ErrorCode(want), Outcome::Error(Some(got))) => want == got,
        _ => false,
    }
}

/// Runs one case on a thread with a large stack (deep-recursion cases) and a time limit, so a
/// case that hangs or panics is a failure rather than the end of the run.
pub fn run_case(case: &'static Case) -> bool {
    if matches!(case.expected, Expected::Unloadable(_)) {
        return false;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(|| evaluate(case));
            let _ = tx.send(outcome.map(|o| passes(case, &o)).unwrap_or(false));
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(30)).unwrap_or(false)
}
