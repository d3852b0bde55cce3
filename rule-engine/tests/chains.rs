//! Rule chains as a mapping runs them, without a broker: each test feeds messages (and the
//! clock, for bursts) and reads what comes out. One table per rule with its edge cases, then
//! chains that combine rules.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use commissioning::model::Rule;
use rule_engine::context::Context;
use rule_engine::{Chain, Input};
use serde_json::{Value, json};
use tokio::time::Instant;

fn chain(rules: Value) -> Chain {
    let rules: Vec<Rule> = serde_json::from_value(rules).unwrap();
    Chain::new(&rules).unwrap()
}

fn input(topic: &str, payload: &str) -> Input {
    Input {
        context: Context::new(topic),
        label: topic.to_string(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

/// Feeds one message; `Ok(None)` when the chain held or dropped it, `Err` when a rule failed.
fn feed(chain: &mut Chain, topic: &str, payload: &str) -> Result<Option<String>, String> {
    feed_at(chain, topic, payload, Instant::now())
}

fn feed_at(
    chain: &mut Chain,
    topic: &str,
    payload: &str,
    now: Instant,
) -> Result<Option<String>, String> {
    chain
        .process(input(topic, payload), now)
        .map(|out| out.map(|o| String::from_utf8(o.payload.to_vec()).unwrap()))
        .map_err(|e| e.to_string())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn transform_table() {
    let cases = [
        (
            "unit conversion",
            "{\"fahrenheit\": $round(value * 1.8 + 32, 1)}",
            r#"{"value": 21.5}"#,
            json!({"fahrenheit": 70.7}),
        ),
        (
            "context topic and vars",
            "{\"from\": $context.topic, \"v\": value}",
            r#"{"value": 1}"#,
            json!({"from": "plant/m1", "v": 1}),
        ),
        (
            "merge and lookup",
            "$merge([$, {\"unit\": $lookup({\"t\": \"C\"}, \"t\")}])",
            r#"{"value": 1}"#,
            json!({"value": 1, "unit": "C"}),
        ),
        (
            "conditional",
            "value > 100 ? \"alarm\" : \"ok\"",
            r#"{"value": 150}"#,
            json!("alarm"),
        ),
        (
            "number and string",
            "$string($number(raw) + 1)",
            r#"{"raw": "41"}"#,
            json!("42"),
        ),
        (
            "array constructor over a path",
            "[items.value]",
            r#"{"items": [{"value": 1}, {"value": 2}]}"#,
            json!([1, 2]),
        ),
    ];
    for (name, expression, payload, expected) in cases {
        let mut c = chain(json!([{"transform": {"expression": expression}}]));
        let out = feed(&mut c, "plant/m1", payload).unwrap().unwrap();
        assert_eq!(json_of(&out), expected, "{name}");
    }
}

#[test]
fn transform_failures_drop_only_that_message() {
    let mut c = chain(json!([{"transform": {"expression": "{\"v\": value * 2}"}}]));
    let not_json = feed(&mut c, "t", "not json").unwrap_err();
    assert!(
        not_json.contains("rules[0] (transform): the payload is not JSON"),
        "{not_json}"
    );
    let type_error = feed(&mut c, "t", r#"{"value": "x"}"#).unwrap_err();
    assert!(type_error.contains("rules[0] (transform)"), "{type_error}");
    // A missing field leaves it out of the object; an expression that gives nothing at all
    // has nothing to publish.
    assert_eq!(
        feed(&mut c, "t", r#"{"other": 1}"#).unwrap().as_deref(),
        Some("{}")
    );
    let mut bare = chain(json!([{"transform": {"expression": "value"}}]));
    let undefined = feed(&mut bare, "t", r#"{"other": 1}"#).unwrap_err();
    assert!(undefined.contains("no value (undefined)"), "{undefined}");
    // The chain is unharmed: the next good message goes through.
    assert_eq!(
        feed(&mut c, "t", r#"{"value": 2}"#).unwrap().unwrap(),
        r#"{"v":4}"#
    );
}

#[test]
fn filter_table() {
    let cases: [(&str, &str, bool); 8] = [
        ("value > 10", r#"{"value": 11}"#, true),
        ("value > 10", r#"{"value": 10}"#, false),
        ("state = 'running'", r#"{"state": "running"}"#, true),
        ("missing.path", r#"{"value": 1}"#, false),
        ("items", r#"{"items": []}"#, false),
        ("items", r#"{"items": [0, 3]}"#, true),
        ("$exists(alarm)", r#"{"alarm": null}"#, true),
        ("$contains($context.topic, 'line2')", r#"{}"#, false),
    ];
    for (expression, payload, passes) in cases {
        let mut c = chain(json!([{"filter": {"expression": expression}}]));
        let out = feed(&mut c, "plant/line1/m1", payload).unwrap();
        assert_eq!(out.is_some(), passes, "{expression} on {payload}");
    }
}

#[test]
fn unchanged_payloads_leave_byte_for_byte() {
    // filter, cov and stash only read: the bytes that come out are the bytes that came in,
    // spacing and key order included.
    let payload = "{ \"value\" : 5,\n  \"b\": [1, 2.50] }";
    let mut c = chain(json!([
        {"filter": {"expression": "value > 1"}},
        {"cov": {"key": "value"}},
        {"stash": {"label": "seen"}},
    ]));
    assert_eq!(
        feed(&mut c, "t", payload).unwrap().as_deref(),
        Some(payload)
    );
    let mut empty = chain(json!([]));
    assert_eq!(
        feed(&mut empty, "t", "\u{1}raw\u{2}").unwrap().as_deref(),
        Some("\u{1}raw\u{2}")
    );
}

#[test]
fn set_context_vars_feed_later_rules() {
    let mut c = chain(json!([
        {"setContextVars": {"vars": {"machine": "machineId", "scaled": "value / 10"}}},
        {"transform": {"expression": "{\"m\": $context.vars.machine, \"v\": $context.vars.scaled}"}},
    ]));
    let out = feed(&mut c, "t", r#"{"machineId": "press-7", "value": 125}"#)
        .unwrap()
        .unwrap();
    assert_eq!(json_of(&out), json!({"m": "press-7", "v": 12.5}));
}

#[test]
fn cov_in_a_chain_first_message_and_deadbands() {
    let mut absolute = chain(json!([{"cov": {"key": "value", "deadband": 0.5}}]));
    let outs: Vec<bool> = ["1.0", "1.3", "1.6", "1.2", "1.0"]
        .iter()
        .map(|v| {
            feed(&mut absolute, "t", &format!("{{\"value\": {v}}}"))
                .unwrap()
                .is_some()
        })
        .collect();
    assert_eq!(
        outs,
        [true, false, true, false, true],
        "absolute deadband 0.5"
    );

    let mut relative =
        chain(json!([{"cov": {"key": "value", "deadband": 10, "deadbandMode": "relative"}}]));
    let outs: Vec<bool> = ["0", "0", "0.01", "0.0105", "200", "215", "221"]
        .iter()
        .map(|v| {
            feed(&mut relative, "t", &format!("{{\"value\": {v}}}"))
                .unwrap()
                .is_some()
        })
        .collect();
    assert_eq!(
        outs,
        [true, false, true, false, true, false, true],
        "relative deadband 10 %"
    );
}

#[test]
fn burst_table() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);

    // maxSize first.
    let mut c = chain(json!([{"burst": {"maxSize": 3, "interval": 1000}}]));
    assert_eq!(feed_at(&mut c, "t", "1", ms(0)).unwrap(), None);
    assert_eq!(feed_at(&mut c, "t", "2", ms(1)).unwrap(), None);
    assert_eq!(
        feed_at(&mut c, "t", "3", ms(2)).unwrap().as_deref(),
        Some("[1,2,3]")
    );
    // The interval of the burst that maxSize emitted comes with an empty buffer: nothing.
    assert_eq!(c.next_deadline(), None);
    assert!(c.flush_due(ms(5000)).is_empty());

    // Interval first: counted from the first message of the burst, then the rules after it
    // run on the array with the context of the latest message.
    let mut c = chain(json!([
        {"burst": {"interval": 100}},
        {"transform": {"expression": "{\"n\": $count($), \"sum\": $sum($.value), \"last\": $context.topic}"}},
    ]));
    assert_eq!(
        feed_at(&mut c, "a", r#"{"value": 1}"#, ms(0)).unwrap(),
        None
    );
    assert_eq!(
        feed_at(&mut c, "b", r#"{"value": 2}"#, ms(50)).unwrap(),
        None
    );
    assert_eq!(c.next_deadline(), Some(ms(100)));
    assert!(c.flush_due(ms(99)).is_empty());
    let flushed = c.flush_due(ms(100));
    assert_eq!(flushed.len(), 1);
    let out = flushed.into_iter().next().unwrap().unwrap().unwrap();
    assert_eq!(
        json_of(std::str::from_utf8(&out.payload).unwrap()),
        json!({"n": 2, "sum": 3, "last": "b"})
    );
    assert_eq!(c.next_deadline(), None, "an empty buffer waits for nothing");
}

#[test]
fn collect_table_with_dynamic_labels() {
    // Default label: the concrete topic.
    let mut c = chain(json!([{"collect": {}}]));
    feed(&mut c, "line/m1/temp", "20").unwrap();
    let out = feed(&mut c, "line/m1/speed", "1500").unwrap().unwrap();
    assert_eq!(
        json_of(&out),
        json!({"line/m1/temp": 20, "line/m1/speed": 1500})
    );

    // The input's label (from the subscription, possibly from its wildcards) is used.
    let mut c = chain(json!([{"collect": {}}]));
    for (label, payload) in [("m1", "1"), ("m2", "2"), ("m1", "3")] {
        let mut i = input("line/x", payload);
        i.label = label.into();
        c.process(i, Instant::now()).unwrap();
    }
    let mut last = input("line/x", "4");
    last.label = "m3".into();
    let out = c.process(last, Instant::now()).unwrap().unwrap();
    assert_eq!(
        json_of(std::str::from_utf8(&out.payload).unwrap()),
        json!({"m1": 3, "m2": 2, "m3": 4})
    );

    // A rule-level label template over the context variables overrides it.
    let mut c = chain(json!([
        {"setContextVars": {"vars": {"machine": "id"}}},
        {"collect": {"label": "machine-{machine}"}},
    ]));
    feed(&mut c, "t", r#"{"id": "a", "v": 1}"#).unwrap();
    let out = feed(&mut c, "t", r#"{"id": "b", "v": 2}"#)
        .unwrap()
        .unwrap();
    assert_eq!(
        json_of(&out),
        json!({"machine-a": {"id": "a", "v": 1}, "machine-b": {"id": "b", "v": 2}})
    );
    // Collecting a payload that is not JSON is an error for that message only.
    assert!(
        feed(&mut c, "t", "{broken")
            .unwrap_err()
            .contains("not JSON")
    );
}

#[test]
fn stash_before_and_after_the_first_value() {
    let mut c = chain(json!([
        {"transform": {"expression":
            "{\"value\": value, \"delta\": $exists($last('prev')) ? value - $last('prev').value : null}"}},
        {"stash": {"label": "prev"}},
    ]));
    let first = feed(&mut c, "t", r#"{"value": 10}"#).unwrap().unwrap();
    assert_eq!(
        json_of(&first),
        json!({"value": 10, "delta": null}),
        "nothing stashed yet"
    );
    let second = feed(&mut c, "t", r#"{"value": 13}"#).unwrap().unwrap();
    assert_eq!(json_of(&second), json!({"value": 13, "delta": 3}));

    // `$last()` without a label is the latest stash of any label.
    let mut c = chain(json!([
        {"transform": {"expression": "{\"now\": value, \"before\": $last().now}"}},
        {"stash": {"label": "a"}},
    ]));
    feed(&mut c, "t", r#"{"value": 1}"#).unwrap();
    let out = feed(&mut c, "t", r#"{"value": 2}"#).unwrap().unwrap();
    assert_eq!(json_of(&out), json!({"now": 2, "before": 1}));
}

#[test]
fn parse_then_transform_reads_a_binary_register() {
    let mut c = chain(json!([
        {"parse": {"format": "int16BE"}},
        {"transform": {"expression": "{\"value\": $ / 10}"}},
    ]));
    let out = c
        .process(
            Input {
                context: Context::new("raw"),
                label: "raw".into(),
                payload: Bytes::from_static(&[0xff, 0x38]),
            },
            Instant::now(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(&out.payload[..], br#"{"value":-20}"#);
    let mut b64 = chain(json!([
        {"parse": {"format": "fromBase64"}},
        {"parse": {"format": "json"}},
        {"transform": {"expression": "a"}},
    ]));
    assert_eq!(
        feed(&mut b64, "t", "eyJhIjogN30=").unwrap().as_deref(),
        Some("7")
    );
}

#[test]
fn a_three_rule_chain_parse_transform_cov() {
    let mut c = chain(json!([
        {"parse": {"format": "json"}},
        {"transform": {"expression": "{\"rpm\": $round(value / 60, 0)}"}},
        {"cov": {"key": "rpm"}},
    ]));
    let outs: Vec<Option<String>> = [6000, 6010, 6100, 6100]
        .iter()
        .map(|v| feed(&mut c, "t", &format!("{{\"value\": {v}}}")).unwrap())
        .collect();
    assert_eq!(
        outs,
        [
            Some(r#"{"rpm":100}"#.into()),
            None,
            Some(r#"{"rpm":102}"#.into()),
            None
        ]
    );
}

#[test]
fn a_chain_that_does_not_compile_says_which_rule() {
    let rules: Vec<Rule> = serde_json::from_value(
        json!([{"filter": {"expression": "a"}}, {"transform": {"expression": "("}}]),
    )
    .unwrap();
    let error = Chain::new(&rules).unwrap_err();
    assert!(
        error.starts_with("rules[1]: not a valid JSONata expression"),
        "{error}"
    );
}
