# Helpers shared by the .ci scripts that start servers (prometheus.sh, scale-out.sh).
# Sourced, not run.

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL SECONDS PID: succeed once URL answers 2xx, fail after SECONDS or as soon as
# process PID (the server being waited for) has exited.
wait_http() {
  local url=$1 tries=$(($2 * 10)) pid=$3
  for _ in $(seq 1 "$tries"); do
    kill -0 "$pid" 2>/dev/null || return 1
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
