#!/usr/bin/env bash
# One-shot GPU check for a session that has an H100/H200 (the device tool's `run`).
#
# Assumes the machine already has a Python environment with a CUDA build of torch and this
# package installed (`pip install -e .`); nothing is downloaded here. Point PY at it:
#     PY=/path/to/venv/bin/python bash scripts/gpu_check.sh
# Writes one JSON per benchmark run to $OUT (default ./gpu_out; six files) plus
# $OUT/logs.tar.gz (logs, nvidia-smi, the training run): at most 8 files, as the device tool
# returns. A summary line per run goes to stdout.
# Budget: about 8 minutes in total; each step has its own timeout so one hang cannot eat it.
set -u
PY=${PY:-python}
OUT=${OUT:-gpu_out}
WORK=${WORK:-/tmp/gpu_check}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"

"$PY" - <<'EOF' || { echo "no CUDA torch here: stop"; exit 1; }
import torch
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print("gpu:", torch.cuda.get_device_name(0), "torch", torch.__version__)
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$WORK/nvidia_smi.csv" || true

bench() {  # name timeout args...
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$PY" scripts/benchmark.py pipeline --device cuda \
        --out "$OUT/$name.json" "$@" > "$WORK/$name.log" 2>&1
    echo "$name rc=$? $(tail -c 300 "$WORK/$name.log" | tr '\n' ' ' | cut -c1-200)"
}

# fp32 vs bf16 at each benchmark config (training step, inference, scaling on THUMOS)
bench thumos_fp32 90 --config thumos --repeats 10 --what train,infer,nms
bench thumos_bf16 90 --config thumos --repeats 10 --precision bf16 --what train,infer,nms,scaling,peak
bench anet_bf16 60 --config anet --repeats 10 --precision bf16 --what train,infer
bench ego4d_bf16 60 --config ego4d --repeats 10 --precision bf16 --what train,infer
# torch.compile on/off (compile warm-up is slow: 3 warm-up steps, bf16)
bench thumos_bf16_compile 150 --config thumos --repeats 10 --precision bf16 --compile \
    --what train,infer
# sensitivity cost as a same-process ratio on the GPU
bench thumos_compare_sens 60 --config thumos --repeats 10 --precision bf16 --compare \
    "model.sensitivity.class_level=false model.sensitivity.instance_level=false model.ascl.weight=0" ""

# a short real training run on the synthetic benchmark (generated on first use), bf16
timeout 120 "$PY" -m asl_tal.train trainer=gpu trainer.precision=bf16-mixed logger=csv \
    paths.data_dir="$WORK/data" hydra.run.dir="$WORK/train_run" scheduler.epochs=3 \
    scheduler.warmup_epochs=1 > "$WORK/train_gpu.log" 2>&1
echo "train_gpu rc=$? $(grep -Eo 'mAP[^,]*' "$WORK/train_gpu.log" | tail -n 3 | tr '\n' ' ')"
tar czf "$OUT/logs.tar.gz" -C "$WORK" --exclude=data .
