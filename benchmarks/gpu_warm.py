"""Each visible GPU's bf16 matmul throughput, cold and after a burn of all of them at once.

Why: on the 2-GPU benchmark host the second GPU, first used by a run's 2-GPU rows, ran the same
matmuls ~1.5x slower than the first GPU (warm from the 1-GPU rows) for the first minute or so; the
2-GPU rows then measured a cold GPU, not DDP. `scale_out_gpu.sh` runs this before its rows so that
every GPU is measured warm, and this prints the evidence (TFLOP/s per GPU, before and after).

    python benchmarks/gpu_warm.py --seconds 30
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

import torch

SIZE = 8192


def tflops(device: torch.device, seconds: float = 1.0) -> float:
    a = torch.randn(SIZE, SIZE, device=device, dtype=torch.bfloat16)
    b = torch.randn(SIZE, SIZE, device=device, dtype=torch.bfloat16)
    torch.cuda.synchronize(device)
    began, count = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize(device)
        count += 10
    return round(2 * SIZE**3 * count / (time.perf_counter() - began) / 1e12, 1)


def burn(devices: list[torch.device], seconds: float) -> None:
    """Matmuls on every GPU at once (launches are asynchronous, so one loop keeps all busy)."""
    pairs = [(torch.randn(SIZE, SIZE, device=d, dtype=torch.bfloat16),) * 2 for d in devices]
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        for a, b in pairs:
            for _ in range(20):
                a @ b
        for d in devices:
            torch.cuda.synchronize(d)


def clocks() -> list[str]:
    query = "--query-gpu=index,pstate,clocks.sm,clocks.max.sm,power.draw,temperature.gpu"
    out = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True)
    return out.stdout.strip().splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="burn time, all GPUs at once")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_warm.py: no CUDA GPU visible")
    devices = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    row: dict[str, object] = {"clocks_idle": clocks()}
    row["cold_tflops"] = [tflops(d) for d in devices]
    burn(devices, args.seconds)
    row["clocks_after_burn"] = clocks()
    row["warm_tflops"] = [tflops(d) for d in devices]
    print("WARM " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
