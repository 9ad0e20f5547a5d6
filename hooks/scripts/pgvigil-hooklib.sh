# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=sh disable=SC2154 # the scripts set the variables used here
# pgvigil-hooklib.sh - functions shared by the shipped pgvigil hook scripts.
#
# Sourced by pgvigil-promote, pgvigil-follow, pgvigil-rejoin, pgvigil-stop
# and fence-ssh; not a command of its own. It is also sent, as it is, to the
# host of a data directory (through ssh, or runuser/sudo locally) and run
# there by `sh -s` as the data directory's owner, preceded by the dd_*
# variable assignments and followed by one `dd_main ACTION` line. So it only
# defines functions: loading it has no effect.
#
# POSIX sh plus what every Linux system has: awk, sed, find, flock(1)
# (util-linux, optional), /proc, and `sleep` with a fractional argument.
# Every wait is bounded. Messages go to standard error, prefixed with the
# script's name; pgvigil logs them under the hook's name.

say() {
	printf '%s: %s\n' "${me:-pgvigil-hook}" "$*" >&2
}

# fail MESSAGE: the action failed (exit 1).
fail() {
	say "$*"
	exit 1
}

# usage_error MESSAGE: wrong arguments or settings (exit 2).
usage_error() {
	say "$*"
	exit 2
}

# show_help: the script's header comment, from its fourth line to `set -eu`.
show_help() {
	sed -n '4,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# parse_args SPEC ARG...: set variables from the command line. SPEC is a
# blank-separated list of "--option=variable" (an option with a value,
# given as "--option VALUE" or "--option=VALUE"), "--option=+variable" (the
# same, repeatable: each value is appended to variable shell-quoted, for
# `eval set -- $variable`) and "--flag=variable=value" (a flag that sets
# variable to value). -h and --help show the help.
parse_args() {
	_pa_spec=$1
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		-h | --help)
			show_help
			exit 0
			;;
		esac
		_pa_opt=$1 _pa_val='' _pa_inline=no
		case $1 in
		--*=*) _pa_opt=${1%%=*} _pa_val=${1#*=} _pa_inline=yes ;;
		esac
		shift
		_pa_found=no
		set -f
		for _pa_s in $_pa_spec; do
			case $_pa_s in
			"$_pa_opt"=*=*)
				[ "$_pa_inline" = no ] || { set +f; usage_error "$_pa_opt takes no value"; }
				_pa_s=${_pa_s#*=}
				eval "${_pa_s%%=*}=\${_pa_s#*=}"
				_pa_found=yes
				break
				;;
			"$_pa_opt"=*)
				if [ "$_pa_inline" = no ]; then
					[ $# -ge 1 ] || { set +f; usage_error "$_pa_opt needs a value"; }
					_pa_val=$1
					shift
				fi
				_pa_s=${_pa_s#*=}
				case $_pa_s in
				+*) eval "${_pa_s#+}=\"\${${_pa_s#+}:-} \$(shq \"\$_pa_val\")\"" ;;
				*) eval "$_pa_s=\$_pa_val" ;;
				esac
				_pa_found=yes
				break
				;;
			esac
		done
		set +f
		[ "$_pa_found" = yes ] || usage_error "unknown argument '$_pa_opt' (see --help)"
	done
}

# shq VALUE: VALUE as one shell word in single quotes.
shq() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# is_uint VALUE
is_uint() {
	case $1 in
	'' | *[!0-9]*) return 1 ;;
	esac
	return 0
}

# check_seconds OPTION VALUE: VALUE must be a whole number of seconds > 0.
check_seconds() {
	if ! is_uint "$2" || [ "$2" -eq 0 ]; then
		usage_error "bad $1 '$2': a whole number of seconds, at least 1"
	fi
}

# now_ms: milliseconds of a clock that the wall clock does not move.
now_ms() {
	if [ -r /proc/uptime ]; then
		awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime
	else
		echo $(($(date +%s) * 1000))
	fi
}

