#!/usr/bin/env bash
# benchmarks/srl_regime.py on a `device` machine with 2 GPUs (no network; wheels in .whl), in one call:
#   run: bash benchmarks/srl_regime_gpu.sh BUDGET_S [HELDOUT [MORE ARGS]]   carry: [.whl]   kind: nvidia-h200-x2
# (MORE ARGS go to every process, e.g. `--styles terse`; GUARD=0 skips the guard check; ARMS="..."
# picks arms, default all of them and the gated `default` recipe; one GPU works too, more slowly.)
# Every (seed, arm) is its own process, all started together and spread over the two GPUs, so each
# arm trains for BUDGET_S seconds under the same sharing of the GPUs as every other arm (equal GPU
# time); a process a seed scores the base meanwhile. Then --merge joins them by seed into
# $OUT/result.json and $OUT/srl_regime.png. First, `guard`: `srl-rlvr train rlvr` in one process
# that sees both GPUs must train on one.
set -u
BUDGET=${1:-240}
HELDOUT=${2:-200}
KEEP=/root/keep
rm -rf $KEEP/regime $KEEP/regime-*.log
mkdir -p $KEEP
[ -d $KEEP/site/trl ] || python3 -m pip install -q --no-index --no-deps --no-compile --target $KEEP/site \
    .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=$KEEP/site:$PWD/src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false \
    PYTHONUNBUFFERED=1

[ "${GUARD:-1}" = 1 ] && timeout 90 python3 -m srl_rlvr train rlvr examples/quickstart.yaml registry.tracking=false rlvr.max_steps=3 \
    output_dir=$KEEP/guard --out $KEEP/guard/rlvr >$KEEP/guard.log 2>&1
[ "${GUARD:-1}" = 1 ] && echo "guard: exit $?, $(grep -c step $KEEP/guard/rlvr/metrics.jsonl) metric rows" \
    && grep -E "GPUs visible|Error" $KEEP/guard.log | tail -3

GPUS=$(nvidia-smi -L | wc -l)  # the processes are spread over however many GPUs the machine has
i=0
for seed in 0 1 2; do
    for arm in ${ARMS:-base sft rlvr srl srl_rlvr sft_rlvr default}; do
        CUDA_VISIBLE_DEVICES=$((i % GPUS)) timeout 450 python3 benchmarks/srl_regime.py --seeds $seed --arms $arm \
            --budget-s $BUDGET --heldout $HELDOUT --samples 8 --eval-batch 256 --set registry.tracking=false \
            "${@:3}" --out $KEEP/regime/s$seed-$arm >$KEEP/regime-s$seed-$arm.log 2>&1 &
        i=$((i + 1))
    done
done
wait
grep -h "^seed" $KEEP/regime-*.log | sort
grep -l -E "Traceback|Error" $KEEP/regime-*.log | while read -r log; do echo "== $log"; tail -5 "$log"; done
python3 benchmarks/srl_regime.py --merge $KEEP/regime/*/result.json --out $OUT 2>&1 | tail -40
