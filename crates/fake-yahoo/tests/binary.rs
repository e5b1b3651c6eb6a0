//! The `fake-yahoo` binary: announces its port, applies --scenario, stops on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[cfg(unix)]
#[tokio::test]
async fn binary_serves_until_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-yahoo"))
        .args(["--bind", "127.0.0.1:0", "--seed", "42", "--latency-ms", "0"])
        .args([
            "--scenario",
            "EURUSD=X=delisted",
            "--scenario",
            "^VIX=rate-limited",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect(&line)
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");

    let status = |path: String| async move { reqwest::get(path).await.unwrap().status().as_u16() };
    let q = "period1=1704067200&period2=1706745600&interval=1d";
    assert_eq!(
        status(format!("{base}/v8/finance/chart/EURUSD%3DX?{q}")).await,
        404
    );
    assert_eq!(
        status(format!("{base}/v8/finance/chart/%5EVIX?{q}")).await,
        429
    );
    assert_eq!(
        status(format!("{base}/v8/finance/chart/SPY?{q}")).await,
        200
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "{exit:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn binary_rejects_unknown_scenarios() {
    let output = Command::new(env!("CARGO_BIN_EXE_fake-yahoo"))
        .args(["--scenario", "SPY=explode"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
}