# wait_for SECONDS STEP COMMAND...: run COMMAND every STEP seconds until it
# succeeds (0) or SECONDS have passed (1). COMMAND runs at least once.
wait_for() {
	_wf_end=$(($(now_ms) + $1 * 1000))
	_wf_step=$2
	shift 2
	while :; do
		if "$@"; then
			return 0
		fi
		[ "$(now_ms)" -lt "$_wf_end" ] || return 1
		sleep "$_wf_step"
	done
}

# pgbin NAME: the PostgreSQL program NAME. --bindir wins; else the bindir of
# the version of the data directory (Debian's /usr/lib/postgresql/V/bin);
# else the newest Debian version; else NAME from PATH.
pgbin() {
	if [ -n "${bindir:-}" ]; then
		printf '%s/%s\n' "$bindir" "$1"
		return 0
	fi
	_pb_v=
	if [ -n "${data:-}" ] && [ -r "$data/PG_VERSION" ]; then
		read -r _pb_v <"$data/PG_VERSION" || true
	fi
	if [ -z "$_pb_v" ] || [ ! -x "/usr/lib/postgresql/$_pb_v/bin/$1" ]; then
		_pb_v=
		for _pb_d in /usr/lib/postgresql/*/bin/"$1"; do
			_pb_d=${_pb_d#/usr/lib/postgresql/}
			_pb_d=${_pb_d%%/*}
			if is_uint "$_pb_d" && [ "$_pb_d" -gt "${_pb_v:-0}" ]; then
				_pb_v=$_pb_d
			fi
		done
	fi
	if [ -n "$_pb_v" ] && [ -x "/usr/lib/postgresql/$_pb_v/bin/$1" ]; then
		printf '%s\n' "/usr/lib/postgresql/$_pb_v/bin/$1"
	else
		printf '%s\n' "$1"
	fi
}

# pg_sql HOST PORT USER DBNAME [PSQL-OPTION...] <SQL: run SQL (standard
# input, so psql's :'var' quoting works with -v var=value), print the rows
# unaligned without headers. Never prompts for a password.
pg_sql() {
	_ps_h=$1 _ps_p=$2 _ps_u=$3 _ps_d=$4
	shift 4
	PGCONNECT_TIMEOUT=${connect_timeout:-5} PGAPPNAME=${me:-pgvigil-hook} \
		"$(pgbin psql)" -X -A -t -q -w -v ON_ERROR_STOP=1 \
		-h "$_ps_h" -p "$_ps_p" -U "$_ps_u" -d "$_ps_d" "$@"
}

# sql_node SQL [PSQL-OPTION...]: on the backend acted on (%h %p).
sql_node() {
	_sn_q=$1
	shift
	printf '%s\n' "$_sn_q" | pg_sql "$node_host" "$node_port" "$node_user" "$node_db" "$@"
}

# sql_new SQL [PSQL-OPTION...]: on the new primary (%H %r).
sql_new() {
	_sq_q=$1
	shift
	printf '%s\n' "$_sq_q" | pg_sql "$new_host" "$new_port" "$new_user" "$new_db" "$@"
}

# conninfo_kv KEY VALUE: one libpq connection keyword, value quoted.
conninfo_kv() {
	printf "%s='%s'" "$1" "$(printf '%s' "$2" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")"
}

# conninfo_rewrite CONNINFO HOST PORT DEFAULT-USER FORCE-USER: CONNINFO with
# host, hostaddr and port replaced by HOST and PORT; every other keyword
# (user, passfile, sslmode, application_name, ...) kept. user= is
# FORCE-USER when given, else the one CONNINFO has, else DEFAULT-USER.
# Fails on a CONNINFO libpq would not parse either.
conninfo_rewrite() {
	printf '%s' "$1" | CI_HOST=$2 CI_PORT=$3 CI_DEFUSER=$4 CI_USER=$5 awk '
	function q(k, v) {
		gsub(/\\/, "\\\\", v)
		gsub(/\047/, "\\\047", v)
		return k "=\047" v "\047"
	}
	{ s = s $0 "\n" }
	END {
		n = length(s); i = 1; nk = 0; hasuser = 0
		while (1) {
			while (i <= n && substr(s, i, 1) ~ /[ \t\r\n]/) i++
			if (i > n) break
			k = ""
			while (i <= n && substr(s, i, 1) !~ /[ \t\r\n=]/) { k = k substr(s, i, 1); i++ }
			while (i <= n && substr(s, i, 1) ~ /[ \t\r\n]/) i++
			if (k == "" || substr(s, i, 1) != "=") exit 1
			i++
			while (i <= n && substr(s, i, 1) ~ /[ \t\r\n]/) i++
			v = ""
			if (substr(s, i, 1) == "\047") {
				i++; closed = 0
				while (i <= n) {
					c = substr(s, i, 1)
					if (c == "\\") { v = v substr(s, i + 1, 1); i += 2; continue }
					if (c == "\047") { i++; closed = 1; break }
					v = v c; i++
				}
				if (!closed) exit 1
			} else {
				while (i <= n) {
					c = substr(s, i, 1)
					if (c ~ /[ \t\r\n]/) break
					if (c == "\\") { i++; c = substr(s, i, 1) }
					v = v c; i++
				}
			}
			keys[++nk] = k; vals[nk] = v
		}
		out = ""
		for (j = 1; j <= nk; j++) {
			if (keys[j] == "host" || keys[j] == "hostaddr" || keys[j] == "port") continue
			if (keys[j] == "user") {
				hasuser = 1
				if (ENVIRON["CI_USER"] != "") continue
			}
			out = out q(keys[j], vals[j]) " "
		}
		if (ENVIRON["CI_USER"] != "")
			out = out q("user", ENVIRON["CI_USER"]) " "
		else if (!hasuser && ENVIRON["CI_DEFUSER"] != "")
			out = out q("user", ENVIRON["CI_DEFUSER"]) " "
		print out q("host", ENVIRON["CI_HOST"]) " " q("port", ENVIRON["CI_PORT"])
	}'
}

# conf_get FILE NAME: the value of the last "NAME = ..." line of a
# postgresql.conf-style FILE, unquoted; nothing when absent.
conf_get() {
	[ -r "$1" ] || return 0
	CG_NAME=$2 awk '
	{
		line = $0
		sub(/^[ \t]+/, "", line)
		name = line
		sub(/[ \t]*=.*$/, "", name)
		if (name != ENVIRON["CG_NAME"] || line !~ /=/) next
		v = line
		sub(/^[^=]*=[ \t]*/, "", v)
		if (substr(v, 1, 1) == "\047") {
			r = ""; i = 2; n = length(v)
			while (i <= n) {
				c = substr(v, i, 1)
				if (c == "\\") { r = r substr(v, i + 1, 1); i += 2; continue }
				if (c == "\047") {
					if (substr(v, i + 1, 1) == "\047") { r = r "\047"; i += 2; continue }
					break
				}
				r = r c; i++
			}
			val = r
		} else {
			sub(/[ \t]*(#.*)?$/, "", v)
			val = v
		}
		found = 1
	}
	END { if (found) print val }' "$1"
}

