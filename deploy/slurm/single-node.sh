#!/usr/bin/env bash
# A working single-node Slurm on this machine (Debian/Ubuntu, as root), for trying the sbatch
# script and for CI. Idempotent: installs slurm-wlm and munge if missing, writes
# /etc/slurm/slurm.conf if missing, (re)starts munged, slurmctld and slurmd when they do not
# answer, and waits until the node takes jobs.
#
# No cgroups are needed (proctrack/linuxproc, task/none), so it also works in containers.
# Logs: /var/log/slurm/slurmctld.log and slurmd.log.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
WAIT=${SLURM_READY_TIMEOUT:-60}

say() { echo "slurm: $*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "slurm: run this as root (it installs packages and starts daemons)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

if [[ ! -f $CONF ]]; then
    node=$(hostname -s)
    # `slurmd -C` prints this node's real CPU layout; a NodeName line that claims more than
    # the node has makes slurmd register it as invalid (drained).
    hardware=$(slurmd -C | head -1 | sed -E 's/ RealMemory=[0-9]+//')
    say "writing $CONF for node $node"
    mkdir -p /etc/slurm
    cat >"$CONF" <<EOF
# Single-node Slurm written by farmhand deploy/slurm/single-node.sh
ClusterName=farmhand
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# No cgroups: works in containers and VMs without a delegated cgroup tree.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
# Finished jobs stay visible to scontrol for 5 minutes (there is no accounting database).
MinJobAge=300
KillWait=10
InactiveLimit=0
$hardware NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
fi

mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if [[ ! -f /etc/munge/munge.key ]]; then
    say "creating the munge key"
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
fi

stop_daemon() {  # the daemon whose pid is in $1, if it is running
    local pid
    pid=$(cat "$1" 2>/dev/null || true)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
}

if ! timeout 10 sinfo -h >/dev/null 2>&1; then
    say "starting slurmctld and slurmd"
    stop_daemon /run/slurmd.pid
    stop_daemon /run/slurmctld.pid
    slurmctld
    slurmd
fi

node=$(awk -F'[= ]' '/^NodeName=/ {print $2; exit}' "$CONF")
deadline=$((SECONDS + WAIT))
while true; do
    state=$(timeout 10 sinfo -h -n "$node" -o %t 2>/dev/null || true)
    case $state in
        idle* | mix* | alloc*) break ;;
        down* | drain* | drng*)
            # A node left down by an earlier run (e.g. slurmd restarted) takes jobs again.
            scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
    esac
    if ((SECONDS > deadline)); then
        echo "slurm: node $node is not ready after ${WAIT}s (state '${state:-no answer}');" \
            "see /var/log/slurm/" >&2
        exit 1
    fi
    sleep 1
done
say "node $node is ${state} ($(sinfo -h -n "$node" -o '%c CPUs'))"
