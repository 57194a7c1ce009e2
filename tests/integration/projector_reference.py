#!/usr/bin/python3
"""Plain-PyTorch reference for Lattice's projector grid (tests/integration/projector_test.cc).

  projector_reference.py data CHECKPOINT.pt OUT_DIR [--first 10000 --train 1000 --val 250]
      The projector study's data: Fashion-MNIST training images [first, first + train + val)
      as idx files (train.idx3, val.idx3) and, as their targets, the hidden-layer outputs
      (after the ReLU) of a Lattice trial's MLP 784 -> H -> 10, rebuilt from its downloaded
      checkpoint (train_targets.npy, val_targets.npy: float32 [N, H]).
  projector_reference.py train OUT_DIR --epochs E --lr LR --batch B --seeds 0,1,2
      Trains linear, mlp2, c_abstractor and perceiver on those files as Lattice does
      (jobs/internal/projectors.h: the same architectures and defaults; jobs/internal/
      siglip.h: the same loss; AdamW without weight decay; shuffled mini-batches, the last
      partial one included) and prints one JSON object: {type: [siglip_score per seed]},
      siglip_score = mean sigmoid of the matched validation pairs' logits after the last
      epoch.
"""
import argparse
import gzip
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
TYPES = ["linear", "mlp2", "c_abstractor", "perceiver"]


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        b = f.read()
    n, h, w = (int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(b, dtype=np.uint8, offset=16).reshape(n, h, w)


def write_idx(path, images):
    n, h, w = images.shape
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]))
        for v in (n, h, w):
            f.write(int(v).to_bytes(4, "big"))
        f.write(np.ascontiguousarray(images, dtype=np.uint8).tobytes())


def make_data(args):
    images = read_idx(FASHION)[args.first:args.first + args.train + args.val]
    module = torch.jit.load(args.checkpoint)
    sd = {k: v for k, v in module.state_dict().items() if not k.startswith("input.")}
    hidden = sd["0.weight"].shape[0]
    net = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    net.load_state_dict(sd)
    with torch.no_grad():
        x = torch.from_numpy(images.reshape(len(images), 784).astype(np.float32)) / 255.0
        targets = net[1](net[0](x)).numpy().astype(np.float32)
    os.makedirs(args.out, exist_ok=True)
    write_idx(os.path.join(args.out, "train.idx3"), images[:args.train])
    write_idx(os.path.join(args.out, "val.idx3"), images[args.train:])
    np.save(os.path.join(args.out, "train_targets.npy"), targets[:args.train])
    np.save(os.path.join(args.out, "val_targets.npy"), targets[args.train:])
    print(json.dumps({"hidden": hidden, "train": args.train, "val": args.val}))


