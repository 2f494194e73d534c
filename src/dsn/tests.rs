//! Parsing and redaction of connection strings, and how their gaps are filled.

use super::*;

#[test]
fn no_spelling_of_a_password_is_shown() {
    let cases = [
        (
            "postgres://bob:s3cret@db:5432/app?sslmode=disable",
            "postgres://bob@db:5432/app",
        ),
        (
            "postgres://bob:se/cret@db/app",
            "postgres://bob@db:5432/app",
        ),
        (
            "postgres://bob@db/app?password=s3cret",
            "postgres://bob@db:5432/app",
        ),
        (
            "host=db user=bob password = s3cret dbname=app",
            "postgres://bob@db/app",
        ),
        (
            "host=db user=bob password='s3cret and more' dbname=app",
            "postgres://bob@db/app",
        ),
        (
            "host=db user=bob password='s3cret=x y=z' dbname=app",
            "postgres://bob@db/app",
        ),
        (
            "host=/run/postgresql user=bob password=s3cret dbname=app",
            "postgres://bob@/app?host=/run/postgresql",
        ),
        ("mysql://bob:s3cret@db:3306/app", "mysql://bob@db:3306/app"),
        ("mariadb://bob:s3cret@db/app", "mariadb://bob@db:3306/app"),
    ];
    for (text, shown) in cases {
        let dsn = Dsn::parse(text).unwrap();
        assert_eq!(dsn.to_string(), shown, "{text}");
        assert_eq!(format!("{dsn:?}"), format!("Dsn({shown})"));
        assert!(
            dsn.options().iter().all(|(_, v)| !v.contains("cret")),
            "{text}: {:?}",
            dsn.options()
        );
        assert!(dsn.password().is_some_and(|p| p.contains("cret")), "{text}");
    }
    for text in [
        "mysql://bob:se/cret@db/app",
        "mysql://bob@db/app?password=s3cret",
        "host=db password='s3cret",
        "postgres://bob:s3cret@db:notaport/app",
        "s3cret",
    ] {
        let e = format!("{:#}", Dsn::parse(text).unwrap_err());
        assert!(!e.contains("cret"), "{text}: {e}");
        assert!(redacted(text).starts_with("<--dsn is not"), "{text}");
    }
}

#[test]
fn parts_and_options() {
    let d = Dsn::parse("postgres://bob:pw@db.example:6543/app?sslmode=require").unwrap();
    assert_eq!(d.kind(), Kind::Postgres);
    assert_eq!((d.host(), d.port()), ("db.example", 6543));
    assert_eq!((d.database(), d.user()), (Some("app"), Some("bob")));
    assert_eq!(d.tls().mode, TlsMode::Require);
    assert!(d.options().is_empty(), "{:?}", d.options());
    let d = Dsn::parse("host=db port=5433 dbname=app application_name='my app'").unwrap();
    assert_eq!(
        (d.host(), d.port(), d.database()),
        ("db", 5433, Some("app"))
    );
    assert_eq!(d.options(), &[("application_name".into(), "my app".into())]);
    let d = Dsn::parse("mariadb://root@127.0.0.1:3307/shop").unwrap();
    assert!(d.is_mysql() && d.kind() == Kind::MariaDb);
    assert_eq!((d.port(), d.database()), (3307, Some("shop")));
}

#[test]
fn gaps_are_filled_from_the_environment_and_files() {
    let env = |pairs: &[(&str, &str)]| Sources {
        env: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Sources::default()
    };
    let s = env(&[
        ("PGHOST", "db"),
        ("PGPORT", "6432"),
        ("PGUSER", "bob"),
        ("PGDATABASE", "app"),
        ("PGPASSWORD", "s3cret"),
        ("PGSSLMODE", "require"),
    ]);
    let d = Dsn::parse_with("", &s).unwrap();
    assert_eq!(d.to_string(), "postgres://bob@db:6432/app");
    assert_eq!(d.password(), Some("s3cret"));
    assert_eq!(d.password_from(), &PasswordFrom::Env("PGPASSWORD"));
    assert_eq!(d.tls().mode, TlsMode::Require);
    // What the text says wins.
    let d = Dsn::parse_with("postgres://ann:pw@h/x?sslmode=disable", &s).unwrap();
    assert_eq!((d.user(), d.password()), (Some("ann"), Some("pw")));
    assert_eq!(d.password_from(), &PasswordFrom::Text);
    assert_eq!(d.tls().mode, TlsMode::Disable);
    // MySQL: the option file's [client] section, then MYSQL_PWD.
    let dir = tempfile::tempdir().unwrap();
    let cnf = dir.path().join("my.cnf");
    std::fs::write(
        &cnf,
        "[client]\nuser=bob\npassword=fromfile\nssl-mode=REQUIRED\n",
    )
    .unwrap();
    let mut s = env(&[("MYSQL_PWD", "fromenv")]);
    s.defaults_file = Some(cnf);
    let d = Dsn::parse_with("mysql://h/app", &s).unwrap();
    assert_eq!((d.user(), d.password()), (Some("bob"), Some("fromfile")));
    assert_eq!(d.tls().mode, TlsMode::Require);
    let d = Dsn::parse_with("mysql://h/app", &env(&[("MYSQL_PWD", "fromenv")])).unwrap();
    assert_eq!(d.password(), Some("fromenv"));
    assert_eq!(d.password_from(), &PasswordFrom::Env("MYSQL_PWD"));
    // A typed password wins over every other.
    let mut s = env(&[("PGPASSWORD", "env")]);
    s.password = Some("typed".into());
    let d = Dsn::parse_with("postgres://u@h/db", &s).unwrap();
    assert_eq!(d.password(), Some("typed"));
}

#[test]
fn another_database_keeps_the_rest() {
    let d = Dsn::parse("postgres://bob:pw@db:5432/app?sslmode=disable").unwrap();
    let other = d.with_database("bench").unwrap();
    assert_eq!(other.database(), Some("bench"));
    assert_eq!(other.password(), Some("pw"));
    assert_eq!(other.options(), d.options());
    let d = Dsn::parse("host=db dbname=app user=bob").unwrap();
    assert_eq!(d.with_database("b2").unwrap().database(), Some("b2"));
    let d = Dsn::parse("mysql://root@h:3306/app").unwrap();
    assert_eq!(
        d.with_database("x").unwrap().to_string(),
        "mysql://root@h:3306/x"
    );
}
