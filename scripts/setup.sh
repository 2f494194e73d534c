# Installs what wraith's demo and tests need when it is missing (sourced by the other scripts).
# Debian packages only: a Rust toolchain (when cargo is absent), the PostgreSQL and MariaDB server
# binaries, and percona-toolkit (the bench compares with pt-online-schema-change).

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
