#!/usr/bin/env bash
# Starts the middleware the tcp protocol presets are tested against, each only if its
# port on 127.0.0.1 is not answering yet, then waits (bounded) until it answers.
# One line per service. `make test` runs it before pytest; CI machines boot without
# them running (systemd is not PID 1 there, so the commands are the machine docs' own).
#
#   bash scripts/start-services.sh        exit 0 when all four answer, 1 otherwise
set -uo pipefail

wait_seconds=${START_SERVICES_WAIT:-90}  # RabbitMQ (Erlang) needs the longest: ~10-20 s

say() { printf 'start-services: %s\n' "$*"; }

answering() {  # does something accept TCP connections on 127.0.0.1:$1?
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

start() {  # the machine docs' command for service $1
    case $1 in
        PostgreSQL) pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start ;;
        Redis) redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log ;;
        RabbitMQ) rabbitmq-server -detached ;;
        MariaDB) start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd ;;
    esac
}

services=(PostgreSQL:5432 MariaDB:3306 Redis:6379 RabbitMQ:5672)
declare -A started=() failures=()
output=$(mktemp)
trap 'rm -f "$output"' EXIT

# Start every missing service first, so that their start-ups overlap.
for entry in "${services[@]}"; do
    name=${entry%%:*} port=${entry##*:}
    answering "$port" && continue
    # Into a file, not $(...): a daemon that keeps the inherited stdout open would
    # make a command substitution wait for it forever.
    if start "$name" >"$output" 2>&1; then
        started[$name]=$SECONDS
    else
        started[$name]=failed
        failures[$name]=$(tail -n 3 "$output" | tr '\n' ' ')
    fi
done

status=0
for entry in "${services[@]}"; do
    name=${entry%%:*} port=${entry##*:}
    if [[ -z ${started[$name]:-} ]]; then
        say "$name 127.0.0.1:$port already answering"
        continue
    fi
    if [[ ${started[$name]} == failed ]]; then
        say "$name 127.0.0.1:$port not answering, and its start command failed: ${failures[$name]}" >&2
        status=1
        continue
    fi
    until answering "$port"; do
        if ((SECONDS - started[$name] >= wait_seconds)); then
            break
        fi
        sleep 0.5
    done
    if answering "$port"; then
        say "$name 127.0.0.1:$port started, answering after $((SECONDS - started[$name])) s"
    else
        say "$name 127.0.0.1:$port started but not answering after ${wait_seconds} s" >&2
        status=1
    fi
done
exit "$status"
