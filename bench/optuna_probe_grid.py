#!/usr/bin/python3
"""The peer of the probe benchmark (bench/probe_bench.sh): a probe-recipe sweep spec
(examples/fashion-mnist-probe-recipe.yaml) as Optuna + PyTorch, written the way a user
would: GridSampler over the spec's grid, n_jobs threads, one torch thread per trial.

The recipe, read from the spec: the class subset (first rows_per_class rows of each of
`classes`, relabelled 0..k-1) of the idx files, `scale`, a stratified split (test_fraction
of each class held out, train_per_class rows train, the rest validates; seeded numpy
shuffles, so not Lattice's rows but the same counts), standardisation fitted on the training
rows, Linear -> BatchNorm1d -> ReLU -> Dropout -> Linear, AdamW, mixup (Beta(alpha, alpha))
for the first `until` share of the epochs, inverse-frequency class weights with boosts,
label smoothing, ReduceLROnPlateau on the validation loss, clip_grad_norm_, early stopping
on the validation loss with the best epoch's weights restored, batch_size, seed. After each
epoch: validation loss, accuracy and macro F1. Objective: macro F1 of the restored weights
on the validation rows (selected_val_f1); the test part is evaluated once per trial.

usage: optuna_probe_grid.py SPEC [--n-jobs N]
Prints one line of JSON: trials, epochs (summed over trials), seconds, best objective.
"""
import argparse
import copy
import gzip
import json
import threading
import time

import numpy as np
import optuna
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml


def load_idx(images, labels):
    with gzip.open(images) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28 * 28)
    with gzip.open(labels) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x, y


def prepare(ds):
    x, y = load_idx(ds["images"], ds["labels"])
    split = ds["split"]
    rng = np.random.default_rng(split.get("seed", 0))
    parts = {"train": [], "val": [], "test": []}
    for c, (label, keep) in enumerate(zip(ds["classes"], ds["rows_per_class"])):
        rows = np.flatnonzero(y == label)[:keep]
        rows = rows[rng.permutation(len(rows))]
        n_test = int(np.floor(len(rows) * split.get("test_fraction", 0) + 0.5))
        n_train = split["train_per_class"]
        for name, r in (("test", rows[:n_test]), ("train", rows[n_test:n_test + n_train]),
                        ("val", rows[n_test + n_train:])):
            parts[name].append((r, np.full(len(r), c)))
    out = {}
    scale = ds.get("scale", 1.0)
    for name, chunks in parts.items():
        rows = np.concatenate([r for r, _ in chunks])
        out[name] = (torch.tensor(x[rows] * scale, dtype=torch.float32),
                     torch.tensor(np.concatenate([c for _, c in chunks]), dtype=torch.long))
    if ds.get("standardize"):
        mean = out["train"][0].mean(0)
        std = out["train"][0].std(0, unbiased=False)
        std = torch.where(std < 1e-12, torch.ones_like(std), std)
        out = {k: ((v[0] - mean) / std, v[1]) for k, v in out.items()}
    return out, len(ds["classes"])


def evaluate(model, x, y, classes):
    model.eval()
    with torch.no_grad():
        logits = model(x)
        pred = logits.argmax(1)
        loss = F.cross_entropy(logits, y).item()
        conf = torch.bincount(y * classes + pred, minlength=classes * classes)
        conf = conf.view(classes, classes).double()
        tp = conf.diag()
        precision = tp / conf.sum(0).clamp_min(1)
        recall = tp / conf.sum(1).clamp_min(1)
        f1 = torch.nan_to_num(2 * precision * recall / (precision + recall)).mean().item()
        acc = (pred == y).double().mean().item()
    model.train()
    return loss, acc, f1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("--n-jobs", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    spec = yaml.safe_load(open(args.spec))
    train, model_cfg, seed = spec["train"], spec["model"], spec.get("seed", 0)
    data, classes = prepare(spec["dataset"])
    xtr, ytr = data["train"]
    xva, yva = data["val"]
    xte, yte = data["test"]
    n = xtr.shape[0]
    counts = torch.bincount(ytr, minlength=classes).double()
    weight = (counts.sum() / (classes * counts)).float()
    for cls, factor in train["class_weights"].get("boost", {}).items():
        weight[int(cls)] *= factor
    grid = spec["search"]["parameters"]
    epochs, batch = train["epochs"], train["batch_size"]
    mixup = train.get("mixup")
    stop_patience = train["early_stopping"]["patience"]
    plateau = train["schedule"]
    init_lock = threading.Lock()  # torch.manual_seed is process-global
    epochs_run = []

    def objective(trial):
        torch.set_num_threads(1)
        lr = trial.suggest_categorical("lr", grid["lr"])
        wd = trial.suggest_categorical("weight_decay", grid["weight_decay"])
        p = trial.suggest_categorical("dropout", grid["dropout"])
        hidden = model_cfg["hidden"][0]
        with init_lock:
            torch.manual_seed(seed)
            model = nn.Sequential(nn.Linear(xtr.shape[1], hidden), nn.BatchNorm1d(hidden),
                                  nn.ReLU(), nn.Dropout(p), nn.Linear(hidden, classes))
        g = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=plateau["factor"], patience=plateau["patience"])
        loss_fn = nn.CrossEntropyLoss(weight=weight,
                                      label_smoothing=train.get("label_smoothing", 0.0))
        best_loss, bad, best_state, done = float("inf"), 0, None, 0
        for epoch in range(epochs):
            mixing = mixup is not None and epoch < mixup["until"] * epochs
            perm = torch.randperm(n, generator=g)
            loss_sum, correct = 0.0, 0
            for i in range(0, n, batch):
                idx = perm[i:i + batch]
                if idx.shape[0] < 2:  # BatchNorm cannot train on one row
                    continue
                xb, yb = xtr[idx], ytr[idx]
                opt.zero_grad()
                if mixing:
                    lam = float(rng.beta(mixup["alpha"], mixup["alpha"]))
                    other = torch.randperm(xb.shape[0], generator=g)
                    logits = model(lam * xb + (1 - lam) * xb[other])
                    loss = lam * loss_fn(logits, yb) + (1 - lam) * loss_fn(logits, yb[other])
                else:
                    logits = model(xb)
                    loss = loss_fn(logits, yb)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), train["clip_grad_norm"])
                opt.step()
                loss_sum += loss.item() * xb.shape[0]
                correct += (logits.argmax(1) == yb).sum().item()
            val_loss, val_acc, val_f1 = evaluate(model, xva, yva, classes)
            sched.step(val_loss)
            done = epoch + 1
            if val_loss < best_loss:
                best_loss, bad = val_loss, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
                if bad >= stop_patience:
                    break
        model.load_state_dict(best_state)
        _, _, selected_f1 = evaluate(model, xva, yva, classes)
        _, test_acc, _ = evaluate(model, xte, yte, classes)
        trial.set_user_attr("test_accuracy", test_acc)
        epochs_run.append(done)
        return selected_f1

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.GridSampler(grid, seed=seed))
    study.optimize(objective, n_trials=None, n_jobs=args.n_jobs)
    print(json.dumps({"trials": len(study.trials), "epochs": sum(epochs_run),
                      "seconds": time.perf_counter() - t0, "best_selected_val_f1": study.best_value,
                      "best_params": study.best_params}))


if __name__ == "__main__":
    main()
