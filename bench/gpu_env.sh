# Sourced by bench/gpu_fast.sh and bench/gpu_tuning.sh: offline Hugging Face, unbuffered Python, a kept Inductor
# cache, and diffusers from carried wheels (WHEELS=.whl) on the project's lent GPU machines, which lack it.
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$HOME/.cache/latentlib/torchinductor}
if [ -n "${WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=${PYTHONPATH:-}:$PWD
fi
