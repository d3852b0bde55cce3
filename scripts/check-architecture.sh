#!/usr/bin/env bash
# Checks the invariants of ARCHITECTURE.md that say which crate or module may use which library,
# so they stay true. Run by test-all.sh; fails loudly with the offending files.
set -euo pipefail
cd "$(dirname "$0")/.."

sources=(broker/src protocol-mapper/src rule-engine/src admin/src admin-api/src commissioning/src gateway/src console/src)
failed=0

# only_in PATTERN ALLOWED WHAT: code lines (not comments) matching PATTERN only in files whose
# path matches the ALLOWED regex.
only_in() {
    local pattern=$1 allowed=$2 what=$3 found
    found=$(grep -rnE --include='*.rs' "$pattern" "${sources[@]}" \
        | grep -vE '^[^:]+:[0-9]+:[[:space:]]*//' \
        | grep -vE "^($allowed)" || true)
    if [ -n "$found" ]; then
        echo "ARCHITECTURE invariant broken: $what. Found outside it:" >&2
        echo "$found" | sed 's/^/    /' >&2
        failed=1
    fi
}

# not_in_tree CRATE DEPENDENCY...: CRATE's normal dependency tree holds none of them.
not_in_tree() {
    local crate=$1 tree
    shift
    tree=$(cargo tree -p "$crate" -e normal --prefix none)
    for dependency in "$@"; do
        if grep -qE "^$dependency v" <<<"$tree"; then
            echo "ARCHITECTURE invariant broken: $crate depends on $dependency" \
                "(cargo tree -p $crate -i $dependency shows the path)" >&2
            failed=1
        fi
    done
}

not_word='(^|[^A-Za-z0-9_:])'
only_in "${not_word}(tokio_modbus|tokio_serial)::" 'protocol-mapper/src/modbus/' \
    'only protocol-mapper/src/modbus/ imports tokio-modbus and tokio-serial'
# async-opcua is `opcua` in code, like the protocol modules named after it: look for its parts.
only_in "${not_word}opcua::(types|client|server|crypto|core|nodes)::|use opcua(::|;)" \
    'protocol-mapper/src/opcua/' \
    'only protocol-mapper/src/opcua/ imports async-opcua'
only_in "${not_word}rumqttc::" 'protocol-mapper/src/mqtt/' \
    'only protocol-mapper/src/mqtt/ imports rumqttc'
only_in "${not_word}reqwest::" 'protocol-mapper/src/http/|gateway/src/cli/' \
    'only protocol-mapper/src/http/ (HTTP connections) and the command line (the REST client) import reqwest'
only_in "${not_word}jsonata_core::" 'rule-engine/src/expression/|commissioning/src/rules.rs' \
    'only rule-engine/src/expression/ imports jsonata-core (commissioning/src/rules.rs its parser)'
only_in "${not_word}sqlx::" 'admin/src/store/|protocol-mapper/src/mqtt/queue.rs' \
    'only admin/src/store/ and the store-and-forward queue run SQL'
only_in "${not_word}(std::)?env::var" 'gateway/src/' \
    'only the gateway crate reads environment variables'
only_in "${not_word}(ConnectionParams|Address|Protocol)::(Modbus|Opcua|Mqtt|Http)" \
    'commissioning/src/|protocol-mapper/src/' \
    'only commissioning and the protocol mapper know which protocols exist'

# The administration (service lifecycle, accounts, store) knows nothing of HTTP; admin-api calls it.
only_in "${not_word}(axum|utoipa|hyper)::" 'admin-api/src/|gateway/src/|broker/src/|console/src/' \
    'only admin-api, the gateway, the broker (MQTT over WebSocket) and the web console speak HTTP'

# Plants are offline: the console's pages, modules and styles load nothing from another origin.
remote=$(grep -rnE "(from|import\(|src=|href=|url\()[[:space:]]*['\"(]?(https?:)?//" console/web \
    --include='*.js' --include='*.html' --include='*.css' | cut -c1-200 || true)
if [ -n "$remote" ]; then
    echo "ARCHITECTURE invariant broken: the web console loads something from another origin:" >&2
    echo "$remote" | sed 's/^/    /' >&2
    failed=1
fi

not_in_tree rule-engine tokio-modbus tokio-serial async-opcua rumqttc sqlx reqwest
not_in_tree broker tokio-modbus tokio-serial async-opcua rumqttc sqlx reqwest
not_in_tree commissioning tokio tokio-modbus async-opcua rumqttc sqlx

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "Architecture invariants hold."