# conf_quote VALUE: VALUE as a postgresql.conf string literal.
conf_quote() {
	printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")"
}

# term_check KEY: refuse (exit 3) a term lower than the highest one already
# seen for KEY in $state_dir; record the term otherwise. The same term again
# is accepted (a retry). No term given: nothing is checked.
term_check() {
	if [ -z "${term:-}" ]; then
		say "no term given (--term %T): stale calls cannot be refused"
		return 0
	fi
	is_uint "$term" || usage_error "bad term '$term'"
	if ! (umask 077 && mkdir -p "$state_dir"); then
		fail "could not create the state directory $state_dir"
	fi
	_tc_f=$state_dir/term.$(printf '%s' "$1" | tr -c 'A-Za-z0-9.-' '_')
	(
		if command -v flock >/dev/null 2>&1; then
			flock -w 10 9 || fail "could not lock $_tc_f.lock"
		fi
		_tc_seen=0
		if [ -f "$_tc_f" ]; then
			read -r _tc_seen <"$_tc_f" || true
			is_uint "$_tc_seen" || _tc_seen=0
		fi
		if [ "$term" -lt "$_tc_seen" ]; then
			say "refusing a stale call: term $term is older than term $_tc_seen, already seen for $1"
			exit 3
		fi
		if [ "$term" -gt "$_tc_seen" ]; then
			if ! { printf '%s\n' "$term" >"$_tc_f.tmp" && mv -f "$_tc_f.tmp" "$_tc_f"; }; then
				fail "could not record term $term in $_tc_f"
			fi
		fi
	) 9>>"$_tc_f.lock"
}

