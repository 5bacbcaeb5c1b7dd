# shellcheck shell=bash
# Background processes of the cluster: each runs in its own session with
# its pid in $RUN_DIR/NAME.pid and its output in $LOG_DIR/NAME.log.

start_proc() { # start_proc NAME COMMAND [ARGS...]
  local name="$1"; shift
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  log "starting $name"
  setsid "$@" >> "$LOG_DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN_DIR/$name.pid"
}

proc_pid() { cat "$RUN_DIR/$1.pid" 2>/dev/null || true; }

proc_alive() {
  local pid; pid="$(proc_pid "$1")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# stop_proc NAME: SIGTERM, up to 15s grace, then SIGKILL; the whole session
# (process group) so that helpers it started go too.
stop_proc() {
  local name="$1" pid
  pid="$(proc_pid "$name")"
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN_DIR/$name.pid"
}

# wait_for DESCRIPTION SECONDS PROC COMMAND...: polls COMMAND every 0.25s;
# fails early, with the end of PROC's log, when PROC has died.
wait_for() {
  local what="$1" timeout="$2" proc="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$proc" ] && ! proc_alive "$proc"; then
      tail -30 "$LOG_DIR/$proc.log" >&2 || true
      die "$proc exited while waiting for $what; log: $LOG_DIR/$proc.log"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ -n "$proc" ] && { tail -30 "$LOG_DIR/$proc.log" >&2 || true; }
      die "timed out after ${timeout}s waiting for $what"
    fi
    sleep 0.25
  done
}
