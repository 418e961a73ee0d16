#!/usr/bin/env bash
# For a session lent a GPU machine: the CUDA tests, then the GPU benchmark to record in BENCHMARKS.md.
# Run from the repository root, installed (pip install -e '.[test]') or not (PYTHONPATH=src, as here):
#     bash benchmarks/gpu.sh
set -euo pipefail
export PYTHONPATH=src
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
python3 -m pytest -q -p no:cacheprovider -m "slow or not slow" tests/test_cuda.py
python3 -m vggnet benchmark --device cuda --model vgg16 --batch-size 1,8,32 --compile --rounds 10
