#!/usr/bin/env bash
# Starts or stops a throw-away ClickHouse server on loopback for the tests.
#   scripts/clickhouse.sh start   # prints the HTTP URL; data in a temp dir
#   scripts/clickhouse.sh stop    # stops it and deletes its data
#   scripts/clickhouse.sh pause   # stops the server, keeps its data
#   scripts/clickhouse.sh resume  # starts a paused server again on its data
# Port: $GATEHOUSE_CH_PORT (default 18123; the native protocol uses the next
# port). State: /tmp/gatehouse-clickhouse-$port, so instances on different
# ports do not collide.
set -euo pipefail

port="${GATEHOUSE_CH_PORT:-18123}"
tcp_port=$((port + 1))
state="/tmp/gatehouse-clickhouse-$port"
pidfile="$state/server.pid"

pause() {
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}

stop() {
  pause
  rm -rf "$state"
}

# Starts the server on the config in $state and waits until it answers.
launch() {
  clickhouse-server --config-file="$state/config.xml" >>"$state/log/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$port/ping" >/dev/null 2>&1; then
      echo "http://127.0.0.1:$port"
      return 0
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || break
    sleep 0.1
  done
  echo "ClickHouse did not start; its log:" >&2
  tail -n 30 "$state/log/stdout.log" "$state/log/error.log" >&2 2>/dev/null || true
  return 1
}

resume() {
  [ -f "$state/config.xml" ] || { echo "no ClickHouse state in $state: use start" >&2; exit 1; }
  pause
  launch
}

start() {
  command -v clickhouse-server >/dev/null || {
    echo "clickhouse-server is not installed (apt-get install clickhouse-server clickhouse-client)" >&2
    exit 1
  }
  stop
  mkdir -p "$state"/{data,tmp,user_files,format_schemas,log}
  cat > "$state/users.xml" <<XML
<yandex>
  <profiles>
    <default>
      <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
  cat > "$state/config.xml" <<XML
<yandex>
  <logger>
    <level>warning</level>
    <log>$state/log/server.log</log>
    <errorlog>$state/log/error.log</errorlog>
    <console>0</console>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$port</http_port>
  <tcp_port>$tcp_port</tcp_port>
  <path>$state/data/</path>
  <tmp_path>$state/tmp/</tmp_path>
  <user_files_path>$state/user_files/</user_files_path>
  <format_schema_path>$state/format_schemas/</format_schema_path>
  <users_config>$state/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>1073741824</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
XML
  launch || { stop; exit 1; }
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  pause) pause ;;
  resume) resume ;;
  *) echo "usage: $0 start|stop|pause|resume" >&2; exit 2 ;;
esac
