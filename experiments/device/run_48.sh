# Device call 2: rebuild GTSRB_48 from the shared data, then train the three 48-class models with the card's recipes.
export PYTHONPATH=/tmp/site NO_ALBUMENTATIONS_UPDATE=1 TSW_DATA_ROOT=/tmp/tsw PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
T0=$(date +%s)
test -f /tmp/site/albumentations/__init__.py || { echo "call 1's install is gone (a fresh machine)"; exit 3; }
test -f /tmp/parta/train_a.npz || { echo "part a is gone (a fresh machine)"; exit 3; }
python3 .dev/b/unpack.py /tmp/src || exit 4
python3 -m core datasets build --source /tmp/src --only GTSRB_48 2>&1 | tail -2 | tee $OUT/build.log || exit 5
python3 -m core datasets list | tee -a $OUT/build.log
echo "data ready after $(( $(date +%s) - T0 )) s"
C="--dataset GTSRB_48 --device cuda --quiet"
python3 -m core train $C --mode scratch --arch bn_stn --epochs 24 --lr 2e-3 --augment-p 0.1 --seed 0 --loader-workers 5 --out $OUT/scratch48.pt > $OUT/scratch48.log 2>&1 &
S=$!
timeout 200 python3 -m core train $C --mode incremental --base artifacts/benchmark.pt --epochs 6 --new-class-epochs 1 --finetune-lr 1e-3 --no-calibrate-new-classes --replay-per-class 20 --augment-p 0.1 --seed 0 --loader-workers 9 --out $OUT/incremental48.pt > $OUT/incremental48.log 2>&1
echo "incremental48 rc $? after $(( $(date +%s) - T0 )) s"; tail -3 $OUT/incremental48.log
LEFT=$(( 560 - ($(date +%s) - T0) ))
timeout $LEFT python3 -m core train $C --mode scratch --arch bn_stn --teacher $OUT/incremental48.pt --epochs 75 --lr 2e-3 --augment-p 0.3 --seed 0 --loader-workers 10 --out $OUT/robust48.pt > $OUT/robust48.log 2>&1
echo "robust48 rc $? after $(( $(date +%s) - T0 )) s"; tail -3 $OUT/robust48.log
wait $S; echo "scratch48 rc $?"; tail -3 $OUT/scratch48.log
if [ ! -f $OUT/robust48.pt ]; then tar czf $OUT/runs.tgz -C /tmp/tsw runs store 2>/dev/null; fi
ls -la $OUT
