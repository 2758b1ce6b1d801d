#!/usr/bin/env bash
# Create the benchmark-only environment with Zooniverse's panoptes_aggregation (the peer in
# benchmarks/aggregation_boxes.py). It pins packaging<24.3, which conflicts with the project's own
# packages, so it lives in its own venv: benchmarks/.venv-peers (git-ignored by a '*' .gitignore
# written inside it). It pulls scikit-learn, shapely, pandas, numpy; never torch.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-$here/.venv-peers}"
python3 -m venv "$venv"
echo '*' > "$venv/.gitignore"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "panoptes_aggregation==5.3.1"
if "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"; then
    echo "error: torch ended up in $venv; remove it" >&2
    exit 1
fi
"$venv/bin/python" -c "import panoptes_aggregation, sklearn; print('panoptes_aggregation', panoptes_aggregation.__version__ if hasattr(panoptes_aggregation, '__version__') else 'ok')"
