#!/usr/bin/env bash
# One-command check of minigrad's CUDA path on a machine with an NVIDIA GPU, CuPy and CUDA PyTorch:
#
#   bash benchmarks/gpu_check.sh LOG_DIR
#
# 1. versions, and a loud failure if CuPy or PyTorch sees no GPU (nothing silently skips);
# 2. the CUDA half of every `device` test (pytest -m cuda) on the real CuPy, failing on any skip;
# 3. `python -m minigrad train --device cuda`, and the same run stopped after 1 epoch and resumed:
#    the resumed checkpoint must equal the straight one bit for bit;
# 4. benchmarks/bench_lenet.py --device cuda at batch 512 and benchmarks/bench_cuda_cnn.py (three
#    conv blocks of 64-256 channels) at batch 256, both against PyTorch CUDA with TF32 off.
# Each step writes LOG_DIR/<step>.log and has its own time limit (about 7 minutes in all); the
# summary is LOG_DIR/summary.txt. The exit status is non-zero if any step failed.
# Set up first: pip install -e ".[test,cuda12]" (or cuda13) plus a CUDA build of PyTorch.
set -uo pipefail
LOG_DIR=${1:?usage: bash benchmarks/gpu_check.sh LOG_DIR}
cd "$(dirname "$0")/.."
mkdir -p "$LOG_DIR"
LOG_DIR=$(cd "$LOG_DIR" && pwd)
SUMMARY="$LOG_DIR/summary.txt"
: > "$SUMMARY"
export NVIDIA_TF32_OVERRIDE=0 HYPOTHESIS_PROFILE=ci
unset MINIGRAD_FAKE_CUDA  # the real CuPy, never the test suite's stand-in
failed=0

# run_step NAME SECONDS COMMAND...: run with a time limit, log everything, record the outcome.
run_step() {
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" > "$LOG_DIR/$name.log" 2>&1
    local rc=$?
    tail -n 6 "$LOG_DIR/$name.log"
    local verdict=ok
    if [ "$rc" -ne 0 ]; then verdict="FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ', time limit'))"; failed=1; fi
    echo "$name: $verdict in $((SECONDS - started))s" | tee -a "$SUMMARY"
    return "$rc"
}

run_step versions 120 python - <<'EOF' || { echo "no usable GPU: stopping" | tee -a "$SUMMARY"; exit 1; }
import platform, subprocess, sys
import numpy, torch
print("python", platform.python_version(), "numpy", numpy.__version__, "torch", torch.__version__,
      "torch CUDA", torch.version.cuda)
import cupy
print("cupy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
      "driver", cupy.cuda.runtime.driverGetVersion())
count = cupy.cuda.runtime.getDeviceCount()
if count < 1:
    sys.exit("FAIL: CuPy sees no CUDA device")
if not torch.cuda.is_available():
    sys.exit("FAIL: PyTorch sees no CUDA device (a CPU build of torch?)")
print("GPU 0:", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "| torch:", torch.cuda.get_device_name(0))
import minigrad as mg
from minigrad import backend
assert mg.cuda.is_available() and backend.xp_for("cuda:0") is cupy, "minigrad does not use the real CuPy"
x = mg.tensor([1.0, 2.0], device="cuda")
assert (x * 2).numpy().tolist() == [2.0, 4.0]
print("minigrad on", x.device, "ok")
subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv"], check=False)
EOF

run_step cuda_tests 270 python -m pytest -q -p no:cacheprovider -m cuda -rs
if grep -q "CUDA backend not available" "$LOG_DIR/cuda_tests.log"; then
    echo "cuda_tests: FAILED, some CUDA tests were skipped" | tee -a "$SUMMARY"; failed=1
fi

# cnn: dropout masks and uneven micro-batches (64 = 24 + 24 + 16) on the device too
TRAIN=(python -m minigrad train --no-progress --device cuda --dataset digits --model cnn
       --batch-size 64 --micro-batch-size 24 --optimizer sgd --lr 0.05)
run_step train_cuda 120 "${TRAIN[@]}" --epochs 2 --out "$LOG_DIR/run_straight"
run_step train_cuda_stopped 90 "${TRAIN[@]}" --epochs 1 --out "$LOG_DIR/run_resumed"
run_step train_cuda_resumed 90 python -m minigrad train --no-progress --resume "$LOG_DIR/run_resumed" --epochs 2
run_step resume_is_bit_exact 60 python - "$LOG_DIR/run_straight" "$LOG_DIR/run_resumed" <<'EOF'
import os, sys
import numpy as np
from minigrad import checkpoint
straight, resumed = (checkpoint.load(os.path.join(d, "checkpoint.npz"))["model"] for d in sys.argv[1:])
assert list(straight) == list(resumed), (list(straight), list(resumed))
different = [name for name in straight if not np.array_equal(straight[name], resumed[name])]
assert not different, f"resumed parameters differ from the straight run: {different}"
print(f"{len(straight)} parameter arrays equal bit for bit")
EOF

run_step bench_lenet_cuda 150 python benchmarks/bench_lenet.py --device cuda --batch-sizes 512 --steps 20
run_step bench_cuda_cnn 150 python benchmarks/bench_cuda_cnn.py --device cuda --batch-size 256 --steps 20

echo "== summary ($SUMMARY)"
cat "$SUMMARY"
exit "$failed"
