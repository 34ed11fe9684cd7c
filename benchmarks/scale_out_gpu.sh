#!/usr/bin/env bash
# benchmarks/scale_out.py and RLVR reward curves on a `device` machine with 2 GPUs (no network; wheels
# in .whl). Calls to an nvidia-h200-x2 machine:
#   run: bash benchmarks/scale_out_gpu.sh sharded      carry: [.whl]
#   run: bash benchmarks/scale_out_gpu.sh warm ddp srl-repeat   carry: [.whl]   (the DDP table rows)
#   run: bash benchmarks/scale_out_gpu.sh curves   carry: [.whl]
#   run: bash benchmarks/scale_out_gpu.sh ddp guard zero   carry: [.whl, .whl-ds]
# sharded: a 7B-architecture model (float32 masters + Adam: ~122 GB, more than one H200) under FSDP2
# on 2 GPUs. ddp: the 0.5B architecture, RLVR- and SRL-shaped steps, 1 and 2 GPUs, shipped ddp.yaml.
# curves: `srl-rlvr train rlvr` on the quickstart config, global batch 128, seeds 0 and 1, on 1 GPU and
# with --gpus 2. guard: `srl-rlvr train rlvr` in one process that sees both GPUs (it must train on
# one, not through nn.DataParallel). zero: the 0.5B RLVR step under the shipped zero2.yaml and
# zero3.yaml (DeepSpeed from .whl-ds: a py3-none-any wheel built from the sdist with DS_BUILD_OPS=0,
# plus its dependencies). Rows land in $OUT/rows.jsonl, curves in $OUT/curves.json. 1-GPU rows run
# with CUDA_VISIBLE_DEVICES=0, so that they are measured on the same host as the 2-GPU rows. warm
# first: the first 2-GPU run on a fresh machine ran ~1.4x slower unless the GPUs were warmed.
# srl-profile, srl-phases, srl-kernels, srl-broadcast: how the SRL shape's 2-GPU time was traced
# (BENCHMARKS.md, "Beyond one GPU").
# leads: the SRL shape with each `scale_out` option off and on (config.py ScaleOutConfig), 1- and 2-GPU
# rows alternating, REPEATS rounds (default 2) over LEADS (default "off overlap hostpool static all"),
# at the KL weight SRL trains with (BETA, default 0.1: the reference pass the reward overlap hides
# behind). One round of the five is 10 runs; split LEADS over calls to stay inside a call's limit:
#   run: LEADS="off overlap" REPEATS=3 bash benchmarks/scale_out_gpu.sh warm leads   carry: [.whl]
# STEP_FLAGS adds flags to every step run of any part, e.g. STEP_FLAGS="--overlap-rewards --beta 0.1"
# bash benchmarks/scale_out_gpu.sh warm srl-repeat (the rows keep their names: note the flags).
set -u
KEEP=/root/keep
mkdir -p $KEEP
[ -d $KEEP/site/trl ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target $KEEP/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=$KEEP/site:$PWD/src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=4 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
CONFIGS=src/srl_rlvr/assets/accelerate
launch() {  # launch CONFIG PROCESSES ARGS...
    local config=$1 n=$2; shift 2
    timeout ${LIMIT:-400} python3 -m accelerate.commands.launch --config_file $CONFIGS/$config.yaml --num_processes $n \
        --main_process_port $((29500 + RANDOM % 1000)) benchmarks/scale_out.py step "$@" ${STEP_FLAGS:-} 2>&1 \
        | grep -E "^ROW|Error|error|Traceback|rollouts:" | tail -20
}
for part in "$@"; do
    case $part in
    sharded)
        launch fsdp2 2 --arch 7b --shape rlvr --per-gpu 16 --micro 4 --steps 3 --checkpointing --name fsdp2-7b-rlvr-2gpu
        ;;
    ddp)
        for shape in rlvr srl; do
            CUDA_VISIBLE_DEVICES=0 launch ddp 1 --arch 0.5b --shape $shape --per-gpu 64 --steps 5 \
                --name ddp-0.5b-$shape-1gpu
            launch ddp 2 --arch 0.5b --shape $shape --per-gpu 64 --steps 5 --name ddp-0.5b-$shape-2gpu
        done
        ;;
    warm)  # every GPU warm before any row (a GPU's first minute ran matmuls ~1.5x slower: gpu_warm.py)
        python3 benchmarks/gpu_warm.py --seconds 30 2>&1 | grep -E "^WARM|Error"
        ;;
    srl-repeat)  # the SRL shape again, 10 timed steps, alternating 1 and 2 GPUs: the spread between runs
        for n in 1 2 1 2; do
            CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((n - 1))) launch ddp $n --arch 0.5b --shape srl --per-gpu 64 --steps 10 \
                --name ddp-0.5b-srl-${n}gpu-repeat
        done
        ;;
    srl-profile)  # cProfile of each rank, 1 GPU and 2 GPUs: what two ranks add outside the reward
        nvidia-smi topo -m
        timeout 120 python3 -m accelerate.commands.launch --config_file $CONFIGS/ddp.yaml --num_processes 2 \
            benchmarks/scale_out.py allreduce 2>&1 | grep -E "^\{|Error"
        for n in 1 2; do
            CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((n - 1))) launch ddp $n --arch 0.5b --shape srl --per-gpu 64 --steps 6 \
                --cprofile --name srl-${n}gpu
        done
        ;;
    srl-phases)  # each rank's synced time per phase, 1 and 2 GPUs; then two independent 1-GPU runs at
                 # once (one a GPU): if both slow down as DDP does, the cost is the host's, not DDP's
        for n in 1 2; do
            CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((n - 1))) launch ddp $n --arch 0.5b --shape srl --per-gpu 64 --steps 6 \
                --phases --name srl-${n}gpu-phases
        done
        for gpu in 0 1; do
            CUDA_VISIBLE_DEVICES=$gpu launch ddp 1 --arch 0.5b --shape srl --per-gpu 64 --steps 10 \
                --name srl-1gpu-concurrent$gpu &
        done
        wait
        ;;
    srl-kernels)  # torch.profiler of one SRL-shaped step, 1 and 2 GPUs; then DDP without buffer broadcast
        for n in 1 2; do
            CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((n - 1))) launch ddp $n --arch 0.5b --shape srl --per-gpu 64 --steps 4 \
                --torch-profile --name srl-${n}gpu-kernels
        done
        launch ddp 2 --arch 0.5b --shape srl --per-gpu 64 --steps 6 --phases --no-broadcast-buffers \
            --name srl-2gpu-nobroadcast
        ;;
    srl-broadcast)  # A/B of DDP's buffer broadcast before each forward, interleaved with 1-GPU runs
        for run in 1 2b 2n 1 2n 2b; do
            n=${run:0:1}; flag=; tail=
            [ "$run" = 2n ] && { flag=--no-broadcast-buffers; tail=-nobroadcast; }
            CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((n - 1))) launch ddp $n --arch 0.5b --shape srl --per-gpu 64 --steps 10 \
                $flag --name ddp-0.5b-srl-${n}gpu$tail
        done
        ;;
    leads)  # each scale_out option off and on, SRL shape, 1 and 2 GPUs alternating
        for round in $(seq ${REPEATS:-2}); do
            for lead in ${LEADS:-off overlap hostpool static all}; do
                case $lead in
                off) flags= ;;
                overlap) flags=--overlap-rewards ;;
                hostpool) flags=--host-reward-pool ;;
                static) flags=--static-graph ;;
                all) flags="--overlap-rewards --host-reward-pool --static-graph" ;;
                *) echo "unknown lead $lead (one of off overlap hostpool static all)"; continue ;;
                esac
                for n in 1 2; do
                    CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((n - 1))) launch ddp $n --arch 0.5b --shape srl --per-gpu 64 \
                        --steps 10 --beta ${BETA:-0.1} $flags --name ddp-0.5b-srl-${n}gpu-$lead
                done
            done
        done
        ;;
    guard)
        timeout 300 python3 -m srl_rlvr train rlvr examples/quickstart.yaml registry.tracking=false \
            rlvr.max_steps=5 output_dir=$KEEP/guard --out $KEEP/guard/rlvr >$KEEP/guard.log 2>&1
        echo "guard: exit $?"; grep -E "GPUs visible|Error|error" $KEEP/guard.log | tail -5
        wc -l $KEEP/guard/rlvr/metrics.jsonl
        ;;
    zero)
        [ -d $KEEP/site/deepspeed ] || python3 -m pip install -q --no-index --no-deps --no-compile \
            --target $KEEP/site .whl-ds/*.whl 2>&1 | tail -1
        LIMIT=150 launch zero2 2 --arch 0.5b --shape rlvr --per-gpu 64 --steps 3 --name zero2-0.5b-rlvr-2gpu
        LIMIT=150 launch zero3 2 --arch 0.5b --shape rlvr --per-gpu 16 --steps 2 --name zero3-0.5b-rlvr-2gpu
        ;;
    curves)
        common=(examples/quickstart.yaml registry.tracking=false rlvr.max_steps=30 rlvr.save_steps=1000)
        for seed in 0 1; do
            timeout 300 python3 -m srl_rlvr train rlvr "${common[@]}" seed=$seed output_dir=$KEEP/c1-$seed \
                --out $KEEP/c1-$seed/rlvr >$KEEP/c1-$seed.log 2>&1
            timeout 300 python3 -m srl_rlvr train rlvr "${common[@]}" seed=$seed output_dir=$KEEP/c2-$seed \
                --out $KEEP/c2-$seed/rlvr --gpus 2 >$KEEP/c2-$seed.log 2>&1
            tail -2 $KEEP/c1-$seed.log $KEEP/c2-$seed.log
        done
        python3 - <<'PY'
import json, os, pathlib
keep = pathlib.Path("/root/keep")
curves = {}
for run in sorted(keep.glob("c[12]-*")):
    path = run / "rlvr" / "metrics.jsonl"
    if path.is_file():
        rows = [json.loads(l) for l in path.read_text().splitlines()]
        curves[run.name] = {"reward": [r["reward"] for r in rows if "reward" in r],
                            "train_runtime": next((r["train_runtime"] for r in rows if "train_runtime" in r), None)}
pathlib.Path(os.environ["OUT"], "curves.json").write_text(json.dumps(curves))
for name, c in curves.items():
    print(name, len(c["reward"]), "steps; mean reward first 10", round(sum(c["reward"][:10]) / 10, 3),
          "last 10", round(sum(c["reward"][-10:]) / 10, 3), "runtime", c["train_runtime"])
PY
        ;;
    esac
done
[ -f $OUT/rows.jsonl ] && python3 benchmarks/scale_out.py summarise $OUT/rows.jsonl
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
