//! The `cov` rule: passes a message only when `payload[key]` changed against the last value that
//! passed. The first message passes. Numbers may have a deadband: absolute (the change must
//! exceed `deadband`) or relative (exceed `deadband` percent of the last passed value, so any
//! change away from a last value of 0 passes). Other values pass when their JSON differs.

use crate::expression::JValue;
use commissioning::model::{CovRule, DeadbandMode};

#[derive(Debug)]
pub struct Cov {
    key: String,
    deadband: f64,
    mode: DeadbandMode,
    last: Option<Seen>,
}

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Number(f64),
    Json(String),
}

impl Cov {
    pub fn new(rule: &CovRule) -> Cov {
        Cov {
            key: rule.key.clone(),
            deadband: rule.deadband.unwrap_or(0.0),
            mode: rule.deadband_mode.unwrap_or(DeadbandMode::Absolute),
            last: None,
        }
    }

    /// Whether the message passes; a pass makes its value the new reference.
    pub fn passes(&mut self, payload: &JValue) -> Result<bool, String> {
        let JValue::Object(map) = payload else {
            return Err(format!(
                "`cov` compares `{}` of an object payload; this payload is not an object",
                self.key
            ));
        };
        let value = map
            .get(self.key.as_str())
            .ok_or_else(|| format!("the payload has no `{}` for `cov` to compare", self.key))?;
        let seen = match value {
            JValue::Number(n) => Seen::Number(*n),
            other => Seen::Json(
                serde_json::to_string(other).map_err(|e| format!("`{}`: {e}", self.key))?,
            ),
        };
        let changed = match (&self.last, &seen) {
            (None, _) => true,
            (Some(Seen::Number(last)), Seen::Number(now)) => {
                let threshold = match self.mode {
                    DeadbandMode::Absolute => self.deadband,
                    DeadbandMode::Relative => last.abs() * self.deadband / 100.0,
                };
                // Without a deadband any difference counts, however small.
                (now - last).abs() > threshold || (threshold == 0.0 && now != last)
            }
            (Some(last), now) => last != now,
        };
        if changed {
            self.last = Some(seen);
        }
        Ok(changed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cov(deadband: Option<f64>, mode: Option<DeadbandMode>) -> Cov {
        Cov::new(&CovRule {
            key: "value".into(),
            deadband,
            deadband_mode: mode,
        })
    }

    /// Feeds `values` (as `{"value": v}`) and returns those that passed.
    fn passed(mut rule: Cov, values: &[&str]) -> Vec<String> {
        values
            .iter()
            .filter(|v| {
                let payload: JValue = serde_json::from_str(&format!("{{\"value\": {v}}}")).unwrap();
                rule.passes(&payload).unwrap()
            })
            .map(|v| v.to_string())
            .collect()
    }

    struct Case {
        name: &'static str,
        deadband: Option<f64>,
        mode: Option<DeadbandMode>,
        input: &'static [&'static str],
        passed: &'static [&'static str],
    }

    #[test]
    fn change_of_value_table() {
        use DeadbandMode::*;
        let cases = [
            Case {
                name: "first message passes",
                deadband: None,
                mode: None,
                input: &["5"],
                passed: &["5"],
            },
            Case {
                name: "repeats are dropped",
                deadband: None,
                mode: None,
                input: &["5", "5", "6", "6", "5"],
                passed: &["5", "6", "5"],
            },
            Case {
                name: "tiny changes count without a deadband",
                deadband: None,
                mode: None,
                input: &["1", "1.0000001"],
                passed: &["1", "1.0000001"],
            },
            Case {
                name: "absolute: against the last passed value, not the last seen",
                deadband: Some(1.0),
                mode: Some(Absolute),
                input: &["10", "10.6", "11.2", "11.0", "9.9"],
                passed: &["10", "11.2", "9.9"],
            },
            Case {
                name: "absolute: exactly the deadband is not a change",
                deadband: Some(1.0),
                mode: None,
                input: &["10", "11", "11.5"],
                passed: &["10", "11.5"],
            },
            Case {
                name: "relative: percent of the last passed value",
                deadband: Some(10.0),
                mode: Some(Relative),
                input: &["100", "109", "111", "100", "99"],
                passed: &["100", "111", "99"],
            },
            Case {
                name: "relative around zero: any change away from 0 passes, 0 to 0 does not",
                deadband: Some(10.0),
                mode: Some(Relative),
                input: &["0", "0", "0.5", "0.52", "-0.5"],
                passed: &["0", "0.5", "-0.5"],
            },
            Case {
                name: "relative with a negative reference uses its magnitude",
                deadband: Some(50.0),
                mode: Some(Relative),
                input: &["-10", "-14", "-16"],
                passed: &["-10", "-16"],
            },
            Case {
                name: "strings and objects compare as JSON",
                deadband: Some(5.0),
                mode: None,
                input: &[
                    "\"on\"",
                    "\"on\"",
                    "\"off\"",
                    "{\"a\": 1}",
                    "{\"a\": 1}",
                    "null",
                    "null",
                ],
                passed: &["\"on\"", "\"off\"", "{\"a\": 1}", "null"],
            },
            Case {
                name: "a type change is a change",
                deadband: None,
                mode: None,
                input: &["1", "\"1\"", "true"],
                passed: &["1", "\"1\"", "true"],
            },
        ];
        for case in cases {
            assert_eq!(
                passed(cov(case.deadband, case.mode), case.input),
                case.passed,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn missing_key_or_non_object_is_an_error() {
        let mut rule = cov(None, None);
        let no_key: JValue = serde_json::from_str("{\"other\": 1}").unwrap();
        assert!(rule.passes(&no_key).unwrap_err().contains("no `value`"));
        let not_object: JValue = serde_json::from_str("[1]").unwrap();
        assert!(
            rule.passes(&not_object)
                .unwrap_err()
                .contains("not an object")
        );
        // Errors leave the reference alone: the next good message is still the first.
        let first: JValue = serde_json::from_str("{\"value\": 1}").unwrap();
        assert!(rule.passes(&first).unwrap());
    }
}
