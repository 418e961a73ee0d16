#!/usr/bin/env bash
# For a session lent a GPU machine: the GPU benchmark (against ONNX Runtime's CUDA provider where installed), the
# data pipeline's rate at the machine's core count, then the CUDA tests. Record the output in BENCHMARKS.md.
# Run from the repository root, installed (pip install -e '.[test]') or not (PYTHONPATH=src, as here):
#     bash benchmarks/gpu.sh [DIR]    # DIR (default .): where the benchmark's JSON report is written
set -euo pipefail
export PYTHONPATH="$PWD/src"
out=${1:-.}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
python3 -m vggnet benchmark --device cuda --model vgg16 --batch-size 1,8,32 --compile --peers --rounds 10 \
    --format json >"$out/gpu-benchmark.json"
python3 -c "import json, sys; from vggnet.benchmark import render_benchmark; print(render_benchmark(json.load(open(sys.argv[1]))))" \
    "$out/gpu-benchmark.json"
(cd benchmarks && python3 data_pipeline.py --images 2048)
python3 -m pytest -q -p no:cacheprovider -m "slow or not slow" tests/test_cuda.py
