# Device call 1: install the carried wheels into /tmp/site and keep part a in /tmp/parta (the next call's carried
# .dev/b replaces the whole .dev folder there; /tmp stays while the machine is warm), then time four trainings side
# by side for 2 epochs on a stand-in GTSRB built from part a alone: /tmp/speed holds the seconds per full GTSRB
# epoch that call 2 sizes its epochs from.
set -x
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
mkdir -p /tmp/site/av
echo "# placeholder: this GPU machine lacks PyAV; the CLI imports the video module, training never opens a video" > /tmp/site/av/__init__.py
rm -rf /tmp/parta && cp -r .dev/a /tmp/parta || exit 3
export PYTHONPATH=/tmp/site NO_ALBUMENTATIONS_UPDATE=1 TSW_DATA_ROOT=/tmp/tsw_probe PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
nvidia-smi -L
python3 -c "import torch, albumentations, tinydb; print(torch.__version__, torch.cuda.is_available(), albumentations.__version__)" || exit 4
python3 - <<'PY' || exit 5
import numpy as np, os, shutil
out = "/tmp/probe_src"; os.makedirs(out + "/gtsrb", exist_ok=True)
d = dict(np.load("/tmp/parta/train_a.npz"))
d["labels"] = np.arange(len(d["labels"])) % 43  # part a holds classes 0-16 only; the timing needs all 43 (teacher)
np.savez(out + "/gtsrb/gtsrb_train_32.npz", **d)
shutil.copy("/tmp/parta/fake_test.npz", out + "/gtsrb/gtsrb_test_32.npz")
for f in ("signnames.csv", "gtsrb_meta.zip"):
    shutil.copy("/tmp/parta/" + f, out + "/gtsrb/" + f)
shutil.copytree("/tmp/parta/tsrd", out + "/tsrd", dirs_exist_ok=True)
PY
python3 -m core datasets build --source /tmp/probe_src --only GTSRB 2>&1 | tail -1 || exit 6
C="--dataset GTSRB --device cuda --quiet --loader-workers 3 --mode scratch --epochs 2 --lr 2e-3 --augment-p 0.3 --teacher artifacts/benchmark.pt"
for i in 1 2 3 4; do python3 -m core train $C --arch bn_stn --seed $i --out /tmp/probe$i.pt > /tmp/probe$i.log 2>&1 & done
wait
python3 - <<'PY' || exit 7
import torch
s = [torch.load(f"/tmp/probe{i}.pt", weights_only=True)["history"][-1]["seconds"] for i in range(1, 5)]
per = max(s) * 35219 / 21135
print("epoch-2 seconds", s, "-> about", round(per, 1), "s per GTSRB epoch, 4 side by side")
open("/tmp/speed", "w").write(f"{per:.2f}\n")
PY
echo "SETUP-OK after $(( $(date +%s) - T0 )) s"