def patch_tokens(images, p=4):
    n, h, w = images.shape
    x = images.astype(np.float32) * np.float32(0.00392156862745098)
    x = x.reshape(n, h // p, p, w // p, p).transpose(0, 1, 3, 2, 4)
    return torch.from_numpy(np.ascontiguousarray(x.reshape(n, (h // p) * (w // p), p * p)))


def grid(n):
    side = int(round(math.sqrt(n)))
    return (side, side) if side * side == n else (1, n)


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(1, c), nn.Conv2d(c, c, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(1, c), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class CAbstractor(nn.Module):
    def __init__(self, t, dv, dt, width, depth, queries):
        super().__init__()
        self.grid, self.pooled = grid(t), grid(queries)
        self.pos = nn.Parameter(torch.randn(1, t, dv) * 0.02)
        self.inp = nn.Linear(dv, width)
        self.stage1 = nn.Sequential(*[ResBlock(width) for _ in range(depth)])
        self.stage2 = nn.Sequential(*[ResBlock(width) for _ in range(depth)])
        self.out1, self.out2 = nn.Linear(width, dt), nn.Linear(dt, dt)

    def forward(self, x):
        h = self.inp(x + self.pos)
        h = h.transpose(1, 2).reshape(x.shape[0], h.shape[2], *self.grid)
        h = self.stage2(F.adaptive_avg_pool2d(self.stage1(h), self.pooled))
        return self.out2(F.silu(self.out1(h.flatten(2).transpose(1, 2))))


class PerceiverLayer(nn.Module):
    def __init__(self, w, heads):
        super().__init__()
        self.heads = heads
        self.norm_media, self.norm_latents = nn.LayerNorm(w), nn.LayerNorm(w)
        self.q = nn.Linear(w, w, bias=False)
        self.kv = nn.Linear(w, 2 * w, bias=False)
        self.out = nn.Linear(w, w, bias=False)
        self.norm_ff = nn.LayerNorm(w)
        self.ff1, self.ff2 = nn.Linear(w, 4 * w, bias=False), nn.Linear(4 * w, w, bias=False)

    def forward(self, x, latents):
        b, m, w = latents.shape
        hd = w // self.heads
        l = self.norm_latents(latents)
        kv_in = torch.cat([self.norm_media(x), l], 1)
        split = lambda t: t.view(b, t.shape[1], self.heads, hd).transpose(1, 2)
        q = split(self.q(l)) * (1.0 / math.sqrt(hd))
        k, v = self.kv(kv_in).chunk(2, -1)
        attn = torch.softmax(q @ split(k).transpose(-2, -1), -1)
        o = (attn @ split(v)).transpose(1, 2).reshape(b, m, w)
        latents = latents + self.out(o)
        return latents + self.ff2(F.gelu(self.ff1(self.norm_ff(latents))))


class Perceiver(nn.Module):
    def __init__(self, dv, dt, width, depth, queries, heads):
        super().__init__()
        self.inp = nn.Linear(dv, width)
        self.latents = nn.Parameter(torch.randn(queries, width) * 0.02)
        self.layers = nn.ModuleList([PerceiverLayer(width, heads) for _ in range(depth)])
        self.norm, self.out = nn.LayerNorm(width), nn.Linear(width, dt)

    def forward(self, x):
        x = self.inp(x)
        latents = self.latents.unsqueeze(0).expand(x.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(x, latents)
        return self.out(self.norm(latents))


class Projector(nn.Module):
    """A body (the defaults of jobs/projector_config.h) plus t' and b."""

    def __init__(self, kind, t, dv, dt, queries=16, heads=4):
        super().__init__()
        width = dt
        if kind == "linear":
            self.projector = nn.Linear(dv, dt)
        elif kind == "mlp2":
            self.projector = nn.Sequential(nn.Linear(dv, width), nn.GELU(), nn.Linear(width, dt))
        elif kind == "c_abstractor":
            self.projector = CAbstractor(t, dv, dt, width, 3, queries)
        else:
            self.projector = Perceiver(dv, dt, width, 2, queries, heads)
        self.logit_scale = nn.Parameter(torch.full((1,), math.log(10.0)))
        self.logit_bias = nn.Parameter(torch.full((1,), -10.0))

    def logits(self, x, targets):
        u = F.normalize(self.projector(x).mean(1), dim=-1)
        v = F.normalize(targets, dim=-1)
        return u @ v.t() * self.logit_scale.exp() + self.logit_bias


def siglip_loss(z):
    labels = 2 * torch.eye(z.shape[0]) - 1
    return -F.logsigmoid(labels * z).sum() / z.shape[0]


def train(args):
    torch.set_num_threads(1)
    x_train = patch_tokens(read_idx(os.path.join(args.out, "train.idx3")))
    x_val = patch_tokens(read_idx(os.path.join(args.out, "val.idx3")))
    t_train = torch.from_numpy(np.load(os.path.join(args.out, "train_targets.npy")))
    t_val = torch.from_numpy(np.load(os.path.join(args.out, "val_targets.npy")))
    scores = {}
    for kind in TYPES:
        scores[kind] = []
        for seed in (int(s) for s in args.seeds.split(",")):
            torch.manual_seed(seed)
            model = Projector(kind, x_train.shape[1], x_train.shape[2], t_train.shape[1])
            opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
            g = torch.Generator().manual_seed(seed)
            for _ in range(args.epochs):
                order = torch.randperm(len(x_train), generator=g)
                for start in range(0, len(order), args.batch):
                    idx = order[start:start + args.batch]
                    opt.zero_grad()
                    siglip_loss(model.logits(x_train[idx], t_train[idx])).backward()
                    opt.step()
            model.eval()
            with torch.no_grad():
                z = model.logits(x_val, t_val)
                scores[kind].append(float(torch.sigmoid(z.diagonal()).mean()))
    print(json.dumps(scores))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data")
    d.add_argument("checkpoint")
    d.add_argument("out")
    d.add_argument("--first", type=int, default=10000)
    d.add_argument("--train", type=int, default=1000)
    d.add_argument("--val", type=int, default=250)
    t = sub.add_parser("train")
    t.add_argument("out")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--lr", type=float, default=0.01)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    make_data(args) if args.command == "data" else train(args)


if __name__ == "__main__":
    sys.exit(main())