# new_timeline: the timeline of the new primary's current WAL position.
new_timeline() {
	sql_new "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
}

# streaming_from_new: the backend acted on is a standby whose WAL receiver
# streams from the new primary.
streaming_from_new() {
	_sf_r=$(sql_node "SELECT pg_is_in_recovery()::text || ' ' ||
		coalesce((SELECT status || ' ' || sender_host || ' ' || sender_port
			  FROM pg_stat_wal_receiver), '')" 2>/dev/null) || return 1
	[ "$_sf_r" = "true streaming $new_host $new_port" ]
}

# wait_streaming SECONDS
wait_streaming() {
	say "waiting (at most $1 s) for $node_host:$node_port to stream from $new_host:$new_port"
	if wait_for "$1" 0.1 streaming_from_new; then
		say "$node_host:$node_port streams from $new_host:$new_port"
		return 0
	fi
	_ws_r=$(sql_node "SELECT status || ' from ' || coalesce(sender_host, '?') || ':' ||
		coalesce(sender_port::text, '?') FROM pg_stat_wal_receiver" 2>&1) || true
	say "$node_host:$node_port does not stream from $new_host:$new_port (WAL receiver: ${_ws_r:-none})"
	return 1
}

# ensure_slot NAME: a physical replication slot NAME on the new primary.
ensure_slot() {
	[ -n "$1" ] || return 0
	_es_r=$(sql_new "SELECT count(*) FROM (SELECT pg_create_physical_replication_slot(:'slot')
		WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = :'slot')) s" \
		-v slot="$1") || fail "could not create replication slot $1 on $new_host:$new_port"
	[ "$_es_r" = 0 ] || say "created replication slot $1 on $new_host:$new_port"
}

# ---- follow and rejoin: a standby (%d) and the new primary (%m)

# standby_options ARG...: the options pgvigil-follow and pgvigil-rejoin
# share (see their headers), with the environment pgvigil sets as defaults.
# The caller sets use_basebackup's default first.
standby_options() {
	node_host=${PGVIGIL_NODE_HOST:-} node_port=${PGVIGIL_NODE_PORT:-}
	node_user=${PGVIGIL_NODE_USER:-} node_db=${PGVIGIL_NODE_DBNAME:-}
	node_id=${PGVIGIL_NODE_ID:-} data=${PGVIGIL_NODE_DATA:-}
	new_host=${PGVIGIL_NEW_PRIMARY_HOST:-} new_port=${PGVIGIL_NEW_PRIMARY_PORT:-}
	new_user=${PGVIGIL_NEW_PRIMARY_USER:-} new_db=${PGVIGIL_NEW_PRIMARY_DBNAME:-}
	term=${PGVIGIL_TERM:-} state_dir=/var/lib/pgvigil/hooks
	repl_user='' slot='' stream_timeout=10 timeout=60 connect_timeout=5
	use_rewind=yes ssh_dest='' ssh_command="ssh -o BatchMode=yes -o ConnectTimeout=10"
	pg_log='' confdir='' bindir=''
	parse_args "--host=node_host --port=node_port --data=data --id=node_id --user=node_user
		--dbname=node_db --primary-host=new_host --primary-port=new_port
		--primary-user=new_user --primary-dbname=new_db --repl-user=repl_user --slot=slot
		--term=term --state-dir=state_dir --stream-timeout=stream_timeout --timeout=timeout
		--connect-timeout=connect_timeout --no-rewind=use_rewind=no
		--basebackup=use_basebackup=yes --no-basebackup=use_basebackup=no
		--ssh=ssh_dest --ssh-command=ssh_command --local=ssh_dest= --pg-log=pg_log
		--conf-dir=confdir --bindir=bindir" "$@"
	: "${node_port:=5432}" "${node_user:=postgres}" "${node_db:=postgres}"
	: "${new_port:=5432}" "${new_user:=postgres}" "${new_db:=postgres}"
	: "${pg_log:=/var/log/postgresql/pgvigil-$node_port.log}"
	[ -n "$node_host" ] || usage_error "no standby host (--host %h)"
	[ -n "$new_host" ] || usage_error "no new primary host (--primary-host %H)"
	check_seconds --stream-timeout "$stream_timeout"
	check_seconds --timeout "$timeout"
	check_seconds --connect-timeout "$connect_timeout"
	what="backend ${node_id:-?} ($node_host:$node_port)"
}

# read_standby_conninfo: cur_ci (and slot, unless --slot) from the running
# standby; cur_known=no when it does not answer (dd_rewind then reads its
# postgresql.auto.conf).
read_standby_conninfo() {
	cur_known=no
	cur_ci=''
	if _rc_ci=$(sql_node "SHOW primary_conninfo" 2>/dev/null) &&
		_rc_slot=$(sql_node "SHOW primary_slot_name" 2>/dev/null); then
		cur_known=yes
		cur_ci=$_rc_ci
		[ -n "$slot" ] || slot=${_rc_slot:-none}
	fi
}

# past_fork_point: the standby has WAL of a timeline that the new primary
# left at an earlier position (or never had): it cannot follow without a
# rewind. False when it can, and when that cannot be told (for instance the
# new primary's history is not readable by --primary-user: then the
# streaming wait decides).
past_fork_point() {
	_pf_tli=$(new_timeline 2>/dev/null) || return 1
	_pf_s=$(sql_node "SELECT greatest((SELECT timeline_id FROM pg_control_checkpoint()),
			(SELECT received_tli FROM pg_stat_wal_receiver)) || ' ' ||
		greatest(coalesce(pg_last_wal_receive_lsn(), '0/0'), coalesce(pg_last_wal_replay_lsn(), '0/0'))" \
		2>/dev/null) || return 1
	_pf_stli=${_pf_s%% *} _pf_lsn=${_pf_s#* }
	is_uint "$_pf_stli" && is_uint "$_pf_tli" || return 1
	[ "$_pf_stli" -lt "$_pf_tli" ] || return 1
	if ! _pf_hist=$(sql_new "SELECT pg_read_file('pg_wal/' || lpad(upper(to_hex($_pf_tli)), 8, '0') || '.history')" 2>/dev/null); then
		say "could not read the timeline history of $new_host:$new_port"
		return 1
	fi
	_pf_sw=$(printf '%s\n' "$_pf_hist" | awk -v t="$_pf_stli" '$1 == t { print $2 }')
	if [ -z "$_pf_sw" ]; then
		say "$what is on timeline $_pf_stli, which is not in the history of $new_host:$new_port"
		return 0
	fi
	_pf_gt=$(sql_new "SELECT :'a'::pg_lsn > :'b'::pg_lsn" -v a="$_pf_lsn" -v b="$_pf_sw") || return 1
	if [ "$_pf_gt" = t ]; then
		say "$what is at $_pf_lsn on timeline $_pf_stli; $new_host:$new_port left that timeline at $_pf_sw"
		return 0
	fi
	return 1
}

# ---- data directory steps: run where the data directory is, as its owner

# dd_vars: the assignments that carry the settings to dd_main.
dd_vars() {
	for _dv in me data confdir bindir pg_log timeout connect_timeout \
		new_host new_port new_user new_db repl_user slot cur_ci cur_known \
		use_rewind use_basebackup stop_mode; do
		eval "_dv_val=\${$_dv:-}"
		printf '%s=%s\n' "$_dv" "$(shq "$_dv_val")"
	done
}

# dd_run ACTION: run `dd_main ACTION` of this library on the data
# directory's host as its owner: through `$ssh_command $ssh_dest` with
# --ssh, else here, directly when this is the owner, with runuser as root,
# else with `sudo -n -u OWNER`.
dd_run() {
	if [ -n "${ssh_dest:-}" ]; then
		# shellcheck disable=SC2086 # ssh_command is a word list on purpose
		{ dd_vars; cat "$hooklib"; printf '\ndd_main %s\n' "$1"; } |
			(set -f; exec $ssh_command "$ssh_dest" 'sh -s')
		return
	fi
	[ -d "$data" ] || fail "no data directory $data on this host (use --ssh USER@HOST for a remote one)"
	_dr_owner=$(stat -c %U "$data") || fail "could not stat $data"
	if [ "$(id -u)" = 0 ] && [ "$_dr_owner" != root ]; then
		{ dd_vars; cat "$hooklib"; printf '\ndd_main %s\n' "$1"; } |
			runuser -u "$_dr_owner" -- sh -s
	elif [ "$(id -un)" = "$_dr_owner" ]; then
		{ dd_vars; cat "$hooklib"; printf '\ndd_main %s\n' "$1"; } | sh -s
	else
		{ dd_vars; cat "$hooklib"; printf '\ndd_main %s\n' "$1"; } |
			sudo -n -u "$_dr_owner" sh -s
	fi
}

dd_main() {
	set -eu
	cd /
	umask 077
	LC_ALL=C
	export LC_ALL
	[ -d "$data" ] || fail "no data directory $data"
	real=$(cd "$data" && pwd -P) || fail "could not resolve $data"
	ctl_dir=${confdir:-$data}
	case $1 in
	stop) dd_stop ;;
	promote) dd_promote ;;
	rewind) dd_rewind ;;
	*) usage_error "unknown data directory action $1" ;;
	esac
}

