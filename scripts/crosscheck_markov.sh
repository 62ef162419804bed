#!/usr/bin/env bash
# Runs the demo (if needed) and compares crmflow's exact Markov shares with the
# ChannelAttribution package on the sample's attribution_paths.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/crmflow-target}"
venv="${CRMFLOW_VENV:-$HOME/.cache/crmflow-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import ChannelAttribution, pandas, matplotlib" 2>/dev/null \
    || "$venv/bin/pip" install --quiet channelattribution pandas matplotlib
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/crmflow"
[ -d crmflow-demo/lake/marts/attribution_paths ] || "$bin" demo > /dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" query --lake crmflow-demo/lake --format csv "SELECT * FROM attribution_paths" > "$work/paths.csv"
"$bin" query --lake crmflow-demo/lake --format csv "SELECT * FROM int_attribution_markov" > "$work/ours.csv"
"$venv/bin/python" scripts/crosscheck_markov.py "$work/paths.csv" "$work/ours.csv" "$@"
