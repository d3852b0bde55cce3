//! Service states and the one function that decides transitions.

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
    pub const ALL: [ServiceState; 5] = [
        ServiceState::Disabled,
        ServiceState::Enabling,
        ServiceState::Enabled,
        ServiceState::Disabling,
        ServiceState::Failed,
    ];

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

/// Where a service should be: what `enable` and `disable` set, kept across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    Enabled,
    Disabled,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Enabled => "enabled",
            TargetState::Disabled => "disabled",
        }
    }

    /// `enabled` or `disabled`, as the API and the store spell it.
    pub fn parse(text: &str) -> Option<TargetState> {
        match text {
            "enabled" => Some(TargetState::Enabled),
            "disabled" => Some(TargetState::Disabled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Enable,
    Disable,
}

impl Operation {
    pub const ALL: [Operation; 2] = [Operation::Enable, Operation::Disable];
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

    /// Every state with every operation, once: a new state or operation fails this test until
    /// its row is written.
    #[test]
    fn transition_table_covers_every_pair() {
        let table = [
            (Disabled, Operation::Enable, Transition::Via(Enabling)),
            (Disabled, Operation::Disable, Transition::Unchanged),
            // Enabling again while enabling starts over (the API serialises operations, so
            // this is a retry after a crash mid-way).
            (Enabling, Operation::Enable, Transition::Via(Enabling)),
            (Enabling, Operation::Disable, Transition::Via(Disabling)),
            (Enabled, Operation::Enable, Transition::Unchanged),
            (Enabled, Operation::Disable, Transition::Via(Disabling)),
            (Disabling, Operation::Enable, Transition::Via(Enabling)),
            // Disabling is finished, not skipped: resources may still be running.
            (Disabling, Operation::Disable, Transition::Via(Disabling)),
            // A failed service is retried by enable and cleaned up by disable.
            (Failed, Operation::Enable, Transition::Via(Enabling)),
            (Failed, Operation::Disable, Transition::Via(Disabling)),
        ];
        // Adding a variant breaks these matches until it is in `ALL`, and so in the loop below.
        let _listed = |state: ServiceState| match state {
            Disabled | Enabling | Enabled | Disabling | Failed => {
                ServiceState::ALL.contains(&state)
            }
        };
        let _listed = |operation: Operation| match operation {
            Operation::Enable | Operation::Disable => Operation::ALL.contains(&operation),
        };
        for from in ServiceState::ALL {
            for operation in Operation::ALL {
                let rows = table
                    .iter()
                    .filter(|(f, o, _)| (*f, *o) == (from, operation))
                    .count();
                assert_eq!(rows, 1, "{from:?} {operation:?} needs exactly one row");
            }
        }
        for (from, operation, expected) in table {
            assert_eq!(
                transition(from, operation),
                expected,
                "{from:?} {operation:?}"
            );
        }
    }
}