# dd_procs: pids of the processes whose working directory is the data
# directory (a postmaster and its children chdir there). Only processes
# this user may inspect are seen: those of the data directory's owner.
dd_procs() {
	_dp_pat=$(printf '%s' "$real" | sed 's/[][*?\\]/\\&/g')
	find /proc/[0-9]*/cwd -maxdepth 0 -lname "$_dp_pat" 2>/dev/null | cut -d/ -f3
}

dd_no_procs() {
	[ -z "$(dd_procs)" ]
}

# dd_postmaster: the pid of the running postmaster of the data directory;
# nothing when postmaster.pid is absent or names a pid that is gone, a
# zombie, or another process (a stale file after a crash).
dd_postmaster() {
	[ -f "$data/postmaster.pid" ] || return 0
	_pm=$(head -n 1 "$data/postmaster.pid" 2>/dev/null) || return 0
	is_uint "$_pm" || return 0
	if [ -d /proc ]; then
		[ "$(readlink "/proc/$_pm/cwd" 2>/dev/null)" = "$real" ] || return 0
	else
		kill -0 "$_pm" 2>/dev/null || return 0
	fi
	printf '%s\n' "$_pm"
}

# dd_clean_stop PID: a switchover's stop: CHECKPOINT (so the shutdown
# checkpoint has little left to write), then a fast shutdown, which sends
# all WAL to the connected standbys before it ends. Fails when the server
# is still running after it.
dd_clean_stop() {
	_cs_port=$(sed -n 4p "$data/postmaster.pid" 2>/dev/null)
	_cs_sock=$(sed -n 5p "$data/postmaster.pid" 2>/dev/null)
	if is_uint "$_cs_port" && [ -n "$_cs_sock" ]; then
		say "CHECKPOINT before the clean stop"
		PGCONNECT_TIMEOUT=${connect_timeout:-5} "$(pgbin psql)" -X -q -w -h "$_cs_sock" -p "$_cs_port" \
			-d postgres -c "SET statement_timeout = '${timeout}s'" -c CHECKPOINT </dev/null >&2 ||
			say "CHECKPOINT failed; the shutdown checkpoint does the work"
	fi
	say "stopping PostgreSQL in $data (postmaster $1, fast mode: a clean shutdown)"
	"$(pgbin pg_ctl)" stop -D "$ctl_dir" -m fast -w -t "$timeout" </dev/null >&2 ||
		fail "pg_ctl stop -m fast failed; PostgreSQL in $data may still be running"
	wait_for "$timeout" 0.02 dd_no_procs ||
		fail "processes of $data still running after the clean stop: $(dd_procs | tr '\n' ' ')"
	_cs_state=$("$(pgbin pg_controldata)" -D "$data" | sed -n 's/^Database cluster state: *//p')
	_cs_lsn=$("$(pgbin pg_controldata)" -D "$data" | sed -n 's/^Latest checkpoint location: *//p')
	[ "$_cs_state" = "shut down" ] ||
		fail "PostgreSQL in $data stopped, but its state is '$_cs_state', not 'shut down'"
	say "PostgreSQL in $data is stopped cleanly; shutdown checkpoint at $_cs_lsn"
	# pgvigil reads this line (hook report): the switchover's target must
	# have received the WAL up to here before it is promoted.
	printf 'pgvigil-report: shutdown_lsn=%s\n' "$_cs_lsn"
}

