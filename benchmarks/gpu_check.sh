#!/usr/bin/env bash
# The classifier's GPU checks in one prepared run, for a machine with CUDA (issue 4's GPU target: scoring
# one million galaxies with 5 MC-dropout passes in under ten minutes on one H100).
#
#     benchmarks/gpu_check.sh [STEP ...]        STEP: env throughput tests pipeline (default: all four, in that order)
#
# Each step runs under its own time limit, so one that hangs cannot take the others' time, and writes
# STEP.log, plus the benchmark's JSON where it has one, to $OUT (default benchmarks/results/gpu):
#
#   env         python, torch, timm and torchvision versions, the GPU, the CPU cores               (60 s)
#   throughput  classifier_throughput.py --device cuda --models convnext_nano_tree: eager vs tuned
#               (bf16, channels_last, torch.compile) training and inference, and scoring 8,192 arrays
#               and 50,000 real JPEG files with 5 MC samples + BALD: "1M galaxies, min" is the target  (330 s)
#   tests       pytest -m gpu tests/classifier/test_gpu.py (the 5 CUDA tests; fails if CUDA is absent) (200 s)
#   pipeline    classifier_input_pipeline.py: JPEG/PNG decoding per core and the scoring loader with
#               1, 4, 8 and 15 workers (the cores a GPU worker decodes with)                          (150 s)
#
# Python: $PYTHON, else .venv/bin/python, else python3 (a device machine's image has torch, timm,
# torchvision, scipy, pandas, pillow and pytest; the classifier needs nothing else for these steps).
# Real data: $REALDATA_DIR, else ../shared/realdata. Only the repository travels to a device machine, so
# copy the ring set into an ignored folder and carry it:
#
#     echo /.realdata/ >> .git/info/exclude && mkdir -p .realdata && cp -r ../shared/realdata/zoobot .realdata/
#
# (24 MiB of the 64 MiB that may travel). Without it the throughput step leaves the JPEG-file row out and
# the pipeline step fails. A session's 15 minutes of device time, a start included, hold two calls on
# one warm machine: the target first, then the rest, each under a timeout_s above its steps' limits:
#
#     device run, carry [".realdata"], timeout_s 420: REALDATA_DIR=.realdata benchmarks/gpu_check.sh env throughput
#     device run, carry [".realdata"], timeout_s 380: REALDATA_DIR=.realdata benchmarks/gpu_check.sh tests pipeline
#
# DEVICE=cpu runs the same steps on the CPU, the benchmarks with --quick (throughput at 64 px): a
# rehearsal of this script, minutes long.
set -u -o pipefail
cd "$(dirname "$0")/.."

out=${OUT:-benchmarks/results/gpu}
mkdir -p "$out"
if [ -n "${PYTHON:-}" ]; then py=$PYTHON; elif [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
device=${DEVICE:-cuda}
quick=(); small=()
if [ "$device" = cpu ]; then quick=(--quick); small=(--quick --size 64); fi
export PYTHONUNBUFFERED=1

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(env throughput tests pipeline)

failed=()
run_step() {            # run_step NAME LIMIT_S COMMAND...: the output to the terminal and to $out/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s): $*"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: rc $rc after $((SECONDS - t0)) s" | tee -a "$out/$name.log"
    [ "$rc" -eq 0 ] || failed+=("$name (rc $rc)")
}

for step in "${steps[@]}"; do
    case $step in
        env)
            run_step env 60 "$py" -c '
import platform, torch, timm, torchvision
from classifier.devices import usable_cores
print("python", platform.python_version(), "| torch", torch.__version__, "| timm", timm.__version__,
      "| torchvision", torchvision.__version__, "| cores", usable_cores())
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
            ;;
        throughput)
            run_step throughput 330 "$py" benchmarks/classifier_throughput.py --device "$device" \
                --models convnext_nano_tree "${small[@]}"
            cp benchmarks/results/classifier_throughput*_"$device".json "$out"/ 2>/dev/null
            ;;
        tests)
            if [ "$device" = cpu ]; then
                run_step tests 200 "$py" -m pytest -p no:cacheprovider -q tests/classifier/test_gpu.py
            else      # every test must run: a skip here means CUDA was not seen
                run_step tests 200 "$py" -m pytest -p no:cacheprovider -q -m gpu -rs tests/classifier/test_gpu.py
                grep -q " skipped" "$out/tests.log" && failed+=("tests (skipped: no CUDA?)")
            fi
            ;;
        pipeline)
            run_step pipeline 150 "$py" benchmarks/classifier_input_pipeline.py --workers 1 4 8 15 --repeats 3 "${quick[@]}"
            cp benchmarks/results/classifier_input_pipeline*.json "$out"/ 2>/dev/null
            ;;
        *)
            echo "unknown step '$step': the steps are env throughput tests pipeline" >&2
            exit 2
            ;;
    esac
done

echo "== results in $out: $(ls "$out" | tr '\n' ' ')"
if [ ${#failed[@]} -gt 0 ]; then
    echo "== failed: ${failed[*]}"
    exit 1
fi
