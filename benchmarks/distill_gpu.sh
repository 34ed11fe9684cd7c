#!/usr/bin/env bash
# benchmarks/distill.py on a `device` GPU machine (no network; wheels in .whl, the quickstart's RLVR
# model carried from runs/quickstart/rlvr/final). One call:
#   run: bash benchmarks/distill_gpu.sh 120      carry: [.whl, runs/quickstart/rlvr/final]
# Runs SFT and on-policy distillation, seeds 0-2, each with BUDGET seconds of training, all at once on
# the one GPU (so they share it alike), plus SFT at fixed step counts (how many steps the CPU demo
# needs); rows and logs come back in $OUT.
set -u
KEEP=/root/keep
BUDGET=${1:-120}
mkdir -p $KEEP
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $KEEP/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=$KEEP/site:$PWD/src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
python -c "import srl_rlvr.distill.run, srl_rlvr.evaluate.run" || exit 1
T=runs/quickstart/rlvr/final
timeout 520 python benchmarks/distill.py --config examples/distill.yaml --teacher $T --arms sft,on_policy \
    --seeds 0,1,2 --budget-s "$BUDGET" --out $KEEP/equal sft.epochs=1000 distill.on_policy.max_steps=100000 \
    >"$OUT/equal.txt" 2>&1 &
for steps in 300 1000 3000; do
    timeout 520 python benchmarks/distill.py --config examples/distill.yaml --teacher $T --arms sft --seeds 0 \
        --out $KEEP/steps$steps sft.max_steps=$steps >"$OUT/steps$steps.txt" 2>&1 &
done
wait
nvidia-smi --query-gpu=name,memory.used --format=csv
cp $KEEP/equal/result.json "$OUT/equal.json" 2>/dev/null
for steps in 300 1000 3000; do cp $KEEP/steps$steps/result.json "$OUT/steps$steps.json" 2>/dev/null; done
(cd $KEEP && tar czf "$OUT/logs.tgz" equal/*.log steps*/*.log)
tail -12 "$OUT/equal.txt"; for s in 300 1000 3000; do tail -1 "$OUT/steps$s.txt"; done
