//! Topic names, topic filters and matching (MQTT 4.7), without allocation.

/// A topic name a client may publish to: not empty, no wildcards.
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#'])
}

/// A topic filter: `+` fills a whole level, `#` fills a whole last level.
pub fn is_valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        match level {
            "+" => {}
            "#" if is_last => {}
            _ if level.contains(['+', '#']) => return false,
            _ => {}
        }
    }
    true
}

/// A `$share/{group}/{filter}` subscription, split into its group and filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub group: &'a str,
    pub filter: &'a str,
}

/// Splits a shared subscription. `Ok(None)` for an ordinary filter; `Err` for a `$share/` filter
/// whose group or filter is invalid (MQTT-4.8.2-1, MQTT-4.8.2-2).
pub fn parse_shared(filter: &str) -> Result<Option<SharedFilter<'_>>, &'static str> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return Ok(None);
    };
    let Some((group, filter)) = rest.split_once('/') else {
        return Err("shared subscription without a topic filter");
    };
    if group.is_empty() || group.contains(['+', '#']) {
        return Err("shared subscription group name is empty or has wildcards");
    }
    if !is_valid_topic_filter(filter) {
        return Err("shared subscription topic filter is invalid");
    }
    Ok(Some(SharedFilter { group, filter }))
}

/// Whether `filter` matches `topic`. Topics starting with `$` are not matched by a filter whose
/// first level is a wildcard (MQTT-4.7.2-1), so `#` never sees `$SYS`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            literal => {
                if topic_levels.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_matching_table() {
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("#", "sport/tennis", true),
            ("#", "/", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("a/b", "a/b", true),
            ("a/b", "a/B", false),
            ("#", "$SYS/broker/uptime", false),
            ("+/broker/uptime", "$SYS/broker/uptime", false),
            ("$SYS/#", "$SYS/broker/uptime", true),
            ("$SYS/+/uptime", "$SYS/broker/uptime", true),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
        }
    }

    #[test]
    fn filter_validation_table() {
        for valid in ["#", "+", "a/+/b", "a/#", "+/+/#", "/", "a//b", "$SYS/#"] {
            assert!(is_valid_topic_filter(valid), "{valid}");
        }
        for invalid in ["", "a#", "a/#/b", "a+/b", "#/a", "a/b+"] {
            assert!(!is_valid_topic_filter(invalid), "{invalid}");
        }
    }

    #[test]
    fn shared_subscription_parsing() {
        assert_eq!(
            parse_shared("$share/g1/plant/+/temp"),
            Ok(Some(SharedFilter {
                group: "g1",
                filter: "plant/+/temp"
            }))
        );
        assert_eq!(parse_shared("plant/#"), Ok(None));
        assert!(parse_shared("$share/g1").is_err());
        assert!(parse_shared("$share//a").is_err());
        assert!(parse_shared("$share/g+/a").is_err());
        assert!(parse_shared("$share/g/a#").is_err());
    }
}
