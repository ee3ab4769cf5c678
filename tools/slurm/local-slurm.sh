#!/usr/bin/env bash
# A single-node Slurm on localhost, to try `snakemake --profile profiles/slurm` and for CI.
#
#   tools/slurm/local-slurm.sh install   # apt-get install slurmctld slurmd slurm-client munge
#   tools/slurm/local-slurm.sh start     # install if needed, configure, start, wait for the node
#   tools/slurm/local-slurm.sh status    # daemons and node state
#   tools/slurm/local-slurm.sh stop      # stop the daemons this script started, by PID
#
# Runs as root on Debian/Ubuntu without systemd: munged, slurmctld and slurmd are started by
# hand. No accounting database (the profile polls squeue; MinJobAge=300), process tracking
# without cgroups (proctrack/linuxproc, task/none), select/cons_tres, and fake GPUs backed by
# /dev/null so that GPU requests (--gpus=N) are accepted. Two partitions over the one node:
# cpu (default) and gpu, the names profiles/slurm/config.yaml uses by default.
#
# It writes /etc/slurm/slurm.conf and /etc/slurm/gres.conf (refusing to replace files it did not
# write) and keeps state, logs and PID files in $SEGPIPE_SLURM_DIR (default /var/tmp/segpipe-slurm).
# Environment: SEGPIPE_SLURM_GPUS (fake GPUs on the node, 1-4, default 2),
# SEGPIPE_SLURM_TIMEOUT (seconds to wait for the node, default 90).
set -euo pipefail

STATE=${SEGPIPE_SLURM_DIR:-/var/tmp/segpipe-slurm}
GPUS=${SEGPIPE_SLURM_GPUS:-2}
TIMEOUT=${SEGPIPE_SLURM_TIMEOUT:-90}
CONF_DIR=/etc/slurm
MARKER="written by segpipe tools/slurm/local-slurm.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PACKAGES=(slurmctld slurmd slurm-client munge)
FAKE_GPU_FILES=(/dev/null /dev/zero /dev/full /dev/urandom)
# Daemons are stopped in this order (reverse of start).
DAEMONS=(slurmd slurmctld munged)

