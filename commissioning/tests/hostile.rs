//! Files written to hurt: each reproduces an attack on resolving a commissioning file and checks
//! that it ends in a diagnostic at the offending line instead of exhausting memory.

use commissioning::{Diagnostic, Environment, load};
use serde_json::Map;

fn validate(source: &str) -> Vec<Diagnostic> {
    match load(source, "bomb", &Map::new(), &Environment::offline()) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics,
    }
}

/// Definitions that each double the one before: `d{i}: !sub '${d{i-1}}${d{i-1}}'`.
fn sub_bomb(levels: usize) -> String {
    let mut file = String::from("metadata: {name: bomb}\ndefinitions:\n  d0: 'xxxxxxxxxxxxxxxx'\n");
    for i in 1..=levels {
        file.push_str(&format!("  d{i}: !sub '${{d{}}}${{d{}}}'\n", i - 1, i - 1));
    }
    file.push_str(
        "resources:\n  r:\n    type: Cybus::Role\n    properties:\n      permissions: []\n",
    );
    file
}

/// Scenario: 689 bytes, 23 levels, cost +389 MiB and validated as valid; 30 levels took 16.8 GB
/// and stopped the health endpoint.
#[test]
fn a_sub_doubling_chain_stops_at_the_expansion_limit() {
    for levels in [23, 30, 60] {
        let diagnostics = validate(&sub_bomb(levels));
        assert_eq!(diagnostics.len(), 1, "{levels} levels: {diagnostics:?}");
        let d = &diagnostics[0];
        assert!(d.message.contains("beyond 8 MiB"), "{d}");
        // d0 counts 18 bytes and every level copies the one before twice, so all copies up to
        // d18 add up to just over 8 MiB: the diagnostic stands at d18, line 3 + 18.
        assert_eq!(d.path, "definitions.d18", "{d}");
        assert_eq!(d.pos.map(|p| p.line), Some(21), "{d}");
    }
    // Below the limit the same construction is a valid file.
    assert_eq!(validate(&sub_bomb(10)), Vec::new());
}

/// Scenario: `!ref` lists that double, `d{i}: [!ref d{i-1}, !ref d{i-1}]`, cost +1 GiB at 18
/// levels; the resources referring to them multiply it again.
#[test]
fn a_ref_doubling_chain_stops_at_the_expansion_limit() {
    let mut file = String::from("metadata: {name: bomb}\ndefinitions:\n  d0: [1, 2, 3, 4]\n");
    for i in 1..=40 {
        file.push_str(&format!("  d{i}: [!ref d{}, !ref d{}]\n", i - 1, i - 1));
    }
    file.push_str("resources:\n");
    for r in 0..50 {
        file.push_str(&format!(
            "  r{r}:\n    type: Cybus::Role\n    properties:\n      permissions: !ref d40\n"
        ));
    }
    let diagnostics = validate(&file);
    assert_eq!(diagnostics.len(), 1, "reported once: {diagnostics:?}");
    assert!(
        diagnostics[0].message.contains("beyond 8 MiB"),
        "{}",
        diagnostics[0]
    );
    assert!(
        diagnostics[0].path.starts_with("definitions.d"),
        "{}",
        diagnostics[0]
    );
}

/// Scenario: "billion laughs": nine anchors, each a list of ten aliases of the one before,
/// are 10^9 strings once expanded, from a file of 600 bytes. The parser's budget of aliased
/// nodes stops it with a diagnostic at the alias that went over.
#[test]
fn an_alias_bomb_stops_at_the_parsers_budget() {
    let mut file = String::from("metadata: {name: bomb}\ndefinitions:\n  l0: &l0 [lol]\n");
    for i in 1..=9 {
        let aliases = vec![format!("*l{}", i - 1); 10].join(", ");
        file.push_str(&format!("  l{i}: &l{i} [{aliases}]\n"));
    }
    let diagnostics = validate(&file);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    let d = &diagnostics[0];
    assert!(d.message.contains("alias expansion exceeded"), "{d}");
    assert!(d.pos.is_some_and(|p| p.line > 3), "{d}");

    // Merge keys expand through the same aliases, under the same budget.
    let mut file = String::from("metadata: {name: bomb}\ndefinitions:\n  m0: &m0 {a: lol}\n");
    for i in 1..=9 {
        let entries: Vec<String> = (0..10).map(|k| format!("k{k}: *m{}", i - 1)).collect();
        file.push_str(&format!("  m{i}: &m{i} {{{}}}\n", entries.join(", ")));
    }
    file.push_str("  merged: {<<: *m9, b: 1}\n");
    let diagnostics = validate(&file);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert!(
        diagnostics[0].message.contains("alias expansion exceeded"),
        "{}",
        diagnostics[0]
    );
}
