# Device call 2 (43-class sweep): rebuild GTSRB from the shared data, then train four committee candidates side by
# side, their epochs sized from call 1's seconds per epoch to end by BUDGET seconds after the start.
# On 2026-12-04 a factor of 1.12 and a 45 s margin were too little (call 1 said 7.1 s per epoch; the start, the
# teachers' loading and the epochs' spread took the rest): all four were cut at epochs 47-53 of 57 and finished by
# resuming their runs (`python -m core train --resume-run ID`) in a third call on the warm machine. Hence 1.35, 60 s.
export PYTHONPATH=/tmp/site NO_ALBUMENTATIONS_UPDATE=1 TSW_DATA_ROOT=/tmp/tsw PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
T0=$(date +%s); END=$(( T0 + ${BUDGET:-520} ))
test -f /tmp/site/albumentations/__init__.py || { echo "call 1's install is gone (a fresh machine)"; exit 3; }
test -f /tmp/speed || { echo "call 1's timing is gone"; exit 3; }
python3 .dev/b/unpack.py /tmp/src || exit 4
python3 -m core datasets build --source /tmp/src --only GTSRB 2>&1 | tail -1 || exit 5
python3 -m core datasets list | grep GTSRB | tee $OUT/build.log
LEFT=$(( END - $(date +%s) - 60 ))
E=$(python3 -c "print(max(6, min(150, int($LEFT / ($(cat /tmp/speed) * 1.35)))))")
echo "data ready after $(( $(date +%s) - T0 )) s; $LEFT s left: $E epochs" | tee -a $OUT/build.log
C="--dataset GTSRB --device cuda --quiet --loader-workers 3 --mode scratch --epochs $E --lr 2e-3 --teacher artifacts/benchmark.pt"
K=$(( END - $(date +%s) - 5 ))
timeout $K python3 -m core train $C --arch bn_stn --augment-p 0.3 --seed 2 --out $OUT/g_stn_s2.pt > /tmp/g1.log 2>&1 &
timeout $K python3 -m core train $C --arch bn_stn_lcn --augment-p 0.3 --seed 3 --out $OUT/g_lcn_s3.pt > /tmp/g2.log 2>&1 &
timeout $K python3 -m core train $C --arch bn_stn --augment-p 0.3 --harden-p 0.1 --seed 4 --out $OUT/g_stnh_s4.pt > /tmp/g3.log 2>&1 &
timeout $K python3 -m core train $C --arch bn_stn_lcn --augment-p 0.2 --harden-p 0.1 --seed 5 --out $OUT/g_lcnh_s5.pt > /tmp/g4.log 2>&1 &
wait
tail -n 3 /tmp/g?.log; tar czf $OUT/logs.tgz -C /tmp g1.log g2.log g3.log g4.log
echo "done after $(( $(date +%s) - T0 )) s"; ls -la $OUT
