//! The binary's contract with its operator: dry runs, configuration and environment errors,
//! an unreachable database, migrations; exit codes and one-line messages without secrets.

use crate::common::{TestDb, run};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/securities.yaml");
const SECRET: &str = "pa55-do-not-print";

fn db_parts() -> Vec<(&'static str, &'static str)> {
    vec![
        ("DB_HOST", "db.example.internal"),
        ("DB_NAME", "markets"),
        ("DB_USER", "encoder"),
        ("DB_PASSWORD", SECRET),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_plan_and_touches_nothing() {
    // Neither the database host nor Yahoo exist: a dry run must not notice.
    let mut env = db_parts();
    env.push(("YAHOO_BASE_URL", "http://127.0.0.1:9"));
    let r = run(
        &[
            "--config",
            SHIPPED,
            "--dry-run",
            "--categories",
            "indices",
            "etfs",
        ],
        &env,
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(
        r.stdout
            .contains("postgres://encoder:[redacted]@db.example.internal:5432/markets"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("indices (4)"), "{}", r.stdout);
    assert!(r.stdout.contains("^GSPC"), "{}", r.stdout);
    assert!(r.stdout.contains("etfs (6)"), "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "features:   14 per trade date from ARKK BTCUSD DXY GLD HYG IWM LQD QQQ SPY TLT VIX"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("crypto"), "{}", r.stdout);
    // 10 securities at the polite default of 1 request/s, and what bounds the run.
    assert!(
        r.stdout.contains(
            "fetch:      ~10 s for 10 requests (1 request(s)/s, 5 in flight); at most 82 requests (encoding.max_requests); 3 throttled answers in a row pause every fetch for 300 s, up to 2 time(s), then the rest is skipped"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("60 days") || r.stdout.contains("61 days"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(SECRET) && !r.stderr.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_shows_a_backfill_window_and_symbols() {
    let r = run(
        &[
            "--config",
            SHIPPED,
            "--dry-run",
            "--symbols",
            "SPY",
            "^VIX",
            "--from",
            "2024-01-02",
            "--to",
            "2024-03-29",
        ],
        &db_parts(),
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(r.stdout.contains("2024-01-02..2024-03-29"), "{}", r.stdout);
    assert!(
        r.stdout.contains("selected:   2 securities"),
        "{}",
        r.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_shows_the_shard_from_the_flag_or_the_indexed_job() {
    let flag = run(
        &[
            "--config",
            SHIPPED,
            "--dry-run",
            "--no-embeddings",
            "--shard",
            "1/4",
        ],
        &db_parts(),
    )
    .await;
    assert_eq!(flag.code, 0, "{flag:#?}");
    assert!(flag.stdout.contains("shard:      1/4"), "{}", flag.stdout);
    let mut env = db_parts();
    env.extend([
        ("JOB_COMPLETION_INDEX", "3"),
        ("MARKET_ENCODER_SHARDS", "4"),
    ]);
    let indexed = run(&["--config", SHIPPED, "--dry-run", "--no-embeddings"], &env).await;
    assert_eq!(indexed.code, 0, "{indexed:#?}");
    assert!(
        indexed.stdout.contains("shard:      3/4"),
        "{}",
        indexed.stdout
    );
    // The four shards of the shipped file together select every enabled security once.
    let mut total = 0;
    for i in 0..4 {
        let shard = format!("{i}/4");
        let r = run(
            &[
                "--config",
                SHIPPED,
                "--dry-run",
                "--no-embeddings",
                "--shard",
                &shard,
            ],
            &db_parts(),
        )
        .await;
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with("selected:"))
            .unwrap();
        total += line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<usize>()
            .unwrap();
    }
    let all = run(
        &["--config", SHIPPED, "--dry-run", "--no-embeddings"],
        &db_parts(),
    )
    .await;
    assert!(all.stdout.contains("shard:      none"), "{}", all.stdout);
    assert!(
        all.stdout
            .contains(&format!("selected:   {total} securities")),
        "{}",
        all.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_shard_is_a_usage_error() {
    let r = run(
        &["--config", SHIPPED, "--dry-run", "--shard", "4/4"],
        &db_parts(),
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("out of range"), "{}", r.stderr);
    let mut env = db_parts();
    env.push(("JOB_COMPLETION_INDEX", "0"));
    let r = run(&["--config", SHIPPED, "--dry-run", "--no-embeddings"], &env).await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr.contains("MARKET_ENCODER_SHARDS is not"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_read_their_environment_variables() {
    let mut env = db_parts();
    env.extend([
        ("MARKET_ENCODER_CONFIG", SHIPPED),
        ("MARKET_ENCODER_DRY_RUN", "true"),
        ("MARKET_ENCODER_CATEGORIES", "crypto"),
        ("MARKET_ENCODER_DAYS_BACK", "5"),
    ]);
    let r = run(&[], &env).await;
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(r.stdout.contains("crypto (2)"), "{}", r.stdout);
    assert!(r.stdout.contains("(6 days)"), "{}", r.stdout);
}

/// A dry run of this securities.yaml text.
async fn dry_run_of(yaml: &str) -> crate::common::Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("securities.yaml");
    std::fs::write(&path, yaml).unwrap();
    run(
        &["--config", path.to_str().unwrap(), "--dry-run"],
        &db_parts(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_error_names_file_line_and_field_and_exits_2() {
    let r = dry_run_of(
        "securities:\n  indices:\n    - symbol: \"^GSPC\"\n      name: \"S&P 500\"\n      db_symbol: \"SPX\"\n      enabeld: true\n",
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr
            .contains("securities.yaml:6: securities.indices[0].enabeld: unknown key"),
        "{}",
        r.stderr
    );

    let r = dry_run_of(
        "securities:\n  indices:\n    - symbol: \"^GSPC\"\n      name: \"S&P 500\"\n      db_symbol: \"SPX\"\n  etfs:\n    - symbol: \"SPY\"\n      name: \"SPDR\"\n      db_symbol: \"SPX\"\n",
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr.contains("securities.yaml:9: securities.etfs[0].db_symbol: \"SPX\" is already used by securities.indices[0] (line 5)"),
        "{}",
        r.stderr
    );

    let r = dry_run_of("securities:\n  etfs:\n    - symbol: \"SPY\"\n      name: \"SPDR\"\nfeatures:\n  roles:\n    spy: SPX\n").await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr.contains("securities.yaml:7: features.roles.spy: \"SPX\" is not the db_symbol of any security in this file"),
        "{}",
        r.stderr
    );

    let r = dry_run_of("securities:\n  etfs:\n    - symbol: \"SPY\"\n      name: \"SPDR\"\nencoding:\n  batch_size: five\n").await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr.contains("securities.yaml:6: encoding.batch_size"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_config_file_exits_2() {
    let r = run(
        &["--config", "/nonexistent/securities.yaml", "--dry-run"],
        &db_parts(),
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        r.stderr.contains("/nonexistent/securities.yaml"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_category_or_symbol_exits_2() {
    let r = run(
        &["--config", SHIPPED, "--dry-run", "--categories", "bogus"],
        &db_parts(),
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("bogus"), "{}", r.stderr);
    let r = run(
        &["--config", SHIPPED, "--dry-run", "--symbols", "NOPE"],
        &db_parts(),
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("NOPE"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_environment_variable_exits_2() {
    let mut env = db_parts();
    env.retain(|(k, _)| *k != "DB_PASSWORD");
    let r = run(&["--config", SHIPPED, "--dry-run"], &env).await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("DB_PASSWORD"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_exit_2() {
    let r = run(&["--config", SHIPPED, "--from", "2024-02-30"], &db_parts()).await;
    assert_eq!(r.code, 2, "{r:#?}");
    let r = run(
        &[
            "--config",
            SHIPPED,
            "--dry-run",
            "--from",
            "2024-03-01",
            "--to",
            "2024-01-01",
        ],
        &db_parts(),
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("--from"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_exits_3_without_the_password() {
    let url = format!("postgres://encoder:{SECRET}@127.0.0.1:1/markets");
    let r = run(
        &["--config", SHIPPED, "--categories", "indices"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("YAHOO_BASE_URL", "http://127.0.0.1:9"),
        ],
    )
    .await;
    assert_eq!(r.code, 3, "{r:#?}");
    assert!(
        r.stderr.contains(
            "cannot connect to PostgreSQL at postgres://encoder:[redacted]@127.0.0.1:1/markets"
        ),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(SECRET) && !r.stdout.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_applies_the_schema_once() {
    let db = TestDb::new().await;
    for _ in 0..2 {
        let r = run(&["migrate"], &[("DATABASE_URL", db.url.as_str())]).await;
        assert_eq!(r.code, 0, "{r:#?}");
        assert!(r.stdout.contains("migrations up to date"), "{}", r.stdout);
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for t in [
        "market_data",
        "runs",
        "securities",
        "market_features",
        "ml_market_features",
    ] {
        assert!(tables.iter().any(|x| x == t), "{tables:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_json_lines_off_a_terminal() {
    let url = format!("postgres://encoder:{SECRET}@127.0.0.1:1/markets");
    let r = run(
        &["--config", SHIPPED, "--categories", "indices"],
        &[("DATABASE_URL", url.as_str()), ("LOG_LEVEL", "debug")],
    )
    .await;
    // Every stderr line is a JSON log event, except the one-line error for the operator.
    let mut events = 0;
    for line in r
        .stderr
        .lines()
        .filter(|l| !l.starts_with("market-encoder: "))
    {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            event.get("level").is_some() && event.get("timestamp").is_some(),
            "{line}"
        );
        events += 1;
    }
    assert!(events >= 1, "{}", r.stderr);
    assert!(!r.stderr.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_shows_each_securitys_window_and_why() {
    // Without a database it cannot know, and says so.
    let unknown = run(
        &["--config", SHIPPED, "--dry-run", "--symbols", "SPY"],
        &db_parts(),
    )
    .await;
    assert_eq!(unknown.code, 0, "{unknown:#?}");
    assert!(
        unknown.stdout.contains("windows:    cannot know them"),
        "{}",
        unknown.stdout
    );
    assert!(
        unknown.stdout.contains("configured (stored range unknown)"),
        "{}",
        unknown.stdout
    );
    assert!(!unknown.stdout.contains(SECRET), "{}", unknown.stdout);

    // With one: SPY stored recently is a daily run, QQQ never stored is a first sight.
    let db = crate::common::TestDb::new().await;
    let yahoo = crate::common::fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::config(
        dir.path(),
        &[("etfs", "SPY", "SPY"), ("etfs", "QQQ", "QQQ")],
        "",
    );
    let today = chrono::Utc::now().date_naive();
    let from = (today - chrono::Days::new(10)).to_string();
    let stored =
        crate::common::run_job(&cfg, &db, &yahoo, &["--symbols", "SPY", "--from", &from]).await;
    assert_eq!(stored.code, 0, "{stored:#?}");
    let plan = run(
        &["--config", cfg.to_str().unwrap(), "--dry-run"],
        &[("DATABASE_URL", db.url.as_str())],
    )
    .await;
    assert_eq!(plan.code, 0, "{plan:#?}");
    let line = |symbol: &str| {
        plan.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(symbol))
            .unwrap_or_else(|| panic!("no line for {symbol}: {}", plan.stdout))
            .to_owned()
    };
    assert!(line("SPY").ends_with(", daily]"), "{}", plan.stdout);
    assert!(line("QQQ").ends_with(", first sight]"), "{}", plan.stdout);
}

/// Peak resident memory (KiB) and exit code of the binary run on `args`, measured by a
/// Python parent whose only child it is (`RUSAGE_CHILDREN`).
fn peak_rss_kib(args: &[&str], env: &[(&str, &str)]) -> (i64, i32) {
    let script = "import resource, subprocess, sys\n\
        code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n\
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)\n";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_market-encoder"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let rss = parts.next().and_then(|s| s.parse().ok()).expect("maxrss");
    let code = parts.next().and_then(|s| s.parse().ok()).expect("code");
    (rss, code)
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_yaml_exits_2_within_time_and_memory_bounds() {
    let mut bomb = String::from("a0: &a0 [x]\n");
    for level in 1..=9 {
        let refs = vec![format!("*a{}", level - 1); 9].join(", ");
        bomb.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    bomb.push_str("securities:\n  etfs:\n    - symbol: SPY\n      name: *a9\n");
    // Up to the 1 MB limit: a flat list of aliases, a deep nesting, a huge name; then past it.
    let aliases = format!("x: &x [1, 2, 3]\ny: [{}]\n", "*x, ".repeat(200_000));
    let deep = format!("{}{}", "[".repeat(500_000), "]".repeat(500_000));
    let name = format!(
        "securities:\n  etfs:\n    - symbol: SPY\n      name: \"{}\"\n",
        "n".repeat(1_000_000)
    );
    let too_big = format!("# {}\n", "#".repeat(2 * 1024 * 1024));
    let dir = tempfile::tempdir().unwrap();
    for (what, text, message) in [
        ("alias bomb", bomb, "invalid YAML"),
        ("aliases", aliases, "invalid YAML"),
        ("nesting", deep, "invalid YAML"),
        ("name", name, "more than the 256 a text value may have"),
        ("2 MB", too_big, "more than 1048576 bytes"),
    ] {
        let path = dir.path().join(format!("{}.yaml", what.replace(' ', "_")));
        std::fs::write(&path, &text).unwrap();
        let config = path.to_str().unwrap();
        let r = run(&["--config", config, "--dry-run"], &db_parts()).await;
        assert_eq!(r.code, 2, "{what}: {r:#?}");
        assert!(r.stderr.contains(message), "{what}: {}", r.stderr);
        assert_eq!(
            r.stderr.trim().lines().count(),
            1,
            "{what}: one line: {}",
            r.stderr
        );
        // The whole process (start-up included) stays well inside the bounds.
        assert!(
            r.elapsed < std::time::Duration::from_millis(1_000),
            "{what}: {:?}",
            r.elapsed
        );
        let (rss_kib, code) = peak_rss_kib(&["--config", config, "--dry-run"], &db_parts());
        assert_eq!(code, 2, "{what}");
        assert!(rss_kib < 50 * 1024, "{what}: peak RSS {rss_kib} KiB");
    }
}
