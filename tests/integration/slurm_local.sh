# A private Slurm on this machine (munged + slurmctld + one slurmd per simulated node, all on
# 127.0.0.1) for tests, all of its state under one directory. Source this file, then:
#
#   slurm_local_start DIR [NODES] [CPUS] [GPUS]  # as root; exports SLURM_CONF; non-zero on failure
#   slurm_local_stop DIR                         # stops the daemons by their pid files (idempotent)
#
# DIR's parent folders must be searchable by the munge user (munged runs as munge).
# Nothing outside DIR is written or read besides the installed binaries: a munge key of its
# own (munged with its own --socket; slurm.conf points at it with AuthInfo=socket=...), free
# ports picked at start, StateSaveLocation / SlurmdSpoolDir / pid and log files under DIR.
#
# NODES (default 2) nodes named lattice1..N, each its own slurmd (`slurmd -N latticeK`) with
# its own port, spool and a config directory of its own that differs only in TmpFS and
# mpi.conf's PMIxCliTmpDirBase (the mpi/pmix plugin of two "nodes" on one host would create
# the same directories). Two nodes are what a heterogeneous job needs here: the backfill
# scheduler starts one only when each component can start on a node of its own.
# Each node claims CPUS cpus (default 4) whatever the machine has (SlurmdParameters=
# config_overrides), so a 2-core VM still runs a several-task step, and GPUS (default 4)
# "gpu" GRES backed by character devices under DIR (mknod 1,3: /dev/null's numbers): jobs that
# ask for GPUs are scheduled and get CUDA_VISIBLE_DEVICES, though no GPU exists (a CPU
# build never looks). Requeued jobs may start again after 10 s (AuthInfo cred_expire; the
# default is 120 s); the backfill scheduler runs every second. Tested with Debian 12's
# slurm-wlm 22.05 and munge 0.5.15 (apt-get install slurm-wlm munge; their postinst starts
# no daemon in a container).

# A TCP port nothing listens on now.
slurm_local_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

slurm_local_start() {
  local dir=$1 nodes=${2:-2} cpus=${3:-4} gpus=${4:-4}
  local i n
  mkdir -p "$dir"/munge "$dir"/state "$dir"/run "$dir"/log "$dir"/dev || return 1
  chmod 755 "$dir"
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none || return 1
  chown -R munge:munge "$dir/munge" && chmod 700 "$dir/munge" && chmod 400 "$dir/munge/munge.key"
  # --force: munged refuses a socket directory under a world-writable one (/tmp) otherwise.
  runuser -u munge -- /usr/sbin/munged --force \
    --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed" || { echo "slurm_local: munged did not start" >&2; return 1; }
  for i in $(seq 1 50); do
    [ -S "$dir/munge/munge.socket" ] && break
    sleep 0.1
  done
  if ! munge -n -S "$dir/munge/munge.socket" | unmunge -S "$dir/munge/munge.socket" >/dev/null; then
    echo "slurm_local: munge credential round trip failed" >&2
    return 1
  fi
  local ctld_port node_lines="" gres_lines="" names=""
  ctld_port=$(slurm_local_free_port) || return 1
  for n in $(seq 1 "$nodes"); do
    local port first=$(( (n - 1) * gpus )) last=$(( n * gpus - 1 ))
    port=$(slurm_local_free_port) || return 1
    node_lines+="NodeName=lattice$n NodeAddr=127.0.0.1 Port=$port CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 Gres=gpu:$gpus State=UNKNOWN"$'\n'
    if [ "$gpus" -gt 0 ]; then
      for i in $(seq "$first" "$last"); do
        [ -e "$dir/dev/gpu$i" ] || mknod "$dir/dev/gpu$i" c 1 3 || touch "$dir/dev/gpu$i"
      done
      gres_lines+="NodeName=lattice$n Name=gpu File=$dir/dev/gpu[$first-$last]"$'\n'
    fi
    names+="${names:+,}lattice$n"
  done
  cat > "$dir/slurm.conf" <<EOF
ClusterName=lattice-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
SlurmctldPort=$ctld_port
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
KillWait=30
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmdParameters=config_overrides
GresTypes=gpu
${node_lines}PartitionName=debug Nodes=$names Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  printf '%s' "$gres_lines" > "$dir/gres.conf"
  export SLURM_CONF="$dir/slurm.conf"
  /usr/sbin/slurmctld -f "$SLURM_CONF" || { echo "slurm_local: slurmctld did not start" >&2; return 1; }
  for n in $(seq 1 "$nodes"); do
    local conf="$dir/node$n"
    mkdir -p "$conf/tmp" "$dir/spool/lattice$n"
    cp "$dir/slurm.conf" "$dir/gres.conf" "$conf/"
    echo "TmpFS=$conf/tmp" >> "$conf/slurm.conf"
    echo "PMIxCliTmpDirBase=$conf/tmp" > "$conf/mpi.conf"
    /usr/sbin/slurmd -f "$conf/slurm.conf" -N "lattice$n" ||
      { echo "slurm_local: slurmd lattice$n did not start" >&2; return 1; }
  done
  local states=""
  for i in $(seq 1 60); do
    states=$(sinfo -h -N -o '%T' 2>/dev/null | sort | uniq -c | tr -s ' ' | tr '\n' ';')
    if [ "$(sinfo -h -N -t idle -o '%N' 2>/dev/null | wc -l)" -eq "$nodes" ]; then return 0; fi
    if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(drain|down)'; then
      scontrol update nodename="$names" state=resume >/dev/null 2>&1
    fi
    sleep 0.5
  done
  echo "slurm_local: nodes not idle after 30 s (${states:-no answer}); logs in $dir/log" >&2
  return 1
}

slurm_local_stop() {
  local dir=$1 f pid i
  for f in "$dir"/run/slurmd.*.pid "$dir/run/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || continue
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
}
