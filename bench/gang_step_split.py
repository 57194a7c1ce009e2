#!/usr/bin/python3
"""How much of a training step halves when a gang of 2 halves the batch (reference, python3-torch).

The MLP 784-2048-2048-10 of bench/gang_bench.sh, one thread: CPU time per step of forward +
backward at the global batch and at half of it, and of an AdamW step (foreach: fused over the
tensors, as FlatOptimizer; every member of a data-parallel gang runs it in full). Prints the
bound this puts on a 2-worker speedup even with a free allreduce:
(fwd_bwd(B) + step) / (fwd_bwd(B / 2) + step).

Usage: /usr/bin/python3 bench/gang_step_split.py [GLOBAL_BATCH=256] [STEPS=10]
"""
import sys
import time

import torch


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(784, 2048), torch.nn.ReLU(),
                                torch.nn.Linear(2048, 2048), torch.nn.ReLU(),
                                torch.nn.Linear(2048, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)  # one op per kind, as FlatOptimizer

    def forward_backward(rows):
        x, y = torch.randn(rows, 784), torch.randint(0, 10, (rows,))
        torch.nn.functional.cross_entropy(model(x), y).backward()

    def cpu_ms(step):
        step()  # warm-up
        start = time.process_time()
        for _ in range(steps):
            step()
        return (time.process_time() - start) / steps * 1e3

    full = cpu_ms(lambda: forward_backward(batch))
    half = cpu_ms(lambda: forward_backward(batch // 2))
    update = cpu_ms(opt.step)
    print(f"CPU ms per step: fwd+bwd batch {batch} {full:.1f}, batch {batch // 2} {half:.1f}, "
          f"AdamW step {update:.1f}")
    print(f"bound on the 2-worker speedup with a free allreduce: "
          f"{(full + update) / (half + update):.2f}x")


if __name__ == "__main__":
    main()