log() { echo "local-slurm: $*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

need_root() {
	[[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and starts system daemons)"
}

installed() {
	command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
		command -v sbatch >/dev/null && command -v munged >/dev/null
}

cmd_install() {
	need_root
	if installed; then
		log "Slurm and munge already installed ($(slurmctld -V))"
		return
	fi
	command -v apt-get >/dev/null || die "apt-get not found: install ${PACKAGES[*]} by hand"
	log "installing ${PACKAGES[*]} (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || die "apt-get update failed (no network to the Debian mirror?)"
	# The packages' init scripts are not run without systemd/a runlevel; we start the daemons.
	apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null ||
		die "apt-get install ${PACKAGES[*]} failed"
	installed || die "installed the packages but slurmctld/slurmd/sbatch/munged are not on PATH"
	log "installed $(slurmctld -V)"
}

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# PID of a daemon this script started (recorded in $STATE/run/<name>.started), if it still runs.
started_pid() {
	local file="$STATE/run/$1.started" pid
	[[ -f $file ]] || return 1
	pid=$(<"$file")
	pid_alive "$pid" && echo "$pid"
}

# Wait up to $2 seconds for the daemon's PID file $1; print the PID.
wait_pidfile() {
	local file=$1 deadline=$((SECONDS + $2)) pid
	while ((SECONDS < deadline)); do
		if [[ -s $file ]]; then
			pid=$(<"$file")
			if pid_alive "$pid"; then
				echo "$pid"
				return 0
			fi
		fi
		sleep 0.2
	done
	return 1
}

write_conf() {
	local template=$1 dest=$2
	shift 2
	if [[ -f $dest ]] && ! grep -qF "$MARKER" "$dest"; then
		die "$dest exists and was not written by this script; move it away to use the local Slurm"
	fi
	local text
	text=$(<"$template")
	while (($#)); do
		text=${text//"@$1@"/$2}
		shift 2
	done
	if [[ ! -f $dest || $(<"$dest") != "$text" ]]; then
		printf '%s\n' "$text" >"$dest"
		CONF_CHANGED=1
	fi
}

configure() {
	local host hw gres_lines="" i
	((GPUS >= 1 && GPUS <= ${#FAKE_GPU_FILES[@]})) ||
		die "SEGPIPE_SLURM_GPUS must be 1..${#FAKE_GPU_FILES[@]}, got $GPUS"
	host=$(hostname -s)
	# What slurmd detects on this machine (CPUs, sockets, cores, threads, memory), so that the
	# node registers without a mismatch that would drain it.
	hw=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //')
	[[ $hw == *CPUs=* ]] || die "slurmd -C did not report the node's hardware: $hw"
	for ((i = 0; i < GPUS; i++)); do
		gres_lines+="NodeName=$host Name=gpu File=${FAKE_GPU_FILES[i]}"$'\n'
	done
	mkdir -p "$CONF_DIR" "$STATE"/{state,spool,run,log}
	write_conf "$HERE/slurm.conf.in" "$CONF_DIR/slurm.conf" \
		MARKER "$MARKER" HOST "$host" STATE "$STATE" NODE_HW "$hw" GPUS "$GPUS"
	write_conf "$HERE/gres.conf.in" "$CONF_DIR/gres.conf" \
		MARKER "$MARKER" GRES_LINES "${gres_lines%$'\n'}"
	log "wrote $CONF_DIR/slurm.conf and gres.conf (node $host: $hw, $GPUS fake GPU(s))"
}

start_munged() {
	if pid=$(started_pid munged); then
		log "munged already running (PID $pid)"
		return
	fi
	if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
		log "using the munged that is already running (not started here, will not be stopped)"
		return
	fi
	if [[ ! -s /etc/munge/munge.key ]]; then
		log "creating /etc/munge/munge.key"
		mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
			dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
		chown munge:munge /etc/munge/munge.key
		chmod 0400 /etc/munge/munge.key
	fi
	mkdir -p /run/munge /var/log/munge /var/lib/munge
	chown munge:munge /run/munge /var/log/munge /var/lib/munge
	chmod 0755 /run/munge
	rm -f /run/munge/munged.pid
	runuser -u munge -- munged --pid-file=/run/munge/munged.pid ||
		die "munged did not start: $(tail -n 5 /var/log/munge/munged.log 2>/dev/null)"
	pid=$(wait_pidfile /run/munge/munged.pid 10) || die "munged wrote no PID file"
	echo "$pid" >"$STATE/run/munged.started"
	munge -n | unmunge >/dev/null || die "munge credentials do not verify"
	log "started munged (PID $pid)"
}

start_slurm_daemon() {
	local name=$1 pid
	shift
	if pid=$(started_pid "$name"); then
		log "$name already running (PID $pid)"
		return
	fi
	rm -f "$STATE/run/$name.pid"
	# Both daemonize and write their PID file (SlurmctldPidFile / SlurmdPidFile).
	"$name" "$@" || die "$name did not start: $(tail -n 20 "$STATE/log/$name.log" 2>/dev/null)"
	pid=$(wait_pidfile "$STATE/run/$name.pid" 20) ||
		die "$name wrote no PID file: $(tail -n 20 "$STATE/log/$name.log" 2>/dev/null)"
	echo "$pid" >"$STATE/run/$name.started"
	log "started $name (PID $pid)"
}

node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -n1; }

wait_for_node() {
	local deadline=$((SECONDS + TIMEOUT)) state=""
	while ((SECONDS < deadline)); do
		state=$(node_state || true)
		case $state in
		idle | mixed | allocated) break ;;
		down* | drain* | inval* | fail*)
			# ReturnToService=2 brings a registered node back; nudge it after a stale state.
			scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true
			;;
		esac
		sleep 1
	done
	if [[ ! $state =~ ^(idle|mixed|allocated)$ ]]; then
		log "node not ready after ${TIMEOUT}s (state: ${state:-unknown})"
		scontrol show node 2>&1 | sed 's/^/    /' >&2 || true
		for f in slurmctld slurmd; do
			log "last lines of $STATE/log/$f.log:"
			tail -n 20 "$STATE/log/$f.log" 2>/dev/null | sed 's/^/    /' >&2 || true
		done
		die "Slurm did not come up"
	fi
	# A trivial job proves munge, slurmctld, slurmd and the GPU gres work end to end.
	local out
	out=$(timeout 60 srun --gpus=1 -t 1 -N1 -n1 hostname 2>&1) ||
		die "test job (srun --gpus=1 hostname) failed: $out"
	log "node $(hostname -s) is $state; test job with --gpus=1 ran on $out"
}

cmd_start() {
	need_root
	local t0=$SECONDS
	installed || cmd_install
	CONF_CHANGED=0
	configure
	if ((CONF_CHANGED)) && started_pid slurmctld >/dev/null; then
		log "WARNING: the configuration changed while Slurm runs; apply it with: $0 stop; $0 start"
	fi
	start_munged
	# -c: start with an empty job queue (no jobs left over from an earlier run).
	start_slurm_daemon slurmctld -c
	start_slurm_daemon slurmd
	wait_for_node
	log "Slurm is up in $((SECONDS - t0)) s: partitions $(sinfo -h -o '%P' | tr '\n' ' ')"
	log "stop it with: $0 stop"
}

cmd_stop() {
	local name pid any=0 i jobs
	# Cancel what is still queued or running on this throwaway cluster, so that no job process
	# (slurmstepd and its children) outlives the daemons.
	if started_pid slurmctld >/dev/null; then
		jobs=$(timeout 10 squeue -h -t PD,R,CG,S -o %i 2>/dev/null || true)
		if [[ -n $jobs ]]; then
			log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
			# shellcheck disable=SC2086
			timeout 10 scancel $jobs 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do
				[[ -z $(timeout 10 squeue -h -t PD,R,CG,S -o %i 2>/dev/null) ]] && break
				sleep 0.2
			done
		fi
	fi
	for name in "${DAEMONS[@]}"; do
		if pid=$(started_pid "$name"); then
			any=1
			kill -TERM "$pid" 2>/dev/null || true
			for ((i = 0; i < 100; i++)); do
				pid_alive "$pid" || break
				sleep 0.1
			done
			if pid_alive "$pid"; then
				log "$name (PID $pid) ignored SIGTERM, sending SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
			fi
			log "stopped $name (PID $pid)"
		fi
		rm -f "$STATE/run/$name.started"
	done
	((any)) || log "no daemon started by this script is running"
}

cmd_status() {
	local name pid rc=0
	for name in "${DAEMONS[@]}"; do
		if pid=$(started_pid "$name"); then
			echo "$name: running (PID $pid)"
		else
			echo "$name: not running (or not started by this script)"
			rc=1
		fi
	done
	sinfo 2>&1 || rc=1
	return $rc
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
	echo "usage: $0 {install|start|stop|status}" >&2
	exit 2
	;;
esac
