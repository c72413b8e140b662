#!/usr/bin/env bash
# Install and start a real one-node SLURM cluster on loopback (for CI/tests).
#
#   * munge + slurmctld + slurmd + slurmdbd, accounting in a local MariaDB
#   * one node ($(hostname -s), NodeAddr=127.0.0.1) with a fake GPU (gres on /dev/null)
#   * partitions $SCALEX_SLURM_CPU_PARTITION (default "cpu", Default=YES)
#     and $SCALEX_SLURM_GPU_PARTITION (default "gpu")
#
# Needs root and a Debian/Ubuntu apt system; no systemd (daemons are started by hand).
# Idempotent: if the cluster already answers with an idle/mixed node, exits 0 at once.
# Stop it again with tests/slurm/stop_cluster.sh.
#
# Optional environment:
#   SCALEX_SLURM_CPU_PARTITION  (default cpu)
#   SCALEX_SLURM_GPU_PARTITION  (default gpu)
#   SCALEX_SLURM_CLUSTER        (default scalex)  ClusterName
#   SCALEX_SLURM_GPUS           (default 1)       fake GPUs on the node (1 or 2)
#   SCALEX_SLURM_DB_PASS        (default scalex-slurmdbd)  MariaDB password of user slurm
#   SCALEX_SLURM_WAIT           (default 60)      seconds to wait for the node to go idle
set -euo pipefail

CPU_PART="${SCALEX_SLURM_CPU_PARTITION:-cpu}"
GPU_PART="${SCALEX_SLURM_GPU_PARTITION:-gpu}"
CLUSTER="${SCALEX_SLURM_CLUSTER:-scalex}"
NGPUS="${SCALEX_SLURM_GPUS:-1}"
DB_PASS="${SCALEX_SLURM_DB_PASS:-scalex-slurmdbd}"
WAIT_S="${SCALEX_SLURM_WAIT:-60}"
ACCOUNT=scalex

NODE="$(hostname -s)"
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"

log() { printf '[start_cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# states of all node lines as sinfo sees them ("" if the controller does not answer)
node_states() { timeout 10 sinfo -h -N -o %T 2>/dev/null | sort -u || true; }

# healthy = every line idle/mixed/allocated/completing (no down/drain/unknown)
states_ok() {
    local s="$1"
    [[ -n "$s" ]] || return 1
    ! grep -qvE '^(idle|mixed|allocated|completing)$' <<<"$s"
}

print_ready() {
    sinfo
    echo "SLURM ready (cluster ${CLUSTER}, node ${NODE}, partitions ${CPU_PART}/${GPU_PART})"
}

# --------------------------------------------------------------------------- fast path
if command -v sinfo >/dev/null 2>&1 && pgrep -x slurmdbd >/dev/null 2>&1; then
    if states_ok "$(node_states)"; then
        print_ready
        exit 0
    fi
fi

[[ "$(id -u)" -eq 0 ]] || die "must run as root"

# --------------------------------------------------------------------------- install
PKGS=(slurm-wlm munge slurmdbd mariadb-server)
need_install=0
for b in slurmctld slurmd slurmdbd sinfo sacct sacctmgr munged mariadb; do
    command -v "$b" >/dev/null 2>&1 || need_install=1
done
if [[ $need_install -eq 1 ]]; then
    log "installing ${PKGS[*]}"
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PKGS[@]}"; }
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get update
    fi
    if ! apt_install; then
        log "apt-get install failed; running apt-get update and retrying"
        DEBIAN_FRONTEND=noninteractive apt-get update
        apt_install
    fi
fi

getent passwd slurm >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin slurm
getent passwd munge >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin munge
getent passwd mysql >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin mysql

mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd /run/slurm \
         /etc/munge /var/lib/munge /var/log/munge /run/munge /run/mysqld
chown slurm:slurm "$LOG_DIR" /var/spool/slurmctld /run/slurm
chown munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/log/munge
chmod 0755 /run/munge
chown mysql:mysql /run/mysqld

# --------------------------------------------------------------------------- munge
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating munge key"
    if command -v mungekey >/dev/null 2>&1; then
        runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    elif command -v create-munge-key >/dev/null 2>&1; then
        create-munge-key -f
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

if ! pgrep -x munged >/dev/null; then
    log "starting munged"
    runuser -u munge -- munged
fi
for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
munge -n | unmunge >/dev/null || die "munge does not work"

# --------------------------------------------------------------------------- mariadb
if [[ ! -d /var/lib/mysql/mysql ]]; then
    log "initialising mariadb data directory"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$LOG_DIR/mariadb-install.log" 2>&1
fi
if ! pgrep -x mariadbd >/dev/null && ! pgrep -x mysqld >/dev/null; then
    log "starting mariadbd"
    MYSQLD="$(command -v mariadbd || command -v mysqld || echo /usr/sbin/mariadbd)"
    setsid nohup "$MYSQLD" --user=mysql --datadir=/var/lib/mysql \
        --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid \
        --bind-address=127.0.0.1 --innodb-buffer-pool-size=128M \
        --innodb-lock-wait-timeout=900 \
        >>"$LOG_DIR/mariadb.log" 2>&1 </dev/null &
