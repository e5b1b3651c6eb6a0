//! `market-encoder pnl` end to end: prices stored by the real job (fake Yahoo -> PostgreSQL),
//! then the P&L read back by the binary, checked against the stored closes.

use crate::common::{Run, TestDb, config, fake, run, run_job};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;

async fn close(db: &TestDb, symbol: &str, date: &str) -> Option<Decimal> {
    sqlx::query_scalar("SELECT close_price FROM market_data WHERE symbol = $1 AND trade_date = $2")
        .bind(symbol)
        .bind(date.parse::<NaiveDate>().unwrap())
        .fetch_optional(&db.pool)
        .await
        .unwrap()
}

async fn pnl(db: &TestDb, cfg: &std::path::Path, flags: &[&str]) -> Run {
    let mut args = vec!["pnl", "--config", cfg.to_str().unwrap()];
    args.extend_from_slice(flags);
    run(&args, &[("DATABASE_URL", db.url.as_str())]).await
}

fn json(r: &Run) -> Value {
    assert_eq!(r.code, 0, "{r:#?}");
    serde_json::from_str(r.stdout.trim()).unwrap()
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pnl_from_stored_closes_rolls_non_trading_days_and_names_what_is_wrong() {
    let db = TestDb::new().await;
    let yahoo = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[("indices", "^GSPC", "SPX"), ("crypto", "BTC-USD", "BTC")],
        "",
    );
    let r = run_job(
        &cfg,
        &db,
        &yahoo,
        &["--from", "2024-01-02", "--to", "2024-03-28"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:#?}");

    // Trading days on both ends: the stored closes, exactly.
    let entry = close(&db, "SPX", "2024-01-02").await.unwrap();
    let exit = close(&db, "SPX", "2024-01-31").await.unwrap();
    let long = json(
        &pnl(
            &db,
            &cfg,
            &[
                "--symbol",
                "^GSPC",
                "--entry",
                "2024-01-02",
                "--exit",
                "2024-01-31",
                "--quantity",
                "100",
                "--position",
                "long",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(long["symbol"], "SPX");
    assert_eq!(long["position"], "long");
    assert_eq!(dec(&long["entry"]["price"]), entry);
    assert_eq!(dec(&long["exit"]["price"]), exit);
    assert_eq!(long["entry"]["rolled"], Value::Null);
    assert_eq!(
        dec(&long["pnl_amount"]),
        (exit - entry) * Decimal::from(100)
    );
    let pct = dec(&long["pnl_percentage"]);
    let expected_pct = (exit - entry) / entry * Decimal::from(100);
    assert!(
        (pct - expected_pct).abs() < Decimal::new(1, 4),
        "{pct} vs {expected_pct}"
    );
    assert_eq!(long["holding_days"], 29);
    let bars: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM market_data WHERE symbol = 'SPX' AND trade_date BETWEEN '2024-01-02' AND '2024-01-31'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(long["trading_days"], bars - 1);
    let short = json(
        &pnl(
            &db,
            &cfg,
            &[
                "--symbol",
                "SPX",
                "--entry",
                "2024-01-02",
                "--exit",
                "2024-01-31",
                "--quantity",
                "100",
                "--position",
                "short",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(dec(&short["pnl_amount"]), -dec(&long["pnl_amount"]));

    // A weekend entry rolls forward to Monday, a weekend exit back to Friday; the text says so.
    let text = pnl(
        &db,
        &cfg,
        &[
            "--symbol",
            "SPX",
            "--entry",
            "2024-01-06",
            "--exit",
            "2024-02-04",
            "--quantity",
            "2.5",
        ],
    )
    .await;
    assert_eq!(text.code, 0, "{text:#?}");
    assert!(
        text.stdout
            .contains("no stored bar on 2024-01-06: the next trading day 2024-01-08"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("no stored bar on 2024-02-04: the previous trading day 2024-02-02"),
        "{}",
        text.stdout
    );
    let monday = close(&db, "SPX", "2024-01-08").await.unwrap();
    let friday = close(&db, "SPX", "2024-02-02").await.unwrap();
    let amount = ((friday - monday) * Decimal::new(25, 1)).normalize();
    assert!(
        text.stdout.contains(&format!(
            "P&L   {}{amount}",
            if amount > Decimal::ZERO { "+" } else { "" }
        )),
        "{amount} in\n{}",
        text.stdout
    );

    // Crypto trades on weekends: no roll, fractional quantity kept exact.
    let btc = json(
        &pnl(
            &db,
            &cfg,
            &[
                "--symbol",
                "BTC-USD",
                "--entry",
                "2024-01-06",
                "--exit",
                "2024-01-07",
                "--quantity",
                "0.015",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(btc["entry"]["rolled"], Value::Null);
    let (sat, sun) = (
        close(&db, "BTC", "2024-01-06").await.unwrap(),
        close(&db, "BTC", "2024-01-07").await.unwrap(),
    );
    assert_eq!(
        dec(&btc["pnl_amount"]),
        ((sun - sat) * Decimal::new(15, 3)).normalize()
    );

    // What cannot be answered: one line, exit 2 (usage), nothing else printed.
    for (flags, message) in [
        (
            &[
                "--symbol",
                "SPX",
                "--entry",
                "2024-02-01",
                "--exit",
                "2024-01-01",
                "--quantity",
                "1",
            ][..],
            "exit 2024-01-01 is before entry 2024-02-01",
        ),
        (
            &[
                "--symbol",
                "NOPE",
                "--entry",
                "2024-01-02",
                "--exit",
                "2024-01-31",
                "--quantity",
                "1",
            ],
            "no stored prices for NOPE; check the symbol or run the job for it first (stored symbols: BTC, SPX)",
        ),
        (
            &[
                "--symbol",
                "SPX",
                "--entry",
                "2024-01-06",
                "--exit",
                "2024-01-07",
                "--quantity",
                "1",
            ],
            "no stored trading day of SPX between 2024-01-06 and 2024-01-07 (stored: 2024-01-02 to 2024-03-28)",
        ),
        (
            &[
                "--symbol",
                "SPX",
                "--entry",
                "2025-01-02",
                "--exit",
                "2025-01-31",
                "--quantity",
                "1",
            ],
            "no stored trading day of SPX between 2025-01-02 and 2025-01-31",
        ),
    ] {
        let r = pnl(&db, &cfg, flags).await;
        assert_eq!(r.code, 2, "{flags:?}: {r:#?}");
        assert!(r.stderr.contains(message), "{flags:?}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
    let zero = pnl(
        &db,
        &cfg,
        &[
            "--symbol",
            "SPX",
            "--entry",
            "2024-01-02",
            "--exit",
            "2024-01-31",
            "--quantity",
            "0",
        ],
    )
    .await;
    assert_eq!(zero.code, 2, "{zero:#?}");
    assert!(
        zero.stderr
            .contains("quantity \"0\" is not a positive number"),
        "{}",
        zero.stderr
    );
}
