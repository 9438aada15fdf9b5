#!/usr/bin/env bash
# Starts a MySQL-compatible server for the tests on 127.0.0.1:3307 (as the original's
# test database did) and prints the TEST_MYSQL_URL to use. With a Docker engine it runs
# MariaDB in a container; otherwise MariaDB from Debian packages, started directly (no
# systemd needed). Where mariadbd is missing too, it installs the mariadb-server package
# with apt-get: that needs root on Debian or Ubuntu; elsewhere install MariaDB yourself
# (or start Docker) first. Idempotent: a server already answering on the port is reused.
#   eval "$(scripts/start_test_db.sh)"   # exports TEST_MYSQL_URL
#   scripts/start_test_db.sh stop        # stops the server this script started and
#                                        # deletes its data directory (throw-away data)
# TEST_DB_PORT (default 3307) and TEST_DB_DIR (default $TMPDIR/messenger-test-mariadb)
# choose the port and the data directory.
set -euo pipefail

PORT="${TEST_DB_PORT:-3307}"
DATADIR="${TEST_DB_DIR:-${TMPDIR:-/tmp}/messenger-test-mariadb}"
SOCKET="$DATADIR/mysqld.sock"
USER_NAME=messenger
USER_PASSWORD=messenger
URL="mysql://$USER_NAME:$USER_PASSWORD@127.0.0.1:$PORT/messenger"

log() { echo "$*" >&2; }

if [ "${1:-}" = "stop" ]; then
  if docker inspect messenger-test-db >/dev/null 2>&1; then docker rm -f messenger-test-db >/dev/null; fi
  if [ -f "$DATADIR/mysqld.pid" ]; then
    pid="$(cat "$DATADIR/mysqld.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  # Only a directory this script made (it holds MariaDB's system tables) is deleted.
  if [ -d "$DATADIR/mysql" ]; then
    rm -rf "$DATADIR"
    log "Stopped; deleted the data directory $DATADIR."
  fi
  exit 0
fi

answers() {
  if command -v mariadb-admin >/dev/null 2>&1; then
    mariadb-admin --protocol=tcp -h127.0.0.1 -P"$PORT" -u"$USER_NAME" -p"$USER_PASSWORD" ping >/dev/null 2>&1
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
  fi
}

if answers; then
  log "A database server already answers on 127.0.0.1:$PORT."
  echo "export TEST_MYSQL_URL=$URL"
  exit 0
fi

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  log "Starting MariaDB in Docker on 127.0.0.1:$PORT"
  docker run -d --rm --name messenger-test-db -p "127.0.0.1:$PORT:3306" \
    -e MARIADB_ROOT_PASSWORD=root -e MARIADB_DATABASE=messenger \
    -e MARIADB_USER="$USER_NAME" -e MARIADB_PASSWORD="$USER_PASSWORD" \
    mariadb:10.11 --innodb-flush-log-at-trx-commit=2 --max-connections=2000 >/dev/null
  for _ in $(seq 1 60); do
    if docker exec messenger-test-db mariadb -uroot -proot -e \
      "GRANT ALL ON *.* TO '$USER_NAME'@'%'; FLUSH PRIVILEGES" >/dev/null 2>&1; then
      break
    fi
    sleep 1
  done
else
  if ! command -v mariadbd >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      log "Neither Docker nor MariaDB is available. Install MariaDB (Debian/Ubuntu: sudo apt-get install mariadb-server) or start Docker, then run this again."
      exit 1
    fi
    log "Installing MariaDB from Debian packages (apt-get install mariadb-server)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq mariadb-server >&2
  fi
  mkdir -p "$DATADIR"
  if [ ! -d "$DATADIR/mysql" ]; then
    log "Initialising a MariaDB data directory in $DATADIR"
    mariadb-install-db --user="$(id -un)" --datadir="$DATADIR" --skip-test-db \
      --auth-root-authentication-method=socket >/dev/null
  fi
  log "Starting MariaDB on 127.0.0.1:$PORT"
  # Durability is traded for speed: this server holds throw-away test databases only.
  nohup mariadbd --user="$(id -un)" --datadir="$DATADIR" --port="$PORT" --bind-address=127.0.0.1 \
    --socket="$SOCKET" --pid-file="$DATADIR/mysqld.pid" --skip-name-resolve --skip-log-bin \
    --innodb-flush-log-at-trx-commit=2 --innodb-buffer-pool-size=256M --max-connections=2000 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    >"$DATADIR/mysqld.log" 2>&1 &
  for _ in $(seq 1 60); do
    [ -S "$SOCKET" ] && mariadb --socket="$SOCKET" -uroot -e "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.5
  done
  mariadb --socket="$SOCKET" -uroot -e "
    CREATE USER IF NOT EXISTS '$USER_NAME'@'%' IDENTIFIED BY '$USER_PASSWORD';
    CREATE USER IF NOT EXISTS '$USER_NAME'@'localhost' IDENTIFIED BY '$USER_PASSWORD';
    GRANT ALL ON *.* TO '$USER_NAME'@'%';
    GRANT ALL ON *.* TO '$USER_NAME'@'localhost';
    CREATE DATABASE IF NOT EXISTS messenger;
    FLUSH PRIVILEGES;"
fi

for _ in $(seq 1 60); do answers && break; sleep 0.5; done
answers || { log "MariaDB did not come up; see $DATADIR/mysqld.log"; exit 1; }
log "MariaDB is ready."
echo "export TEST_MYSQL_URL=$URL"
