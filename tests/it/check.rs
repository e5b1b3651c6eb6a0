//! `market-encoder check` against real parts: everything up, then one part broken at a time
//! (database down, Yahoo throttling, Chroma down, the model missing, a bad config): one line
//! per check naming the part and the fix, and the exit code the job would have.

use crate::common::{TestDb, config, fake, run};
use fake_yahoo::Throttling;
use serde_json::Value;

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with scripts/test.sh (it starts Chroma and caches the model)")
    })
}

struct Setup {
    db: TestDb,
    yahoo: fake_yahoo::FakeYahoo,
    _dir: tempfile::TempDir,
    config: String,
    collection: String,
}

impl Setup {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = config(dir.path(), &[("etfs", "SPY", "SPY")], "");
        Self {
            db: TestDb::new().await,
            yahoo: fake().await,
            config: path.to_str().unwrap().to_owned(),
            _dir: dir,
            collection: format!("me_check_{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// `check` with the healthy environment, `overrides` replacing variables of it.
    async fn check(&self, extra: &[&str], overrides: &[(&str, &str)]) -> crate::common::Run {
        let chroma = required("CHROMA_URL");
        let model = required("EMBEDDING_MODEL_DIR");
        let yahoo = self.yahoo.base_url();
        let mut env: Vec<(&str, &str)> = vec![
            ("DATABASE_URL", self.db.url.as_str()),
            ("YAHOO_BASE_URL", yahoo.as_str()),
            ("CHROMA_URL", chroma.as_str()),
            ("CHROMA_COLLECTION", self.collection.as_str()),
            ("EMBEDDING_MODEL_DIR", model.as_str()),
        ];
        for (name, value) in overrides {
            env.retain(|(n, _)| n != name);
            env.push((name, value));
        }
        let mut args = vec!["--config", self.config.as_str(), "check"];
        args.extend_from_slice(extra);
        run(&args, &env).await
    }
}

/// The line of check `name` in the output.
fn line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} line in:\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_up_passes_and_json_says_so() {
    let s = Setup::new().await;
    let r = s.check(&[], &[]).await;
    assert_eq!(r.code, 0, "{r:#?}");
    for name in ["config", "database", "yahoo", "chroma", "model"] {
        assert!(line(&r.stdout, name).starts_with("ok "), "{}", r.stdout);
    }
    assert_eq!(r.stdout.lines().count(), 5, "{}", r.stdout);
    assert!(
        line(&r.stdout, "database").contains("pending"),
        "a fresh database: {}",
        r.stdout
    );
    assert!(
        line(&r.stdout, "yahoo").contains("HTTP 200")
            && line(&r.stdout, "yahoo").contains("not throttled")
    );
    assert!(
        line(&r.stdout, "chroma").contains("does not exist yet"),
        "{}",
        r.stdout
    );
    assert!(
        line(&r.stdout, "model").contains("384 dimensions"),
        "{}",
        r.stdout
    );
    // It wrote nothing: no migration (the second check still sees them pending).
    let again = s.check(&[], &[]).await;
    assert!(
        line(&again.stdout, "database").contains("pending"),
        "{}",
        again.stdout
    );
    assert!(
        line(&again.stdout, "chroma").contains("does not exist yet"),
        "{}",
        again.stdout
    );
    let m = run(&["migrate"], &[("DATABASE_URL", s.db.url.as_str())]).await;
    assert_eq!(m.code, 0, "{m:#?}");
    let r = s.check(&["--json"], &[]).await;
    assert_eq!(r.code, 0, "{r:#?}");
    let json: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["checks"].as_array().unwrap().len(), 5);
    assert!(
        json["checks"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("migrations up to date")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_broken_part_fails_its_line_with_the_fix_and_the_jobs_exit_code() {
    let s = Setup::new().await;
    // The database down (nothing listens on port 1).
    let r = s
        .check(
            &[],
            &[("DATABASE_URL", "postgres://me:secret-pw@127.0.0.1:1/x")],
        )
        .await;
    assert_eq!(r.code, 3, "{r:#?}");
    let db = line(&r.stdout, "database");
    assert!(db.starts_with("FAIL") && db.contains("127.0.0.1:1"), "{db}");
    assert!(!r.stdout.contains("secret-pw") && !r.stderr.contains("secret-pw"));
    assert!(
        line(&r.stdout, "yahoo").starts_with("ok "),
        "the others still run: {}",
        r.stdout
    );

    // Yahoo throttling.
    s.yahoo.throttle_after(0, Throttling::OutagePage);
    let r = s.check(&[], &[]).await;
    assert_eq!(r.code, 1, "{r:#?}");
    let y = line(&r.stdout, "yahoo");
    assert!(
        y.starts_with("FAIL") && y.contains("throttled") && y.contains("Will be right back"),
        "{y}"
    );
    s.yahoo.stop_throttling();

    // Chroma down.
    let r = s.check(&[], &[("CHROMA_URL", "http://127.0.0.1:1")]).await;
    assert_eq!(r.code, 5, "{r:#?}");
    let c = line(&r.stdout, "chroma");
    assert!(c.starts_with("FAIL") && c.contains("127.0.0.1:1"), "{c}");

    // The model missing.
    let empty = tempfile::tempdir().unwrap();
    let r = s
        .check(
            &[],
            &[("EMBEDDING_MODEL_DIR", empty.path().to_str().unwrap())],
        )
        .await;
    assert_eq!(r.code, 5, "{r:#?}");
    let m = line(&r.stdout, "model");
    assert!(
        m.starts_with("FAIL") && m.contains("EMBEDDING_MODEL_DIR"),
        "{m}"
    );

    // `--no-embeddings` leaves Chroma and the model out.
    let r = s
        .check(
            &["--no-embeddings"],
            &[("CHROMA_URL", "http://127.0.0.1:1")],
        )
        .await;
    assert_eq!(r.code, 0, "{r:#?}");

    // A bad config: exit 2, and the checks that need it say so.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("securities.yaml");
    std::fs::write(&bad, "securities:\n  etfs:\n    - symbol: [\n").unwrap();
    let r = run(
        &[
            "--config",
            bad.to_str().unwrap(),
            "check",
            "--no-embeddings",
        ],
        &[("DATABASE_URL", s.db.url.as_str())],
    )
    .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(
        line(&r.stdout, "config").starts_with("FAIL"),
        "{}",
        r.stdout
    );
    assert!(
        line(&r.stdout, "database").starts_with("ok "),
        "{}",
        r.stdout
    );
}
