#!/usr/bin/python3
"""Peer baseline for dispatch throughput: Optuna with durable SQLite storage running
no-op trials (RandomSampler). Prints one JSON line: trials, seconds, trials_per_s.
usage: optuna_noop_sqlite.py [--trials N] [--n-jobs J] [--db PATH]"""
import argparse, json, os, tempfile, time

import optuna

ap = argparse.ArgumentParser()
ap.add_argument("--trials", type=int, default=500)
ap.add_argument("--n-jobs", type=int, default=1)
ap.add_argument("--db", default=None)
args = ap.parse_args()
optuna.logging.set_verbosity(optuna.logging.WARNING)
db = args.db or os.path.join(tempfile.mkdtemp(), "optuna.db")
study = optuna.create_study(storage="sqlite:///" + db, sampler=optuna.samplers.RandomSampler(seed=0))
t0 = time.perf_counter()
study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=args.trials,
               n_jobs=args.n_jobs)
dt = time.perf_counter() - t0
print(json.dumps({"peer": "optuna-sqlite", "trials": args.trials, "n_jobs": args.n_jobs,
                  "seconds": round(dt, 3), "trials_per_s": round(args.trials / dt, 1)}))
