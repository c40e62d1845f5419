#!/usr/bin/env bash
# Reproduce experiments/counting_poisson (CPU is enough: ~5 minutes per bridge on 2 cores).
# Runs go to outputs/counting_poisson/<config hash>/; a finished run is only re-evaluated.
set -euo pipefail
cd "$(dirname "$0")/../.."
for bridge in skellam constrained; do
  jaxdiff counting bridge=$bridge output_dir=outputs/counting_poisson "$@"
done
