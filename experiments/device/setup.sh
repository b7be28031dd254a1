# Device call 1: install the carried wheels, then a smoke test of GPU training with an augmentation pool.
set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .dev/site .whl/*.whl || exit 3
mkdir -p .dev/site/av
echo "# placeholder: this GPU machine lacks PyAV; the CLI imports the video module, training never opens a video" > .dev/site/av/__init__.py
export PYTHONPATH=$PWD/.dev/site NO_ALBUMENTATIONS_UPDATE=1 TSW_DATA_ROOT=/tmp/tsw_smoke PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-smi -L; nproc; free -g | head -2
python3 -c "import torch, albumentations, tinydb; print(torch.__version__, torch.cuda.is_available(), albumentations.__version__)"
python3 -m core train --dataset Sample48 --mode scratch --arch bn_stn --epochs 2 --loader-workers 4 --device cuda --seed 0 --quiet --out /tmp/smoke.pt || exit 4
python3 -m core train --dataset Sample48 --mode resume --base /tmp/smoke.pt --teacher /tmp/smoke.pt --epochs 1 --loader-workers 2 --device cuda --seed 0 --quiet --out /tmp/smoke2.pt || exit 5
ls -la .dev/a | head
echo SMOKE-OK