# dd_stop: the cooperative fence. Immediate stop (clean stop with
# stop_mode=clean); success only when no process of the data directory is
# left.
dd_stop() {
	_ds_pm=$(dd_postmaster)
	if [ -n "$_ds_pm" ] && [ "${stop_mode:-immediate}" = clean ]; then
		dd_clean_stop "$_ds_pm"
		return
	fi
	if [ -n "$_ds_pm" ]; then
		say "stopping PostgreSQL in $data (postmaster $_ds_pm, immediate mode)"
		"$(pgbin pg_ctl)" stop -D "$ctl_dir" -m immediate -w -t "$timeout" </dev/null >&2 ||
			say "pg_ctl stop failed; checking what is left"
	elif [ -f "$data/postmaster.pid" ]; then
		say "postmaster.pid of $data names no running postmaster: already stopped"
	else
		say "PostgreSQL in $data is not running"
	fi
	# Children of a killed postmaster leave on their own, soon.
	if ! wait_for "$timeout" 0.02 dd_no_procs; then
		_ds_left=$(dd_procs | tr '\n' ' ' | sed 's/ $//')
		say "processes of $data still running after ${timeout}s: $_ds_left; sending SIGKILL"
		# shellcheck disable=SC2086
		kill -9 $_ds_left 2>/dev/null || true
		wait_for 5 0.02 dd_no_procs ||
			fail "processes of $data still running: $(dd_procs | tr '\n' ' ')"
	fi
	say "PostgreSQL in $data is stopped"
}

