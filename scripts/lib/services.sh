# Shared by scripts/test and scripts/bench: service URLs, starting services that are not
# running (installing them when missing), and sweeping what test and bench runs leave behind.
# Source it from the repository root.

redis_url="${ASYNCTASQ_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export ASYNCTASQ_TEST_REDIS_URL="$redis_url"
postgres_url="${ASYNCTASQ_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export ASYNCTASQ_TEST_POSTGRES_URL="$postgres_url"
export ASYNCTASQ_TEST_MYSQL_URL="${ASYNCTASQ_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"
mysql_cli=(mariadb -h 127.0.0.1 -P 3306 -u root)
# RabbitMQ tests run in a vhost of this run's own, deleted at the end (queues and all).
rabbit_vhost="asynctasq-test-$$"
if [ -z "${ASYNCTASQ_TEST_RABBITMQ_URL:-}" ]; then
  export ASYNCTASQ_TEST_RABBITMQ_URL="amqp://guest:guest@127.0.0.1:5672/$rabbit_vhost"
  own_vhost=1
else
  own_vhost=""
fi
# SQS tests run against moto on 127.0.0.1:4566, installed into an ignored venv when missing
# and started here when not running (and stopped at the end if this run started it).
sqs_endpoint="${ASYNCTASQ_TEST_SQS_ENDPOINT:-http://127.0.0.1:4566}"
export ASYNCTASQ_TEST_SQS_ENDPOINT="$sqs_endpoint"
moto_venv=.cache/moto-venv
moto_pid=""
apt_updated=""

apt_install() {
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "== installing redis-server"
    apt_install redis-server
  fi
  if ! redis-cli -u "$redis_url" ping >/dev/null 2>&1; then
    echo "== starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do
      redis-cli -u "$redis_url" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  redis-cli -u "$redis_url" ping >/dev/null 2>&1 || { echo "error: Redis at $redis_url cannot be reached" >&2; exit 1; }
}

# PgBouncer for the pooler tests, which start instances of their own (never a system one).
ensure_pgbouncer() {
  if ! command -v pgbouncer >/dev/null; then
    echo "== installing pgbouncer"
    apt_install pgbouncer
  fi
  command -v pgbouncer >/dev/null || { echo "error: pgbouncer cannot be installed" >&2; exit 1; }
}

# A PgBouncer of its own in transaction mode on a free loopback port in front of the shared
# PostgreSQL's `test` database, for benchmarks: sets PGBOUNCER_URL; stop_pgbouncer stops it.
start_pgbouncer() {
  PGBOUNCER_DIR=$(mktemp -d /tmp/asynctasq-bench-pgbouncer.XXXXXX)
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$PGBOUNCER_DIR/pgbouncer.ini" <<INI
[databases]
test = host=127.0.0.1 port=5432 dbname=test user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = ${PGBOUNCER_POOL:-20}
max_client_conn = 500
ignore_startup_parameters = extra_float_digits,options
logfile = $PGBOUNCER_DIR/pgbouncer.log
pidfile = $PGBOUNCER_DIR/pgbouncer.pid
INI
  chown -R postgres "$PGBOUNCER_DIR" 2>/dev/null || true
  if [ "$(id -u)" = 0 ]; then pgbouncer -d -u postgres "$PGBOUNCER_DIR/pgbouncer.ini"; else pgbouncer -d "$PGBOUNCER_DIR/pgbouncer.ini"; fi
  PGBOUNCER_URL="postgres://postgres@127.0.0.1:$port/test"
  until psql "$PGBOUNCER_URL" -Atc 'select 1' >/dev/null 2>&1; do sleep 0.1; done
}

stop_pgbouncer() {
  [ -n "${PGBOUNCER_DIR:-}" ] || return 0
  [ -f "$PGBOUNCER_DIR/pgbouncer.pid" ] && kill "$(cat "$PGBOUNCER_DIR/pgbouncer.pid")" 2>/dev/null
  sleep 0.3
  rm -rf "$PGBOUNCER_DIR"
  PGBOUNCER_DIR=
}

