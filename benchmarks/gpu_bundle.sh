#!/usr/bin/env bash
# bench_gpu.py on an offline GPU machine, from a bundle made by `benchmarks/gpu_bundle.py build`.
#   bash benchmarks/gpu_bundle.sh BUNDLE OUT [bench_gpu.py args...]
# Run from the checkout's root. env: PY (python3), SITE (/tmp/site: where the wheels go, off the
# system's site-packages), MODEL (/tmp/minilm-fp32), DATA (data/cs224n: where the files are
# unpacked; the benchmark reads them through MTSEARCH_DATA), BENCH_TIMEOUT (seconds, 540: the benchmark is
# killed after it, and what it measured by then is in OUT/gpu.json).
# Exit: 3 wheels, 4 data, 5 model, 6 imports, else the benchmark's.
set -u -o pipefail
BUNDLE=$1; OUTD=$2; shift 2
PY=${PY:-python3}; SITE=${SITE:-/tmp/site}; MODEL=${MODEL:-/tmp/minilm-fp32}; DATA=${DATA:-data/cs224n}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false MTSEARCH_DATA=$DATA
t0=$(date +%s)
stamp() { echo "[gpu_bundle +$(( $(date +%s) - t0 )) s] $*"; }
mkdir -p "$OUTD"
if [ -d "$BUNDLE/whl" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$BUNDLE"/whl/*.whl || exit 3
fi
export PYTHONPATH=$SITE:$PWD
mkdir -p "$DATA" && tar xzf "$BUNDLE/data.tgz" -C "$DATA" || exit 4
$PY benchmarks/gpu_bundle.py prep "$BUNDLE" "$SITE" "$MODEL" || exit 5
stamp prepared
nvidia-smi --query-gpu=name,memory.total,memory.used,utilization.gpu,clocks.sm,driver_version --format=csv 2>&1 \
    | tee "$OUTD/nvidia-smi.txt"
echo "cores: $(nproc)"
$PY -c "import torch, transformers, mtsearch.train, mtsearch.sweep.space; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" || exit 6
stamp imported
timeout -k 10 "${BENCH_TIMEOUT:-540}" $PY benchmarks/bench_gpu.py --out "$OUTD/gpu.json" "$@" 2>&1 | tee "$OUTD/bench.log"
rc=$?
stamp "bench exit $rc"
# The runs' own records (metrics.jsonl, result.json), for reading the rates again at home.
(cd runs/bench/tmp 2>/dev/null && find . -name metrics.jsonl -o -name "*.json" | tar czf "$OUTD/runs.tgz" -T -)
exit $rc
