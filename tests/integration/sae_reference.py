#!/usr/bin/python3
"""Plain PyTorch sparse-autoencoder reference for tests/integration/sae_test.cc.

Usage: sae_reference.py INPUT.json
INPUT: {"checkpoint": "best.pt" (a `lattice checkpoint download` of a train trial: an MLP
        with one hidden block, input.mean / input.std), "images": idx3 .gz, "labels": idx1
        .gz, "scale": float, "seed": int, "expansion": int, "l1_coefficient": float,
        "epochs": int, "batch_size": int, "lr": float, "validation_fraction": float,
        "split_seed": int, "dead_window": int, "purity_top": int}
Recomputes the hidden-layer activations of every image ((x * scale - mean) / std, Linear,
ReLU: the embed job's layer -2), splits and shuffles them with the same Fisher-Yates over
std::mt19937_64 as Lattice (jobs/dataset.cc MakeSplit, the trainer's epoch order), starts
from the same initial weights (torch.manual_seed(seed); W_dec = randn(d, m), unit columns;
W_enc = W_dec^T; b_enc = 0; b_pre = training mean) and trains with torch.optim.AdamW
(weight_decay 0). Prints a JSON list of per-epoch metrics with Lattice's names.
"""
import gzip
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

MASK = (1 << 64) - 1


class MT19937_64:
    """std::mt19937_64."""

    def __init__(self, seed):
        self.mt = [0] * 312
        self.mt[0] = seed & MASK
        for i in range(1, 312):
            prev = self.mt[i - 1]
            self.mt[i] = (6364136223846793005 * (prev ^ (prev >> 62)) + i) & MASK
        self.index = 312

    def _twist(self):
        mt = self.mt
        for i in range(312):
            x = (mt[i] & 0xFFFFFFFF80000000) | (mt[(i + 1) % 312] & 0x7FFFFFFF)
            xa = x >> 1
            if x & 1:
                xa ^= 0xB5026F5AA96619E9
            mt[i] = mt[(i + 156) % 312] ^ xa
        self.index = 0

    def __call__(self):
        if self.index >= 312:
            self._twist()
        y = self.mt[self.index]
        self.index += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & MASK


def shuffle(order, rng):
    for i in range(len(order) - 1, 0, -1):
        j = rng() % (i + 1)
        order[i], order[j] = order[j], order[i]


def load_idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def activations(cfg):
    m = torch.jit.load(cfg["checkpoint"])
    p = dict(m.named_parameters())
    x = torch.from_numpy(load_idx(cfg["images"], 16).reshape(-1, 784).astype(np.float32))
    h = x * cfg["scale"]
    h = (h - p["input.mean"]) / p["input.std"]
    return torch.relu(torch.addmm(p["0.bias"], h, p["0.weight"].t())).detach()


def evaluate(x, y, b_pre, w_enc, b_enc, w_dec, l1, top):
    with torch.no_grad():
        norms = w_dec.norm(dim=0)
        sq, sparsity, active = 0.0, 0.0, 0.0
        feats = []
        for s in range(0, x.shape[0], 8192):
            xb = x[s:s + 8192]
            f = torch.relu(torch.addmm(b_enc, xb - b_pre, w_enc.t()))
            xh = torch.addmm(b_pre, f, w_dec.t())
            sq += (xh - xb).pow(2).sum().item()
            sparsity += (f * norms).sum().item()
            active += (f > 0).sum().item()
            feats.append(f)
        f = torch.cat(feats)
        n = x.shape[0]
        total = (x - x.mean(0, keepdim=True)).pow(2).sum().item()
        mse = sq / (n * x.shape[1])
        vals, idx = f.topk(min(top, n), dim=0)
        act = vals > 0
        tl = y[idx]
        majority = torch.zeros(f.shape[1], dtype=torch.long)
        for c in range(int(y.max()) + 1):
            majority = torch.maximum(majority, ((tl == c) & act).sum(0))
        counted = act.sum(0)
        live = counted > 0
        purity = (majority.double() / counted.clamp(min=1).double())[live].mean().item()
        return {"val_loss": mse + l1 * sparsity / n, "val_mse": mse,
                "val_explained_variance": 1 - sq / total, "val_l0": active / n,
                "val_label_purity": purity}


def main():
    cfg = json.load(open(sys.argv[1]))
    torch.set_num_threads(1)
    x = activations(cfg)
    y = torch.from_numpy(load_idx(cfg["labels"], 8).astype(np.int64))
    n = x.shape[0]
    perm = list(range(n))
    shuffle(perm, MT19937_64(cfg["split_seed"]))
    n_val = min(max(int(round(n * cfg["validation_fraction"])), 1), n - 1)
    val = torch.tensor(perm[:n_val])
    train = torch.tensor(perm[n_val:])
    x_train, x_val, y_val = x[train], x[val], y[val]
    d = x.shape[1]
    m = d * cfg["expansion"]
    l1 = cfg["l1_coefficient"]
    torch.manual_seed(cfg["seed"])
    b_pre = x_train.mean(0).clone().requires_grad_(True)
    with torch.no_grad():
        w = torch.randn(d, m)
        w_dec = (w / w.norm(dim=0, keepdim=True)).requires_grad_(True)
        w_enc = w_dec.t().clone().requires_grad_(True)
        b_enc = torch.zeros(m, requires_grad=True)
    opt = torch.optim.AdamW([b_pre, w_enc, b_enc, w_dec], lr=cfg["lr"], weight_decay=0.0)
    rng = MT19937_64(cfg["seed"])
    order = list(range(x_train.shape[0]))
    last_fired = torch.full((m,), -1, dtype=torch.long)
    seen = 0
    out = []
    bs = cfg["batch_size"]
    for epoch in range(1, cfg["epochs"] + 1):
        shuffle(order, rng)
        xe = x_train[torch.tensor(order)]
        loss_sum = 0.0
        for s in range(0, xe.shape[0], bs):
            xb = xe[s:s + bs]
            opt.zero_grad()
            f = torch.relu(torch.addmm(b_enc, xb - b_pre, w_enc.t()))
            xh = torch.addmm(b_pre, f, w_dec.t())
            mse = F.mse_loss(xh, xb)
            sparsity = (f * w_dec.norm(dim=0)).sum(1).mean()
            loss = mse + l1 * sparsity
            loss.backward()
            opt.step()
            with torch.no_grad():
                w_dec.div_(w_dec.norm(dim=0, keepdim=True).clamp(min=1e-12))
                seen += xb.shape[0]
                last_fired[(f > 0).any(0)] = seen
            loss_sum += (mse.item() + l1 * sparsity.item()) * xb.shape[0]
        metrics = evaluate(x_val, y_val, b_pre, w_enc, b_enc, w_dec, l1, cfg["purity_top"])
        dead = int((last_fired <= max(seen - cfg["dead_window"], 0)).sum())
        metrics.update({"epoch": epoch, "train_loss": loss_sum / xe.shape[0],
                        "dead_features": dead, "dictionary_size": m,
                        "val_l0_fraction": metrics["val_l0"] / m})
        out.append(metrics)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
