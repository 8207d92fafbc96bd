#!/usr/bin/env bash
# The GPU check for the lent machine as it is (docs/gpu.md says the chain of calls): Python 3.12 with its own
# packages and CUDA 13 libraries, no network, no TensorRT, no ROS. onnxruntime-gpu's wheel (255.6 MB) is too
# large for one call: it travels in pieces of 40 MB (.gpu_wheel/, ignored by git), one per call, each appended
# to a scratch folder there; the last call checks the whole wheel's size and SHA-256, installs it with
# `pip install --no-deps --target` into the scratch folder, puts that first on PYTHONPATH (shadowing the
# machine's CPU onnxruntime) and runs scripts/gpu_check.py, which writes $OUT/gpu_results.json.
#
#   scripts/gpu_check.sh --prepare          here: download the wheel, cut it into .gpu_wheel/pieces/
#   scripts/gpu_check.sh --piece N          there: append piece N (0-based, in order; checked)
#   scripts/gpu_check.sh --run [--piece N]  there: append the last piece, install, measure
#   scripts/gpu_check.sh --cpu-dry-run      anywhere: every step of the measurement on the CPU (no wheel)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WHEEL=onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
WHEEL_BYTES=255569273
WHEEL_SHA256=05d548956197b9d01f59b625de740e0d6be3593f874e241a12dc0362650ecdf7
PIECE_BYTES=$((40 * 1024 * 1024))
# SHA-256 of each piece (`--prepare` checks that its pieces are these).
PIECE_SHA256=(
    943bdb11a4ca188ad66c261b5d58486f53162871f921abe3c89b80abb5068b4e
    0ec85eefdba61098d499187e04226b9c24694e36f803b3cc0da3d61d2396a2c1
    eb6b7e7c8a309e933dc298b9956df7d487b0c0fb2d7bf10ec817aa924569c3f2
    7cc75f7669ce72ab7584daa216da4247eb14042127bc76cfd67d28e971585ebd
    0af449e0f5b4236876deba8119d40a09c92c2cbf4e6526e27b9a0c7b68e164b8
    1d23e51e268786677c2f8d98b75e79f058df25be3fa02197efe2d1245fa35d7c
    cfb9df07b9f303c0ebaaf1528d0080174632158833f5bdd969693c0594b158ab
)
PIECES=.gpu_wheel/pieces
SCRATCH=${FASTHMR_GPU_SCRATCH:-/tmp/fasthmr-gpu-check}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$SCRATCH/out}

prepare() {
    mkdir -p .gpu_wheel
    if [ ! -f ".gpu_wheel/$WHEEL" ]; then
        "$PYTHON" -m pip download onnxruntime-gpu==1.31.1 --no-deps --python-version 3.12 \
            --platform manylinux_2_28_x86_64 --only-binary=:all: -d .gpu_wheel
    fi
    echo "$WHEEL_SHA256  .gpu_wheel/$WHEEL" | sha256sum -c -
    rm -rf "$PIECES" && mkdir -p "$PIECES"
    split -b "$PIECE_BYTES" -d -a 2 ".gpu_wheel/$WHEEL" "$PIECES/part-"
    local index
    for index in "${!PIECE_SHA256[@]}"; do check_piece "$index"; done
    ls -l "$PIECES"
}

piece_path() { printf '%s/part-%02d' "$PIECES" "$1"; }

check_piece() {
    local piece
    piece=$(piece_path "$1")
    [ -f "$piece" ] || { echo "gpu_check: $piece is not here (on the device: name it in carry)" >&2; exit 1; }
    echo "${PIECE_SHA256[$1]}  $piece" | sha256sum -c --quiet - \
        || { echo "gpu_check: $piece is not the piece prepared" >&2; exit 1; }
}

# Appends piece $1 to the wheel being assembled, after checking that the pieces before it are all there.
append_piece() {
    local index=$1 have=0
    check_piece "$index"
    mkdir -p "$SCRATCH"
    [ -f "$SCRATCH/wheel.part" ] && have=$(stat -c %s "$SCRATCH/wheel.part")
    if [ "$have" -ne $((index * PIECE_BYTES)) ]; then
        echo "gpu_check: the scratch wheel has $have bytes, piece $index needs $((index * PIECE_BYTES)) before it" \
             "(a cold machine lost the earlier pieces: start again from piece 0)" >&2
        [ "$index" -eq 0 ] || exit 1
        rm -f "$SCRATCH/wheel.part"
    fi
    cat "$(piece_path "$index")" >> "$SCRATCH/wheel.part"
    echo "gpu_check: piece $index of $((${#PIECE_SHA256[@]} - 1)) appended: $(stat -c %s "$SCRATCH/wheel.part") bytes"
}

install_wheel() {
    local size
    # A second --run (after a failed measurement) finds the wheel assembled already.
    [ -f "$SCRATCH/wheel.part" ] || [ ! -f "$SCRATCH/$WHEEL" ] || mv "$SCRATCH/$WHEEL" "$SCRATCH/wheel.part"
    size=$(stat -c %s "$SCRATCH/wheel.part" 2>/dev/null || echo 0)
    [ "$size" -eq "$WHEEL_BYTES" ] || { echo "gpu_check: the wheel has $size bytes, not $WHEEL_BYTES" >&2; exit 1; }
    echo "$WHEEL_SHA256  $SCRATCH/wheel.part" | sha256sum -c --quiet - \
        || { echo "gpu_check: the wheel's SHA-256 differs" >&2; exit 1; }
    mv "$SCRATCH/wheel.part" "$SCRATCH/$WHEEL"
    rm -rf "$SCRATCH/ort"
    "$PYTHON" -m pip install --no-deps --no-index --quiet --target "$SCRATCH/ort" "$SCRATCH/$WHEEL"
}

measure() {
    local first=$1
    shift
    export PYTHONPATH="${first:+$first:}$PWD${PYTHONPATH:+:$PYTHONPATH}"
    mkdir -p "$OUT"
    "$PYTHON" -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.__file__, o.get_available_providers())'
    "$PYTHON" scripts/gpu_check.py --out "$OUT/gpu_results.json" --cache "$SCRATCH/cache" "$@"
}

case "${1:-}" in
    --prepare) prepare ;;
    --piece) append_piece "$2" ;;
    --run)
        if [ "${2:-}" = "--piece" ]; then append_piece "$3"; shift 3; else shift; fi
        install_wheel
        nvidia-smi -L || true
        measure "$SCRATCH/ort" "$@" ;;
    --cpu-dry-run) shift; measure "" --cpu-dry-run "$@" ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
