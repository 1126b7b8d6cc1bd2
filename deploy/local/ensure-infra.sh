#!/usr/bin/env bash
# Make sure a local RabbitMQ (with its management plugin) and PostgreSQL answer.
# Uses what runs already; starts the locally installed servers if they are down; with
# INSTALL_MISSING=1 (CI) installs them from Debian's packages first. Prints what it did.
set -euo pipefail

PG_HOST=${POSTGRES_HOST:-127.0.0.1}
PG_PORT=${POSTGRES_PORT:-5432}
AMQP_HOST=${AMQP_HOST:-127.0.0.1}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {  # host port name seconds
  for _ in $(seq 1 "$4"); do port_open "$1" "$2" && return 0; sleep 1; done
  echo "$3 did not come up on $1:$2 within $4s" >&2; return 1
}

install_missing() {
  local missing=()
  command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
  command -v pg_ctlcluster >/dev/null || missing+=(postgresql postgresql-contrib)
  if ((${#missing[@]})); then
    echo "installing ${missing[*]} from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

[ "${INSTALL_MISSING:-0}" = 1 ] && install_missing

if port_open "$PG_HOST" "$PG_PORT"; then
  echo "PostgreSQL answers on $PG_HOST:$PG_PORT"
elif command -v pg_ctlcluster >/dev/null; then
  version=$(ls /etc/postgresql | sort -V | tail -1)
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_port "$PG_HOST" "$PG_PORT" PostgreSQL 30
else
  echo "PostgreSQL is not running on $PG_HOST:$PG_PORT and not installed here: set POSTGRES_HOST/PORT, or run with INSTALL_MISSING=1" >&2
  exit 1
fi

if port_open "$AMQP_HOST" 5672; then
  echo "RabbitMQ answers on $AMQP_HOST:5672"
elif command -v rabbitmq-server >/dev/null; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached
  wait_port "$AMQP_HOST" 5672 RabbitMQ 60
else
  echo "RabbitMQ is not running on $AMQP_HOST:5672 and not installed here: set AMQP_URI, or run with INSTALL_MISSING=1" >&2
  exit 1
fi

if command -v rabbitmq-plugins >/dev/null && ! port_open "$AMQP_HOST" 15672; then
  echo "enabling the RabbitMQ management plugin (nameko's test helpers use its API)"
  rabbitmq-plugins enable rabbitmq_management >/dev/null
  wait_port "$AMQP_HOST" 15672 "RabbitMQ management" 30
fi
