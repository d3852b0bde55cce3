//! One problem found in a commissioning file, with where it is.

use std::fmt;

use serde::Serialize;

/// A position in the YAML source: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Whether a diagnostic stops the file from installing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file is invalid; nothing of it is applied.
    #[default]
    Error,
    /// The file installs; something in it has no effect (a property Connectware documents that
    /// Ironbridge does not implement, say).
    Warning,
}

/// A problem in a commissioning file or its parameters. `path` is the YAML path
/// (`resources.plc.properties.connection.port`); `pos` is absent when the problem is not in the
/// file (a missing parameter value given at install, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub pos: Option<Pos>,
    pub severity: Severity,
}

impl Diagnostic {
    pub fn new(
        path: impl Into<String>,
        pos: Option<Pos>,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            path: path.into(),
            message: message.into(),
            pos,
            severity: Severity::Error,
        }
    }

    pub fn warning(
        path: impl Into<String>,
        pos: Option<Pos>,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::new(path, pos, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        match (self.path.is_empty(), self.pos) {
            (true, Some(pos)) => write!(
                f,
                "{} (line {}, column {})",
                self.message, pos.line, pos.column
            ),
            (true, None) => f.write_str(&self.message),
            (false, Some(pos)) => write!(
                f,
                "{}: {} (line {}, column {})",
                self.path, self.message, pos.line, pos.column
            ),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Builds dotted YAML paths: `resources.plc.properties`, `mappings[0].subscribe`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}
