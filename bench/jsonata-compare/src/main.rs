//! `jsonata-compare conformance <core|rs> [first-case]` runs the official JSONata suite (from
//! `JSONATA_TEST_SUITE`, default the repository's `rule-engine/tests/data/jsonata-test-suite`)
//! and prints each outcome; a case that aborts the process (stack overflow) is found by
//! `compare.sh`, which restarts after it. `jsonata-compare speed <core-vm|core-tree|rs>
//! <expression> <n>` evaluates an expression `n` times on an endpoint-like payload, parse and
//! serialise included, and prints evaluations per second and resident-memory growth.
//!
//! Loading, judging and the jsonata-core run are the shipped conformance test's own
//! (`rule-engine/tests/jsonata_suite`), so both engines are measured by the same rules.

#[path = "../../../rule-engine/tests/jsonata_suite/mod.rs"]
mod jsonata_suite;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use jsonata_suite::{Case, Expected, Outcome, load_cases, passes, run_case, suite_dir};
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(1).as_str() {
        "conformance" => conformance(&arg(2), arg(3).parse().unwrap_or(0)),
        "speed" => speed(&arg(2), &arg(3), arg(4).parse().unwrap_or(1_000_000)),
        _ => eprintln!(
            "usage: jsonata-compare conformance <core|rs> [first] | speed <core-vm|core-tree|rs> <expression> <n>"
        ),
    }
}

fn conformance(engine: &str, first: usize) {
    let root = suite_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let cases: &'static [Case] = Vec::leak(load_cases(&root));
    let mut out = std::io::stdout();
    for (i, case) in cases.iter().enumerate().skip(first) {
        // Announce first: if the case aborts the process, the runner knows which one it was.
        let _ = writeln!(out, "{i} START {}", case.name);
        let _ = out.flush();
        let passed = match engine {
            "core" => run_case(case),
            _ => run_on_jsonata_rs(case),
        };
        let _ = writeln!(out, "{i} {}", if passed { "PASS" } else { "FAIL" });
        let _ = out.flush();
    }
}

/// One case on jsonata-rs, on a thread with a large stack and a time limit like `run_case`.
fn run_on_jsonata_rs(case: &'static Case) -> bool {
    if matches!(case.expected, Expected::Unloadable(_)) {
        return false;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(|| evaluate_on_jsonata_rs(case));
            let _ = tx.send(outcome.map(|o| passes(case, &o)).unwrap_or(false));
        });
    spawned.is_ok() && rx.recv_timeout(Duration::from_secs(30)).unwrap_or(false)
}

fn evaluate_on_jsonata_rs(case: &Case) -> Outcome {
    let arena = bumpalo::Bump::new();
    let expression = match jsonata_rs::JsonAta::new(&case.expr, &arena) {
        Ok(expression) => expression,
        Err(e) => return Outcome::Error(Some(e.code().to_string())),
    };
    let input = case.data.as_ref().map(Value::to_string);
    let bindings: std::collections::HashMap<&str, &Value> =
        case.bindings.iter().map(|(k, v)| (k.as_str(), v)).collect();
    match expression.evaluate(input.as_deref(), Some(&bindings)) {
        Ok(value) if value.is_undefined() => Outcome::Value(None),
        Ok(value) => Outcome::Value(serde_json::from_str(&value.serialize(false)).ok()),
        Err(e) => Outcome::Error(Some(e.code().to_string())),
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn speed(engine: &str, source: &str, n: usize) {
    use jsonata_core::evaluator::{Context, Evaluator};
    use jsonata_core::value::JValue;
    let payload = r#"{"timestamp":1763800000000,"value":21.5,"unit":"C","machine":{"id":"press-7","state":"running"}}"#;
    let before = rss_kib();
    let started = Instant::now();
    let mut bytes = 0usize;
    match engine {
        "core-vm" => {
            let expression = jsonata_core::Expression::compile(source).expect("compiles");
            for _ in 0..n {
                let data = JValue::from_json_str(payload).expect("json");
                let result = expression.evaluate(&data).expect("evaluates");
                bytes += result.to_json_string().unwrap_or_default().len();
            }
        }
        "core-tree" => {
            // As the rule engine does: a fresh evaluator with `$context` bound, per message.
            let ast = jsonata_core::parser::parse(source).expect("compiles");
            let context = r#"{"topic":"services/a/b","vars":{"machine":"press-7"}}"#;
            let context = JValue::from_json_str(context).expect("json");
            for _ in 0..n {
                let data = JValue::from_json_str(payload).expect("json");
                let mut bindings = Context::new();
                bindings.bind("context".into(), context.clone());
                let mut evaluator = Evaluator::with_context(bindings);
                let result = evaluator.evaluate(&ast, &data).expect("evaluates");
                bytes += result.to_json_string().unwrap_or_default().len();
            }
        }
        _ => {
            // jsonata-rs values live in an arena; a fresh arena per message is the only way to
            // give memory back.
            for _ in 0..n {
                let arena = bumpalo::Bump::new();
                let expression = jsonata_rs::JsonAta::new(source, &arena).expect("compiles");
                let result = expression.evaluate(Some(payload), None).expect("evaluates");
                bytes += result.serialize(false).len();
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{engine:10} {:>9.0} evaluations/s, resident memory +{} KiB after {n} ({bytes} bytes out)",
        n as f64 / seconds,
        rss_kib().saturating_sub(before)
    );
}
