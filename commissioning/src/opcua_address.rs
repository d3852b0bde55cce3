//! The two ways an OPC UA endpoint names its node, checked at install time so a typo is a
//! validation error with a line number rather than a runtime failure.
//!
//! - `nodeId` in the standard string form: an optional `ns=<index>;` then `i=<number>`,
//!   `s=<string>`, `g=<GUID>` or `b=<base64>`.
//! - `browsePath`: `/0:Objects/2:Machine/2:Speed`, qualified browse names from the Root folder,
//!   each `<namespace index>:<name>`; without the leading `/` (`2:Machine/2:Speed`, as
//!   Connectware's examples write it) the path starts at the Objects folder.

use std::sync::LazyLock;

use regex::Regex;

static NODE_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(ns=\d{1,5};)?(i=\d{1,10}|s=.+|g=[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|b=[A-Za-z0-9+/]+={0,2})$",
    )
    .unwrap_or_else(|e| panic!("the node id pattern is valid: {e}"))
});

pub fn check_node_id(text: &str) -> Result<(), String> {
    if !NODE_ID.is_match(text) {
        return Err(format!(
            "`{text}` is not a node id; write `ns=<index>;` followed by `i=<number>`, \
             `s=<string>`, `g=<GUID>` or `b=<base64>`, e.g. `ns=3;s=Machine.Speed` or `i=2258`"
        ));
    }
    let namespace = text
        .strip_prefix("ns=")
        .and_then(|rest| rest.split_once(';'))
        .map(|(ns, _)| ns);
    if let Some(ns) = namespace
        && ns.parse::<u16>().is_err()
    {
        return Err(format!("namespace index {ns} is above 65535"));
    }
    let numeric = text.rsplit_once("i=").map(|(_, n)| n);
    if let Some(n) = numeric.filter(|_| !text.contains(";s=") && !text.starts_with("s="))
        && n.parse::<u32>().is_err()
    {
        return Err(format!("numeric identifier {n} is above 4294967295"));
    }
    Ok(())
}

/// The browse names of a path from the Root folder, each with its namespace index.
pub fn parse_browse_path(text: &str) -> Result<Vec<(u16, String)>, String> {
    let hint = "write qualified browse names, e.g. `/0:Objects/2:Machine/2:Speed` from the Root folder or `2:Machine/2:Speed` from the Objects folder";
    let (mut path, rest) = match text.strip_prefix('/') {
        Some(rest) => (Vec::new(), rest),
        None => (vec![(0, "Objects".to_string())], text),
    };
    let elements: Result<Vec<_>, String> = rest
        .split('/')
        .map(|element| {
            let (ns, name) = element
                .split_once(':')
                .ok_or_else(|| format!("`{element}` has no namespace index; {hint}"))?;
            let ns: u16 = ns
                .parse()
                .map_err(|_| format!("`{ns}` in `{element}` is not a namespace index; {hint}"))?;
            if name.is_empty() {
                return Err(format!("`{element}` has an empty name; {hint}"));
            }
            Ok((ns, name.to_string()))
        })
        .collect();
    path.extend(elements?);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_in_all_four_forms() {
        for ok in [
            "i=2258",
            "ns=3;s=Machine.Speed",
            "ns=2;g=09087e75-8e5e-499b-954f-f2a9603db28a",
            "ns=1;b=AQID",
            "ns=2;s=a;b=c",
        ] {
            assert_eq!(check_node_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "2258",
            "ns=3;x=1",
            "ns=70000;i=1",
            "i=99999999999",
            "ns=2;g=not-a-guid",
        ] {
            assert!(check_node_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn browse_paths() {
        assert_eq!(
            parse_browse_path("/0:Objects/2:Machine/2:Speed"),
            Ok(vec![
                (0, "Objects".to_string()),
                (2, "Machine".to_string()),
                (2, "Speed".to_string())
            ])
        );
        // Connectware's relative form starts at the Objects folder.
        assert_eq!(
            parse_browse_path("2:Machine/2:Speed"),
            parse_browse_path("/0:Objects/2:Machine/2:Speed")
        );
        assert!(parse_browse_path("Objects/Machine").is_err());
        assert!(parse_browse_path("/Objects").is_err());
        assert!(parse_browse_path("/x:Objects").is_err());
        assert!(parse_browse_path("/0:").is_err());
    }
}
