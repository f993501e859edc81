# Process helpers shared by the test-peer start scripts (start-dovecot.sh, start-smtp.sh).
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

stop_with() { # WATCH_PID SERVER_PID: a watchdog in the background stops the server once the
  # watched process is gone, and only our server: when the server went first (stopped by the
  # test), its PID may already belong to another process.
  local watch=$1 server=$2 start
  start=$(started_at "$server")
  # SIGTERM first (the server stops its children); SIGKILL after 10 s if it is still there.
  ( while alive "$watch" && [[ $(started_at "$server") == "$start" ]]; do sleep 1; done
    [[ $(started_at "$server") == "$start" ]] || exit 0
    kill "$server" 2>/dev/null
    for _ in $(seq 50); do
      alive "$server" && [[ $(started_at "$server") == "$start" ]] || exit 0
      sleep 0.2
    done
    kill -KILL "$server" 2>/dev/null ) </dev/null >/dev/null 2>&1 &
}
