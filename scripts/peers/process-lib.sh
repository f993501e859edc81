# Process helpers shared by the test-peer start scripts (start-dovecot.sh, start-smtp.sh,
# start-postgres.sh).
# Sourced, not run.

alive() { # PID exists and is not a zombie (kill -0 succeeds on zombies)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != [ZX] ]]
}

started_at() { # the kernel's start time of PID (field 22 of /proc/PID/stat): a PID number is
  local stat  # reused once its process is gone, the pair (PID, start time) is not
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  set -- $stat
  echo "${20}"
}

free_ports() { # two distinct free ports, both held open while choosing
  python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1",0))
print(*[x.getsockname()[1] for x in s])'
}

stop_with() { # WATCH_PID SERVER_PID [SIGNAL [DIR]]: a watchdog in the background stops the server
  # once the watched process is gone, and only our server: when the server went first (stopped by
  # the test), its PID may already belong to another process. SIGNAL (default TERM) first, SIGKILL
  # after 10 s if it is still there; then DIR, if given, is removed.
  local watch=$1 server=$2 signal=${3:-TERM} remove=${4:-} start
  start=$(started_at "$server")
  ( while alive "$watch" && [[ $(started_at "$server") == "$start" ]]; do sleep 1; done
    if [[ $(started_at "$server") == "$start" ]]; then
      kill -"$signal" "$server" 2>/dev/null
      for _ in $(seq 50); do
        alive "$server" && [[ $(started_at "$server") == "$start" ]] || break
        sleep 0.2
      done
      if alive "$server" && [[ $(started_at "$server") == "$start" ]]; then kill -KILL "$server" 2>/dev/null || true; fi
    fi
    [[ -z $remove ]] || rm -rf "$remove" ) </dev/null >/dev/null 2>&1 &
}
