# Real services on 127.0.0.1 for the test suite and the benchmarks, sourced by
# scripts/test and benches/run: an S3-compatible server (moto's server, from PyPI,
# installed into a venv this script owns) and a PostgreSQL cluster (Debian's package,
# installed with apt when missing) initdb'd into a temp folder. Both listen on free
# loopback ports and stop when the sourcing script exits. Exports
# CRMFLOW_TEST_S3_ENDPOINT and CRMFLOW_TEST_PG.
venv="${CRMFLOW_VENV:-$HOME/.cache/crmflow-venv}"
if [ ! -x "$venv/bin/moto_server" ]; then
    echo "== installing moto[server] into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'moto[server]'
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp -t crmflow-moto.XXXXXX)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > "$log" 2>&1 &
moto_pid=$!
pg_dir=""
cleanup() {
    kill "$moto_pid" 2>/dev/null || true
    rm -f "$log"
    if [ -n "$pg_dir" ]; then
        "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$pg_dir"
    fi
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; then break; fi
    sleep 0.1
done
export CRMFLOW_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
echo "== moto S3 server on $CRMFLOW_TEST_S3_ENDPOINT"

# PostgreSQL: Debian's server binaries, a cluster of our own in a temp folder.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    echo "== installing postgresql (apt)"
    if [ "$(id -u)" = 0 ]; then apt-get install -y -qq postgresql >/dev/null; else sudo apt-get install -y -qq postgresql >/dev/null; fi
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
pg_dir=$(mktemp -d -t crmflow-pg.XXXXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then
    # initdb refuses to run as root: the cluster belongs to an unprivileged user.
    pg_user=$(id -u postgres >/dev/null 2>&1 && echo postgres || echo nobody)
    chown "$pg_user" "$pg_dir"
    as_pg=(runuser -u "$pg_user" --)
fi
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U crmflow --auth=trust -E UTF8 >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$pg_dir -c fsync=off" start >/dev/null
export CRMFLOW_TEST_PG="host=127.0.0.1 port=$pg_port user=crmflow dbname=postgres"
echo "== PostgreSQL ($("$pg_bin/postgres" --version)) on 127.0.0.1:$pg_port"