dd_promote() {
	"$(pgbin pg_ctl)" status -D "$ctl_dir" >/dev/null 2>&1 ||
		fail "PostgreSQL in $data is not running"
	_dpr_state=$("$(pgbin pg_controldata)" -D "$data" | sed -n 's/^Database cluster state: *//p')
	case $_dpr_state in
	"in production")
		say "PostgreSQL in $data is already a primary"
		return 0
		;;
	esac
	say "pg_ctl promote -D $ctl_dir (cluster state: $_dpr_state)"
	"$(pgbin pg_ctl)" promote -D "$ctl_dir" -w -t "$timeout" </dev/null >&2 ||
		fail "pg_ctl promote failed"
}

# dd_restore_conf: put the saved *.conf files back; forget the copy.
dd_restore_conf() {
	for _rc_f in "$_rw_saved"/*.conf; do
		if [ -f "$_rc_f" ]; then
			cp -p "$_rc_f" "$data"/ || fail "could not restore ${_rc_f##*/} (a copy is in $_rw_saved)"
		fi
	done
	rm -rf "$_rw_saved"
}

# dd_rewind_fail MESSAGE: the server's own configuration back, then fail.
dd_rewind_fail() {
	dd_restore_conf
	fail "$1"
}

# dd_rewind: make the data directory a standby of the new primary: stop it,
# pg_rewind (or, when that fails or is not wanted, a new pg_basebackup),
# keep its own *.conf files, write standby.signal and primary_conninfo,
# start it.
dd_rewind() {
	[ -f "$data/PG_VERSION" ] || fail "$data is not a PostgreSQL data directory"
	if [ "$cur_known" != yes ]; then
		cur_ci=$(conf_get "$data/postgresql.auto.conf" primary_conninfo)
		[ -n "$slot" ] || slot=$(conf_get "$data/postgresql.auto.conf" primary_slot_name)
	fi
	[ "$slot" != none ] || slot=
	_rw_ci=$(conninfo_rewrite "$cur_ci" "$new_host" "$new_port" "$new_user" "$repl_user") ||
		fail "could not parse primary_conninfo '$cur_ci'"
	_rw_src="$(conninfo_kv host "$new_host") $(conninfo_kv port "$new_port") $(conninfo_kv user "$new_user") $(conninfo_kv dbname "$new_db") $(conninfo_kv connect_timeout "${connect_timeout:-5}")"

	if [ -n "$(dd_postmaster)" ]; then
		say "stopping PostgreSQL in $data (fast mode)"
		if ! "$(pgbin pg_ctl)" stop -D "$ctl_dir" -m fast -w -t "$timeout" </dev/null >&2; then
			say "fast stop failed; immediate stop (pg_rewind will recover it first)"
			"$(pgbin pg_ctl)" stop -D "$ctl_dir" -m immediate -w -t "$timeout" </dev/null >&2 ||
				fail "could not stop PostgreSQL in $data"
		fi
	fi
	wait_for "$timeout" 0.05 dd_no_procs ||
		fail "processes of $data still running: $(dd_procs | tr '\n' ' ')"

	# pg_rewind and pg_basebackup copy the source's configuration files:
	# keep this server's own.
	_rw_saved=$(mktemp -d "${TMPDIR:-/tmp}/pgvigil-conf.XXXXXX") ||
		fail "could not create a temporary directory"
	for _rw_f in "$data"/*.conf; do
		if [ -f "$_rw_f" ]; then
			cp -p "$_rw_f" "$_rw_saved/" || fail "could not save $_rw_f"
		fi
	done

	# A just promoted primary writes its new timeline to its control file
	# at its first checkpoint; pg_rewind reads it from there.
	printf 'CHECKPOINT\n' | pg_sql "$new_host" "$new_port" "$new_user" "$new_db" >/dev/null ||
		say "CHECKPOINT on $new_host:$new_port failed"

	_rw_done=no
	if [ "$use_rewind" = yes ]; then
		say "pg_rewind -D $data from $new_host:$new_port"
		if "$(pgbin pg_rewind)" -D "$data" --source-server="$_rw_src" </dev/null >&2; then
			_rw_done=yes
		elif [ "$use_basebackup" = yes ]; then
			say "pg_rewind failed; taking a new base backup instead"
		else
			dd_rewind_fail "pg_rewind failed"
		fi
	fi
	if [ "$_rw_done" = no ]; then
		[ "$use_basebackup" = yes ] || dd_rewind_fail "neither pg_rewind nor pg_basebackup allowed"
		say "removing the contents of $data for a new base backup from $new_host:$new_port"
		find "$data" -mindepth 1 -delete || dd_rewind_fail "could not empty $data"
		if ! "$(pgbin pg_basebackup)" -D "$data" -d "$_rw_ci" -X stream -c fast -w </dev/null >&2; then
			dd_rewind_fail "pg_basebackup failed; $data is incomplete"
		fi
		say "base backup done"
	fi

	dd_restore_conf
	_rw_auto=$data/postgresql.auto.conf
	{
		if [ -f "$_rw_auto" ]; then
			grep -v -E '^[[:space:]]*(primary_conninfo|primary_slot_name)[[:space:]]*=' "$_rw_auto" || true
		else
			echo '# Do not edit this file manually!'
			echo '# It will be overwritten by the ALTER SYSTEM command.'
		fi
		printf 'primary_conninfo = %s\n' "$(conf_quote "$_rw_ci")"
		if [ -n "$slot" ]; then
			printf 'primary_slot_name = %s\n' "$(conf_quote "$slot")"
		fi
	} >"$_rw_auto.pgvigil" || fail "could not write $_rw_auto"
	mv -f "$_rw_auto.pgvigil" "$_rw_auto"
	rm -f "$data/recovery.signal"
	: >"$data/standby.signal"
	ensure_slot "$slot"

	say "starting PostgreSQL in $data as a standby of $new_host:$new_port (log: $pg_log)"
	"$(pgbin pg_ctl)" start -D "$ctl_dir" -w -t "$timeout" -l "$pg_log" </dev/null >&2 ||
		fail "could not start PostgreSQL in $data (see $pg_log)"
}
