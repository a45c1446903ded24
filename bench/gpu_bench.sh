#!/usr/bin/env bash
# Training and decoding benchmarks on one CUDA GPU; JSON results go to $OUT (default runs/gpu_bench).
#
#   bash bench/gpu_bench.sh                  # from the repo root
#
# Written for this workplace's H100/H200 image: its python3 already holds a CUDA torch,
# transformers, accelerate, sentencepiece, safetensors and scikit-learn, and no registry is
# reachable there. marisa-trie, faiss-cpu, bm25s, PyStemmer and pydivsufsort are not in the
# image: carry them as wheels in .whl/ (carry: [".whl"]); made here with
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux1_x86_64 -d .whl marisa-trie==1.4.1 faiss-cpu==1.15.1 bm25s==0.3.16 \
#     PyStemmer==3.1.0 pydivsufsort==0.0.20
# On a machine with a registry and no torch, the script pip-installs torch (Linux wheels on PyPI
# are CUDA builds) and the missing packages instead.
set -euo pipefail

OUT=${OUT:-runs/gpu_bench}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}  # 1: a few steps and queries only, to check the script itself (e.g. on a CPU)
# SYNTHETIC=1 uses the random corpora even where ../shared/data/scifact exists.
VENV=${VENV:-/tmp/dsi-gpu-venv}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 TOKENIZERS_PARALLELISM=false
log() { echo "[gpu_bench $(date +%T)] $*" >&2; }

# A fresh venv that also sees the image's packages: a venv made from a venv's python sees only
# the base interpreter's site-packages, so the image's site-packages are added by a .pth file.
image_site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf "$VENV"
if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    "$PY" -m venv --without-pip "$VENV"
fi
venv_site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$image_site" >"$venv_site/_image_site.pth"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" --version >/dev/null 2>&1 || PIP=("$PY" -m pip --python "$VENV/bin/python")
# shellcheck disable=SC1091
. "$VENV/bin/activate"

if ! python -c 'import torch, sys; sys.exit(sys.argv[1] == "cuda" and not torch.cuda.is_available())' \
    "${DEVICE%%:*}" 2>/dev/null; then
    log "no usable torch here: installing torch from the registry"
    "${PIP[@]}" install -q torch
fi
if compgen -G ".whl/*.whl" >/dev/null; then
    "${PIP[@]}" install -q --no-index --no-deps .whl/*.whl || log "the wheels in .whl do not fit here"
fi
# The package itself, without letting pip replace the image's torch or transformers.
"${PIP[@]}" install -q --no-deps --no-build-isolation -e . \
    || { log "editable install failed; using PYTHONPATH"; export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; }
missing=$(python - <<'EOF'
import importlib.util
need = {"marisa_trie": "marisa-trie", "faiss": "faiss-cpu", "bm25s": "bm25s",
        "Stemmer": "PyStemmer", "pydivsufsort": "pydivsufsort", "accelerate": "accelerate",
        "transformers": "transformers", "sentencepiece": "sentencepiece",
        "safetensors": "safetensors", "sklearn": "scikit-learn", "tqdm": "tqdm"}
print(" ".join(p for m, p in need.items() if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ]; then
    log "installing from the registry: $missing"
    "${PIP[@]}" install -q $missing
fi

python - >"$OUT/environment.json" <<'EOF'
import json, platform, torch, transformers, accelerate
print(json.dumps({
    "python": platform.python_version(), "torch": torch.__version__,
    "cuda": torch.version.cuda, "transformers": transformers.__version__,
    "accelerate": accelerate.__version__,
    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
}, indent=1))
EOF
cat "$OUT/environment.json" >&2

status=0
# One log for all (the device tool brings back at most 8 files from $OUT).
: >"$OUT/gpu_bench.log"
run() {  # run NAME COMMAND...: stdout to $OUT/NAME.json, stderr appended to $OUT/gpu_bench.log
    local name=$1
    shift
    log "$name: $*"
    echo "=== $name: $*" >>"$OUT/gpu_bench.log"
    if "$@" >"$OUT/$name.json" 2>>"$OUT/gpu_bench.log"; then
        cat "$OUT/$name.json"
    else
        log "$name failed; see $OUT/gpu_bench.log"
        tail -n 20 "$OUT/gpu_bench.log" >&2
        status=1
    fi
}

if [ "$QUICK" = 1 ]; then
    train=(--steps 2 --warmup 1 --repeats 1 --threads 2)
    decode=(--beams 1 10 --batches 1 8 --queries 8 --queries-batch1 2 --repeats 1 --threads 2)
    small=300 large=600 large_decode=("${decode[@]}")
else
    train=(--steps 200 --warmup 20 --repeats 3 --threads 8)
    decode=(--threads 8)
    small=5000 large=100000
    large_decode=(--threads 8 --beams 10 20 --batches 32 128 --queries 256)
fi
run train_default python -m bench.train_bench --device "$DEVICE" --size default "${train[@]}"
run train_t5small python -m bench.train_bench --device "$DEVICE" --size t5-small "${train[@]}"

if [ -d ../shared/data/scifact ] && [ "${SYNTHETIC:-0}" != 1 ]; then
    run decode_scifact python -m bench.decode_bench --device "$DEVICE" "${decode[@]}"
else
    # Only the repo travels to the GPU machine: a random corpus the size of SciFact, and a
    # larger one to see how decoding scales with the number of docids.
    run decode_synthetic_small python -m bench.decode_bench --device "$DEVICE" \
        --synthetic "$small" "${decode[@]}"
    run decode_synthetic_large python -m bench.decode_bench --device "$DEVICE" \
        --synthetic "$large" "${large_decode[@]}"
fi
exit $status
