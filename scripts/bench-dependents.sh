#!/usr/bin/env bash
# What moving triggers and foreign keys adds to the MySQL cutover's write stall.
#
#   scripts/bench-dependents.sh PORT [ROWS] [RUNS]
#
# On the MySQL server at 127.0.0.1:PORT (user root, no password), for N = 0, 1
# and 5: a table of ROWS rows (default 20000) with N other tables whose foreign
# keys reference it and N triggers, migrated RUNS times (default 3) with
# `wraith migrate --execute`; prints the median time writes were blocked
# ("writes blocked" in wraith's summary). KEYS=0 or TRIGGERS=0 leaves those out.
# Uses (and drops) database wraith_dependents.
set -euo pipefail
port=${1:?usage: $0 PORT [ROWS] [RUNS]}
rows=${2:-20000}
runs=${3:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
wraith=${WRAITH:-$here/target/release/wraith}
[ -x "$wraith" ] || wraith=$here/target/debug/wraith
mysql=${MYSQL:-mysql}
sql() { $mysql -h127.0.0.1 -P"$port" -uroot "$@"; }
db=wraith_dependents
for n in 0 1 5; do
    {
        echo "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db; USE $db;"
        echo "SET SESSION cte_max_recursion_depth = $((rows + 1));"
        echo "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, note varchar(20));"
        echo "INSERT INTO t WITH RECURSIVE s (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $rows) SELECT i, i, 'x' FROM s;"
        for i in $(seq 1 "$n"); do
            if [ "${KEYS:-1}" != 0 ]; then
                echo "CREATE TABLE child$i (id int PRIMARY KEY, t_id int NOT NULL, CONSTRAINT child${i}_t FOREIGN KEY (t_id) REFERENCES t (id));"
                echo "INSERT INTO child$i VALUES (1, 1);"
            fi
            if [ "${TRIGGERS:-1}" != 0 ]; then
                echo "CREATE TRIGGER t_bu$i BEFORE UPDATE ON t FOR EACH ROW SET NEW.v = NEW.v;"
            fi
        done
    } | sql
    holds=()
    for run in $(seq 1 "$runs"); do
        out=$("$wraith" migrate --dsn "mysql://root@127.0.0.1:$port/$db" --table t \
            --alter "MODIFY note varchar($((20 + run)))" --execute --drop-old 2>&1) || {
            echo "$out" >&2
            exit 1
        }
        holds+=("$(echo "$out" | sed -n 's/.*writes blocked \([0-9]*\) ms.*/\1/p')")
    done
    median=$(printf '%s\n' "${holds[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")
    echo "N=$n: writes blocked ${holds[*]} ms (median $median ms)"
done
sql -e "DROP DATABASE $db"
