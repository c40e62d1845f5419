#!/usr/bin/env bash
# Re-run every benchmark on the GPU machine (see ../shared/device/README.md), with the
# commands recorded in benchmarks/RESULTS.md. Run from the repository root there:
#   bash benchmarks/run_gpu.sh <part> <out-dir>      part: quick | sinkhorn | schrodinger | flows | all
# quick: samplers, facade, demo, sinkhorn_small, unet_train, counting_bridge (~8 min);
# sinkhorn: the online Sinkhorn rows at 65,536 points and the lse_dot kernel (~8 min).
# schrodinger: FastSB-OT presets vs DPM-Solver++, the OT share, the originals (~8 min);
# flows: exact assignment solvers vs scipy, 2-D CFM training vs torchcfm, IsoNext OT-CFM vs
# PyTorch, FlowODE vs diffrax (~7 min).
# The counting peer (njwfish/counting_flows) must be unpacked in .peer/counting_flows; the
# Schrodinger-bridge originals (TSOR666/OT-diffusion-toolkit: FastSB-OT/fastsb_ot and
# ATLAS/atlas) in .orig (diffusers is needed there too).
set -uo pipefail
part="${1:-all}"
out="${2:-benchmarks/results}"
mkdir -p "$out"
run() {  # name, command...: time it, keep its log, never stop the batch
  local name="$1"; shift
  local start=$(date +%s)
  "$@" > "$out/$name.log" 2>&1
  echo "$name: exit $? after $(( $(date +%s) - start )) s"
  tail -n 25 "$out/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
if [ "$part" = quick ] || [ "$part" = all ]; then
  run sampler_tiny_small python3 benchmarks/sampler_overhead.py --sizes tiny small --repeats 10 \
    --out "$out/sampler_overhead.json" --results-md /dev/null
  run sampler_unet python3 benchmarks/sampler_overhead.py --sizes unet --repeats 3 \
    --out "$out/sampler_overhead_unet.json" --results-md /dev/null
  run facade python3 benchmarks/facade_overhead.py --out "$out/facade_overhead.json"
  run demo python3 -m jaxdiff.cli.main demo --out "$out/jaxdiff_demo.png"
  run sinkhorn_small python3 benchmarks/sinkhorn_small.py --out "$out/sinkhorn_small.json"
  run unet_train python3 benchmarks/unet_train.py --batch 64 --steps 20 --out "$out/unet_train.json"
  run counting_bridge python3 benchmarks/counting_bridge.py --peer .peer --batch 4096 \
    --out "$out/counting_bridge.json"
fi
if [ "$part" = sinkhorn ] || [ "$part" = all ]; then
  run sinkhorn python3 benchmarks/sinkhorn.py --accuracy-size 0 --check-size 0 --row-timeout 150 \
    --sizes 65536 --dims 64 --methods jaxdiff:pallas:bf16 jaxdiff:pallas:tf32 ott_dense \
    flash_sinkhorn floor --iters 20 --repeats 3 --out "$out/sinkhorn.json"
  run lse_dot python3 benchmarks/lse_dot.py --sizes 16384 65536 --dims 64 256 \
    --precisions tf32 bf16 --budget-s 120 --out "$out/lse_dot.json"
fi
if [ "$part" = schrodinger ] || [ "$part" = all ]; then
  run schrodinger env XLA_PYTHON_CLIENT_PREALLOCATE=false python3 benchmarks/schrodinger.py \
    --peer .orig --out "$out/schrodinger.json"
fi
if [ "$part" = flows ] || [ "$part" = all ]; then
  run assignment python3 benchmarks/assignment.py --out "$out/assignment.json"
  run flow_train env XLA_PYTHON_CLIENT_PREALLOCATE=false python3 benchmarks/flow_train.py \
    --out "$out/flow_train.json"
fi
