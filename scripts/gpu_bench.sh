#!/usr/bin/env bash
# The bench on a GPU machine, in one call of the device tool (15 minutes of device time in all,
# no network there; torch, transformers 5.17, accelerate, psutil, pillow and pyarrow are). Never
# run by the tests or CI. Check it on the CPU first (about 4 minutes):
#
#     OUT=/tmp/gpu_bench LAYERS=1 QUICK=1 bash scripts/gpu_bench.sh
#
# Once, here, fetch the transformers this project pins (the machine's is older; .whl/ is ignored):
#
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_17_x86_64 -d .whl transformers==5.23.0
#
# then one device call: command "bash scripts/gpu_bench.sh", carry [".whl"], timeout_s 600.
# Each part has its own time limit, so one that fails or runs long leaves the others' figures in
# $OUT (bench_gpu_*.json and gpu_bench.log). Copy the JSON into results/ and put the figures in
# the README marked as measured on that GPU (absolute times count only from a GPU).
set -uo pipefail
OUT=${OUT:-runs/gpu_bench}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=.:${PYTHONPATH:-}
REPEATS=${REPEATS:-2}          # rounds of each steering timing (the CPU bench uses 5)
quick=${QUICK:+--quick}
layers=${LAYERS:+--layers $LAYERS}  # decoder layers of the 7B shapes (default: all of them on a GPU)
shipped=(--parts steering,build)
[ -n "${QUICK:-}" ] && shipped=(--parts steering --no-baseline)
{
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__,
'on', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
    # steering overhead on generation, capture throughput and a PGD step at LLaVA-1.5-7B's shape
    timeout 270 python3 -m core bench --shape llava-1.5-7b $layers --repeats "$REPEATS" $quick \
        --parts steering,capture,pgd,artefact --json "$OUT/bench_gpu_llava-1.5-7b-shape.json"
    # questions about one picture sharing its start, at Qwen2.5-VL-7B's width and picture length
    timeout 120 python3 -m core bench --shape qwen2.5-vl-7b $quick --parts shared_starts \
        --json "$OUT/bench_gpu_qwen2.5-vl-7b-shape.json"
    # the shipped model on the GPU: its gate's overhead on portraits, and its build against IdkNLL
    timeout 150 python3 -m core bench --repeats "$REPEATS" $quick "${shipped[@]}" --json "$OUT/bench_gpu_shipped.json"
} 2>&1 | tee "$OUT/gpu_bench.log"
