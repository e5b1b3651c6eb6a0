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
            "--scenario",
            "NVDA=split:2024-01-08:3:2",
            "--scenario",
            "NVDA=dividend:2024-01-10:0.25",
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

    // Both actions of NVDA, in a window that holds them.
    let chart: serde_json::Value = reqwest::get(format!("{base}/v8/finance/chart/NVDA?{q}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = &chart["chart"]["result"][0]["events"];
    assert_eq!(
        events["splits"]["1704724200"]["splitRatio"], "3:2",
        "{events}"
    );
    assert_eq!(
        events["dividends"]["1704897000"]["amount"], 0.25,
        "{events}"
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
    for bad in [
        "SPY=explode",
        "SPY=split:2024-01-08",
        "SPY=split:2024-13-08:2:1",
        "SPY=split:2024-01-08:0:1",
        "SPY=dividend:2024-01-08:x",
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_fake-yahoo"))
            .args(["--scenario", bad])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{bad}");
        assert!(output.stdout.is_empty(), "{bad}");
    }
}
