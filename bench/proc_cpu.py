#!/usr/bin/python3
"""CPU seconds (user + system, /proc/<pid>/stat) of every process of a local cluster.

Usage: proc_cpu.py SESSION_ID          -> JSON {role: seconds} of the processes in that session
       proc_cpu.py --diff BEFORE AFTER -> one line per role: the seconds spent in between

Roles: "mpirun", "rank N" (the MPI rank, by OMPI_COMM_WORLD_RANK; rank 0 is the coordinator),
"task N" (the task process a worker rank forked: a lattice process whose parent is one).
"""
import json
import os
import sys


def stat_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # comm may hold spaces: the fields after it start behind the last ')'.
    comm = text[text.index("(") + 1:text.rindex(")")]
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): ppid = field 4, session = 6, utime = 14, stime = 15.
    return comm, int(rest[1]), int(rest[3]), int(rest[11]) + int(rest[12])


def world_rank(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"OMPI_COMM_WORLD_RANK="):
                    return int(item.split(b"=", 1)[1])
    except OSError:
        pass
    return None


def snapshot(session):
    ticks = os.sysconf("SC_CLK_TCK")
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            comm, ppid, sid, cpu = stat_of(int(name))
        except (OSError, ValueError):
            continue  # gone meanwhile
        if sid == session:
            procs[int(name)] = (comm, ppid, cpu)
    out = {}
    for pid, (comm, ppid, cpu) in procs.items():
        if comm == "mpirun":
            role = "mpirun"
        elif comm == "lattice":
            rank = world_rank(pid)
            parent_is_rank = procs.get(ppid, ("",))[0] == "lattice"
            role = f"task {rank}" if parent_is_rank else f"rank {rank}"
        else:
            continue  # curl, python: the bench's own
        out[role] = out.get(role, 0.0) + cpu / ticks
    return out


def main():
    if sys.argv[1] == "--diff":
        before, after = json.loads(sys.argv[2]), json.loads(sys.argv[3])
        for role in sorted(after):
            print(f"  {role:8s} {after[role] - before.get(role, 0.0):7.2f} s CPU")
        return
    print(json.dumps(snapshot(int(sys.argv[1]))))


if __name__ == "__main__":
    main()
