//! Service states (SPEC section 6) and the one function that decides transitions.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ServiceState {
    Disabled,
    Enabling,
    Enabled,
    Disabling,
    Failed,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Disabled => "disabled",
            ServiceState::Enabling => "enabling",
            ServiceState::Enabled => "enabled",
            ServiceState::Disabling => "disabling",
            ServiceState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Enable,
    Disable,
}

/// What an operation does from a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Already there: nothing to do (the API answers 200 with `changed: false`).
    Unchanged,
    /// Go through this transient state, then to the operation's end state.
    Via(ServiceState),
}

pub fn transition(from: ServiceState, operation: Operation) -> Transition {
    use ServiceState::*;
    match (from, operation) {
        (Enabled, Operation::Enable) | (Disabled, Operation::Disable) => Transition::Unchanged,
        // A failed service is retried by enable, and cleaned up by disable.
        (Disabled | Failed | Disabling, Operation::Enable) => Transition::Via(Enabling),
        (Enabled | Failed | Enabling | Disabling, Operation::Disable) => Transition::Via(Disabling),
        (Enabling, Operation::Enable) => Transition::Via(Enabling),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceState::*;

    #[test]
    fn transition_table() {
        let table = [
            (Disabled, Operation::Enable, Transition::Via(Enabling)),
            (Disabled, Operation::Disable, Transition::Unchanged),
            (Enabled, Operation::Enable, Transition::Unchanged),
            (Enabled, Operation::Disable, Transition::Via(Disabling)),
            (Failed, Operation::Enable, Transition::Via(Enabling)),
            (Failed, Operation::Disable, Transition::Via(Disabling)),
        ];
        for (from, op, expected) in table {
            assert_eq!(transition(from, op), expected, "{from:?} {op:?}");
        }
    }
}