fi
for _ in $(seq 1 60); do mariadb-admin --silent ping >/dev/null 2>&1 && break; sleep 0.5; done
mariadb-admin --silent ping >/dev/null 2>&1 || die "mariadb did not start (see $LOG_DIR/mariadb.log)"

mariadb -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '${DB_PASS}';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '${DB_PASS}';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL

# --------------------------------------------------------------------------- config
NCPU="$(nproc)"
MEM_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
HEADROOM=$(( MEM_MB / 10 )); (( HEADROOM < 512 )) && HEADROOM=512
REAL_MEM=$(( MEM_MB - HEADROOM )); (( REAL_MEM < 256 )) && REAL_MEM=256
DEF_MEM=$(( REAL_MEM / NCPU ))

{
    echo "# written by tests/slurm/start_cluster.sh"
    echo "ClusterName=${CLUSTER}"
    echo "SlurmctldHost=${NODE}(127.0.0.1)"
    cat <<'EOF'
SlurmUser=slurm
AuthType=auth/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=120
SlurmdTimeout=300
InactiveLimit=0
MinJobAge=300
KillWait=30
Waittime=0
EOF
    echo "DefMemPerCPU=${DEF_MEM}"
    echo "NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${NCPU} RealMemory=${REAL_MEM} Gres=gpu:${NGPUS} State=UNKNOWN"
    echo "PartitionName=${CPU_PART} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP"
    if [[ "$GPU_PART" != "$CPU_PART" ]]; then
        echo "PartitionName=${GPU_PART} Nodes=${NODE} Default=NO MaxTime=INFINITE State=UP"
    fi
} >"$CONF_DIR/slurm.conf"
chmod 0644 "$CONF_DIR/slurm.conf"

{
    echo "# written by tests/slurm/start_cluster.sh (fake GPUs)"
    echo "AutoDetect=off"
    GPU_FILES=(/dev/null /dev/zero /dev/full /dev/random)
    for ((i = 0; i < NGPUS && i < ${#GPU_FILES[@]}; i++)); do
        echo "NodeName=${NODE} Name=gpu File=${GPU_FILES[$i]}"
    done
} >"$CONF_DIR/gres.conf"
chmod 0644 "$CONF_DIR/gres.conf"

cat >"$CONF_DIR/slurmdbd.conf" <<EOF
# written by tests/slurm/start_cluster.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=${DB_PASS}
StorageLoc=slurm_acct_db
EOF
chown slurm:slurm "$CONF_DIR/slurmdbd.conf"
chmod 0600 "$CONF_DIR/slurmdbd.conf"

# --------------------------------------------------------------------------- slurmdbd
if ! pgrep -x slurmdbd >/dev/null; then
    log "starting slurmdbd"
    slurmdbd
fi
for _ in $(seq 1 60); do timeout 10 sacctmgr -n -P show cluster >/dev/null 2>&1 && break; sleep 1; done
timeout 10 sacctmgr -n -P show cluster >/dev/null || die "slurmdbd does not answer (see $LOG_DIR/slurmdbd.log)"

if ! timeout 10 sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
    log "adding cluster $CLUSTER to the accounting database"
    timeout 30 sacctmgr -i add cluster "$CLUSTER"
fi

# --------------------------------------------------------------------------- slurmctld, slurmd
if ! pgrep -x slurmctld >/dev/null; then
    log "starting slurmctld"
    slurmctld
fi
for _ in $(seq 1 30); do timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 1; done
if ! pgrep -x slurmd >/dev/null; then
    log "starting slurmd"
    slurmd
fi

log "waiting up to ${WAIT_S}s for node ${NODE} to become idle"
deadline=$(( SECONDS + WAIT_S ))
resumed=0
while :; do
    states="$(node_states)"
    states_ok "$states" && break
    # a node that came back DOWN/DRAINED (e.g. after an unclean restart): resume it once
    if [[ $resumed -eq 0 ]] && grep -qiE 'down|drain|fail' <<<"$states"; then
        log "node state '${states//$'\n'/,}'; resuming"
        scontrol update nodename="$NODE" state=resume || true
        resumed=1
    fi
    if (( SECONDS >= deadline )); then
        log "node did not become idle (state: '${states//$'\n'/,}')"
        tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
        exit 1
    fi
    sleep 1
done

# --------------------------------------------------------------------------- account
if ! timeout 10 sacctmgr -n -P show account "$ACCOUNT" format=account | grep -qx "$ACCOUNT"; then
    timeout 30 sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="scalex tests" Organization=scalex >/dev/null
fi
if ! timeout 10 sacctmgr -n -P show assoc where user=root account="$ACCOUNT" format=user | grep -qx root; then
    timeout 30 sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
fi

print_ready
