#!/usr/bin/env bash
# The DAPO preset at the 64-token limit against GRPO mu=1, the command of BENCHMARKS.md's "Several
# updates per rollout batch" table A: 3 seeds x 2 arms as parallel processes on one GPU, 90 s of
# training each on 4-5-step arithmetic, then the paired held-out table. Run after
# `bash benchmarks/recipes_gpu.sh carry1` has put the wheels under /root/keep/site.
set -u
KEEP=/root/keep
export PYTHONPATH=$KEEP/site:$PWD/src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
DIR=$KEEP/dapo64
common=(--options '{"min_steps": 4, "max_steps": 5}' --harder '{"min_steps": 6, "max_steps": 7}'
    --train 4000 --heldout 1000 --budget-s 90 --arms rlvr)
steps=(srl.max_steps=100000 rlvr.max_steps=100000 sft.max_steps=100000)
pids=()
for s in 0 1 2; do
    timeout 560 python3 benchmarks/learning.py --seeds $s "${common[@]}" --label grpo_mu1 \
        --out $DIR/grpo_mu1-s$s --set "${steps[@]}" >$KEEP/log-dapo64-grpo_mu1-$s.txt 2>&1 &
    pids+=($!)
    timeout 560 python3 benchmarks/learning.py --seeds $s "${common[@]}" --label dapo_64 \
        --out $DIR/dapo_64-s$s --set "${steps[@]}" rlvr.algorithm=dapo >$KEEP/log-dapo64-dapo_64-$s.txt 2>&1 &
    pids+=($!)
done
wait "${pids[@]}"
for f in $KEEP/log-dapo64-*.txt; do grep -q Traceback "$f" && { echo "== $f"; tail -n 5 "$f"; }; done
python3 benchmarks/learning.py --merge $DIR/*/results.json --compare grpo_mu1 dapo_64 --out $DIR/merged \
    | tee "$OUT/dapo64-table.txt"
(cd $KEEP && tar czf "$OUT/dapo64.tgz" dapo64 log-dapo64-*.txt)