# A PostgreSQL cluster of a bench's own: initdb into a fresh directory, a free loopback port,
# trust authentication, the server's defaults (autovacuum on) plus any `-c name=value` given;
# OWN_PG_URL names its `postgres` database. stop_own_postgres stops it and deletes it.
start_own_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  OWN_PG_DIR=$(mktemp -d /tmp/asynctasq-bench-pg.XXXXXX)
  OWN_PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local as=()
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$OWN_PG_DIR"; as=(runuser -u postgres --); fi
  "${as[@]}" "$bin/initdb" -A trust -U postgres -N -D "$OWN_PG_DIR/data" >/dev/null
  local opts="-c listen_addresses=127.0.0.1 -c port=$OWN_PG_PORT -c unix_socket_directories=$OWN_PG_DIR -c shared_buffers=${OWN_PG_SHARED_BUFFERS:-128MB}"
  for o in "$@"; do opts="$opts -c $o"; done
  "${as[@]}" "$bin/pg_ctl" -D "$OWN_PG_DIR/data" -l "$OWN_PG_DIR/log" -o "$opts" -w start >/dev/null
  OWN_PG_BIN=$bin
  OWN_PG_URL="postgres://postgres@127.0.0.1:$OWN_PG_PORT/postgres"
}

stop_own_postgres() {
  [ -n "${OWN_PG_DIR:-}" ] || return 0
  local as=()
  if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi
  "${as[@]}" "$OWN_PG_BIN/pg_ctl" -D "$OWN_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$OWN_PG_DIR"
  OWN_PG_DIR=
}

ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null || ! command -v psql >/dev/null; then
    echo "== installing postgresql"
    apt_install postgresql
  fi
  local admin="postgres://postgres@127.0.0.1:5432/postgres"
  if ! psql "$admin" -qAtc 'SELECT 1' >/dev/null 2>&1; then
    local ver
    ver=$(ls /etc/postgresql | sort -n | tail -1)
    local hba="/etc/postgresql/$ver/main/pg_hba.conf"
    # The tests connect over TCP as postgres without a password.
    if [ -f "$hba" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
      sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    fi
    echo "== starting PostgreSQL $ver"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    for _ in $(seq 100); do
      psql "$admin" -qAtc 'SELECT 1' >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  psql "$admin" -qAtc 'SELECT 1' >/dev/null 2>&1 || { echo "error: PostgreSQL at 127.0.0.1:5432 cannot be reached" >&2; exit 1; }
  psql "$admin" -qAtc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 || psql "$admin" -qc 'CREATE DATABASE test'
}

ensure_mariadb() {
  if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
    echo "== installing mariadb-server"
    apt_install mariadb-server
  fi
  # `mariadb-admin ping` says alive even when access is denied: check with a real query.
  if ! "${mysql_cli[@]}" -e 'SELECT 1' >/dev/null 2>&1; then
    local cnf=/etc/mysql/mariadb.conf.d/99-asynctasq-tests.cnf
    if [ -d /etc/mysql/mariadb.conf.d ] && [ ! -f "$cnf" ]; then
      # As root, mariadbd exits silently unless a config names its user.
      printf '[mysqld]\nuser = mysql\nbind-address = 127.0.0.1\n' > "$cnf"
    fi
    echo "== starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    for _ in $(seq 100); do
      mariadb -u root -e 'SELECT 1' >/dev/null 2>&1 && break
      sleep 0.2
    done
    # Root over TCP with no password, as the tests connect (a fresh install only allows the socket).
    mariadb -u root -e "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; \
      CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;" >/dev/null 2>&1 || true
  fi
  "${mysql_cli[@]}" -e 'SELECT 1' >/dev/null 2>&1 || { echo "error: MariaDB/MySQL at 127.0.0.1:3306 cannot be reached" >&2; exit 1; }
  "${mysql_cli[@]}" -e 'CREATE DATABASE IF NOT EXISTS test'
}

