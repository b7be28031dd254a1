# Device call 2 (48-class committee sweep): rebuild GTSRB_48 from the shared data, then train four committee
# candidates side by side, distilled from the shipped robust48 (in this call's working tree),
# their epochs sized from call 1's seconds per GTSRB epoch (scaled to GTSRB_48's 36,297 train images) to end by
# BUDGET seconds after the start. Factor 1.35 and a 60 s margin as run_43.sh.
export PYTHONPATH=/tmp/site NO_ALBUMENTATIONS_UPDATE=1 TSW_DATA_ROOT=/tmp/tsw PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
T0=$(date +%s); END=$(( T0 + ${BUDGET:-520} ))
test -f /tmp/site/albumentations/__init__.py || { echo "call 1's install is gone (a fresh machine)"; exit 3; }
test -f /tmp/speed || { echo "call 1's timing is gone"; exit 3; }
test -f artifacts/robust48.pt || { echo "the teacher is gone"; exit 3; }
python3 .dev/b/unpack.py /tmp/src || exit 4
python3 -m core datasets build --source /tmp/src --only GTSRB_48 2>&1 | tail -1 || exit 5
python3 -m core datasets list | grep GTSRB | tee $OUT/build.log
LEFT=$(( END - $(date +%s) - 60 ))
E=$(python3 -c "print(max(6, min(150, int($LEFT / ($(cat /tmp/speed) * 36297 / 35219 * 1.35)))))")
echo "data ready after $(( $(date +%s) - T0 )) s; $LEFT s left: $E epochs" | tee -a $OUT/build.log
C="--dataset GTSRB_48 --device cuda --quiet --loader-workers 3 --mode scratch --epochs $E --lr 2e-3 --teacher artifacts/robust48.pt"
K=$(( END - $(date +%s) - 5 ))
timeout $K python3 -m core train $C --arch bn_stn --augment-p 0.35 --seed 2 --out $OUT/g48_stn_s2.pt > /tmp/g1.log 2>&1 &
timeout $K python3 -m core train $C --arch bn_stn_lcn --augment-p 0.35 --seed 3 --out $OUT/g48_lcn_s3.pt > /tmp/g2.log 2>&1 &
timeout $K python3 -m core train $C --arch bn_stn --augment-p 0.5 --seed 4 --out $OUT/g48_stn_s4.pt > /tmp/g3.log 2>&1 &
timeout $K python3 -m core train $C --arch bn_stn --augment-p 0.35 --harden-p 0.15 --seed 5 --out $OUT/g48_stnh_s5.pt > /tmp/g4.log 2>&1 &
wait
tail -n 3 /tmp/g?.log; tar czf $OUT/logs.tgz -C /tmp g1.log g2.log g3.log g4.log
if ls $OUT/*.pt >/dev/null 2>&1; then :; else tar czf $OUT/runs.tgz -C /tmp/tsw runs store 2>/dev/null; fi
echo "done after $(( $(date +%s) - T0 )) s"; ls -la $OUT
