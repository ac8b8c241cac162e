#!/usr/bin/env bash
# Start the local services Pygigo's tests and benchmarks use, if they are not already up:
# PostgreSQL (5432), Redis (6379), RabbitMQ (5672). Idempotent; loopback only.
#   infra/services.sh [start|status|stop NAME|start NAME]
set -u

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # wait_port PORT NAME SECONDS
  for _ in $(seq 1 $(( $3 * 5 ))); do up "$1" && { echo "$2 is up on 127.0.0.1:$1"; return 0; }; sleep 0.2; done
  echo "$2 did not come up on 127.0.0.1:$1" >&2; return 1
}

start_postgres() {
  up 5432 && return 0
  command -v pg_ctlcluster >/dev/null || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; return 1; }
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  wait_port 5432 PostgreSQL 30
}

start_redis() {
  up 6379 && return 0
  command -v redis-server >/dev/null || { echo "Redis is not installed (apt-get install redis-server)" >&2; return 1; }
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 Redis 15
}

start_rabbitmq() {
  up 5672 && return 0
  command -v rabbitmq-server >/dev/null || { echo "RabbitMQ is not installed (apt-get install rabbitmq-server)" >&2; return 1; }
  rabbitmq-server -detached
  wait_port 5672 RabbitMQ 90
}

stop_service() {
  case "$1" in
    redis) redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true ;;
    rabbitmq) rabbitmqctl stop >/dev/null 2>&1 || true ;;
    postgres) pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main stop ;;
    *) echo "unknown service $1" >&2; return 2 ;;
  esac
}

case "${1:-start}" in
  start)
    if [ -n "${2:-}" ]; then "start_$2"; exit $?; fi
    rc=0; start_postgres || rc=1; start_redis || rc=1; start_rabbitmq || rc=1; exit $rc ;;
  stop) stop_service "${2:?stop which service?}" ;;
  status)
    for s in "5432 PostgreSQL" "6379 Redis" "5672 RabbitMQ"; do
      set -- $s; if up "$1"; then echo "$2: up"; else echo "$2: down"; fi
    done ;;
  *) echo "usage: $0 [start [postgres|redis|rabbitmq]|stop NAME|status]" >&2; exit 2 ;;
esac