amqp_open() {
  (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null
}

ensure_rabbitmq() {
  if ! command -v rabbitmq-server >/dev/null || ! command -v rabbitmqctl >/dev/null; then
    echo "== installing rabbitmq-server"
    apt_install rabbitmq-server
  fi
  if ! amqp_open || ! timeout 20 rabbitmqctl -q await_startup >/dev/null 2>&1; then
    echo "== starting RabbitMQ"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    # `await_startup` straight after the start fails until the node is up: retry.
    for _ in $(seq 120); do
      timeout 20 rabbitmqctl -q await_startup >/dev/null 2>&1 && break
      sleep 0.5
    done
  fi
  amqp_open || { echo "error: RabbitMQ at 127.0.0.1:5672 cannot be reached" >&2; exit 1; }
  if [ -n "$own_vhost" ]; then
    rabbitmqctl -q add_vhost "$rabbit_vhost" >/dev/null
    rabbitmqctl -q set_permissions -p "$rabbit_vhost" guest '.*' '.*' '.*' >/dev/null
  fi
}

sqs_open() {
  (exec 3<>/dev/tcp/127.0.0.1/4566) 2>/dev/null
}

# One SQS call in the AWS JSON 1.0 protocol the SDK speaks: proves the server understands it.
sqs_answers_json() {
  curl -sf -X POST "$sqs_endpoint/" -H 'Content-Type: application/x-amz-json-1.0' -H 'X-Amz-Target: AmazonSQS.ListQueues' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0' \
    -d '{"QueueNamePrefix": "asynctasq-probe-"}' | grep -q '^{'
}

ensure_moto() {
  if [ "$sqs_endpoint" = "http://127.0.0.1:4566" ] && ! sqs_open; then
    if [ ! -x "$moto_venv/bin/moto_server" ]; then
      echo "== installing moto into $moto_venv"
      python3 -m venv "$moto_venv" 2>/dev/null || { apt_install python3-venv; rm -rf "$moto_venv"; python3 -m venv "$moto_venv"; }
      "$moto_venv/bin/pip" install -q 'moto[server]==5.2.5'
    fi
    echo "== starting moto (SQS) on 127.0.0.1:4566"
    mkdir -p .cache
    "$moto_venv/bin/moto_server" -H 127.0.0.1 -p 4566 >.cache/moto.log 2>&1 &
    moto_pid=$!
    for _ in $(seq 60); do sqs_open && break; sleep 0.5; done
  fi
  sqs_answers_json || { echo "error: no SQS (moto) answering the JSON protocol at $sqs_endpoint" >&2; exit 1; }
}

# The dashboard's browser test: Debian's Chromium (never a downloaded browser) and
# playwright-core from npm, pinned by tests/e2e/package-lock.json.
ensure_browser() {
  if ! command -v chromium >/dev/null; then
    echo "== installing chromium"
    apt_install chromium
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "== installing node and npm"
    apt_install nodejs npm
  fi
  if [ ! -f tests/e2e/node_modules/playwright-core/package.json ] \
    || [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.package-lock.json ]; then
    echo "== installing playwright-core into tests/e2e"
    npm ci --prefix tests/e2e --no-audit --no-fund --silent
  fi
  [ -x /usr/bin/chromium ] || { echo "error: no /usr/bin/chromium for the dashboard's browser test" >&2; exit 1; }
}

stop_moto() {
  [ -z "$moto_pid" ] || kill "$moto_pid" 2>/dev/null || true
}

# Tests write under key prefixes `asynctasq-test-*` on the shared Redis; leave it as found.
sweep_redis() {
  redis-cli -u "$redis_url" --scan --pattern 'asynctasq-test-*' | xargs -r -n 500 redis-cli -u "$redis_url" del >/dev/null || true
}

# Tests create tables `asynctasq_test_*` in the shared PostgreSQL database; drop them after.
sweep_postgres() {
  # One statement (and transaction) per table: a single transaction dropping every table runs
  # out of lock slots (max_locks_per_transaction) after a few thousand and drops none. The
  # functions of limited claims go with their tables.
  psql "$postgres_url" -qAt 2>/dev/null <<'SQL' | psql "$postgres_url" -q >/dev/null 2>&1 || true
SELECT format('DROP TABLE IF EXISTS %I CASCADE;', tablename) FROM pg_tables
 WHERE schemaname = 'public' AND tablename LIKE 'asynctasq\_test\_%';
SELECT format('DROP FUNCTION IF EXISTS %I;', proname) FROM pg_proc
 WHERE proname LIKE 'asynctasq\_test\_%';
SQL
}

# ... and tables `asynctasq_test_*` in the shared MariaDB `test` database.
sweep_mysql() {
  "${mysql_cli[@]}" -N test -e "SELECT CONCAT('DROP TABLE IF EXISTS \`', table_name, '\`;') FROM information_schema.tables \
    WHERE table_schema = 'test' AND table_name LIKE 'asynctasq\\_test\\_%'" 2>/dev/null | "${mysql_cli[@]}" test 2>/dev/null || true
}

# This run's vhost, vhosts of earlier runs that died (their pid is gone), and broker nodes
# of a test's own that a killed test left running.
sweep_rabbitmq() {
  [ -z "$own_vhost" ] || rabbitmqctl -q delete_vhost "$rabbit_vhost" >/dev/null 2>&1 || true
  local v
  for v in $(rabbitmqctl -q list_vhosts name 2>/dev/null | grep '^asynctasq-test-[0-9]*$' || true); do
    kill -0 "${v#asynctasq-test-}" 2>/dev/null || rabbitmqctl -q delete_vhost "$v" >/dev/null 2>&1 || true
  done
  local node pid
  for node in $(epmd -names 2>/dev/null | awk '/^name asynctasq-test-/ { print $2 }'); do
    pid=${node#asynctasq-test-}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null && continue
    timeout 30 rabbitmqctl -q -n "$node@localhost" stop >/dev/null 2>&1 || true
  done
}

sweep() {
  stop_moto
  sweep_rabbitmq
  sweep_redis
  sweep_postgres
  sweep_mysql
}

# A Redis Cluster of six nodes (three masters with a replica each) on free loopback ports, for
# benchmarks (tests start their own from Rust): sets REDIS_CLUSTER_URL; stop_redis_cluster
# stops the nodes and removes their data (callers trap it).
start_redis_cluster() {
  REDIS_CLUSTER_DIR=$(mktemp -d /tmp/asynctasq-bench-cluster.XXXXXX)
  local ports=() addrs=() p
  ports=($(python3 -c 'import socket
ss = [socket.socket() for _ in range(12)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'))
  for i in 0 2 4 6 8 10; do
    p=${ports[$i]}
    mkdir -p "$REDIS_CLUSTER_DIR/$p"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$p" --cluster-port "${ports[$((i + 1))]}" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --save "" --appendonly no --dir "$REDIS_CLUSTER_DIR/$p" --logfile "$REDIS_CLUSTER_DIR/$p/log" \
      --pidfile "$REDIS_CLUSTER_DIR/$p/pid"
    addrs+=("127.0.0.1:$p")
  done
  for a in "${addrs[@]}"; do
    until redis-cli -h 127.0.0.1 -p "${a#*:}" ping >/dev/null 2>&1; do sleep 0.05; done
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  for a in "${addrs[@]}"; do
    until redis-cli -h 127.0.0.1 -p "${a#*:}" cluster info | grep -q 'cluster_state:ok' &&
      redis-cli -h 127.0.0.1 -p "${a#*:}" info replication | grep -Eq 'role:master|master_link_status:up'; do sleep 0.1; done
  done
  REDIS_CLUSTER_URL="redis+cluster://$(IFS=,; echo "${addrs[*]}")"
}

stop_redis_cluster() {
  [ -n "${REDIS_CLUSTER_DIR:-}" ] || return 0
  local pidfile
  for pidfile in "$REDIS_CLUSTER_DIR"/*/pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
  done
  sleep 0.5
  rm -rf "$REDIS_CLUSTER_DIR"
  REDIS_CLUSTER_DIR=
}
