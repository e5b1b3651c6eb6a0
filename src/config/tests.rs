//! The config loader's tests: every error message, every section, and property tests.
//! Compiled only under #[cfg(test)] (`mod tests` in `config/mod.rs`): test code, where a panic is
//! the failure report.

use super::*;
use crate::config::embedding::EMBEDDING_BATCH_SIZE;
use crate::config::encoding::BATCH_SIZE;
use crate::config::encoding::DAYS_BACK;
use crate::config::encoding::EMBEDDING_DAYS;
use crate::config::encoding::MAX_RETRIES;
use crate::config::encoding::REQUEST_TIMEOUT_SECS;
use crate::config::encoding::REQUESTS_PER_SECOND;
use crate::config::encoding::RETRY_BASE_MS;
use crate::config::encoding::RETRY_MAX_MS;
use crate::config::yaml::MAX_TEXT_CHARS;
use crate::domain::DEFAULT_CORRELATIONS;
use crate::domain::DbSymbol;
use crate::domain::Role;
use crate::domain::YahooSymbol;
use std::collections::HashMap;
use std::time::Duration;
use url::Url;

const P: &str = "config/securities.yaml";

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(yaml, Path::new(P))
}

fn err(yaml: &str) -> String {
    let e = parse(yaml).unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "message spans lines: {msg}");
    assert!(
        msg.starts_with(P),
        "message does not start with the path: {msg}"
    );
    msg
}

const MINIMAL: &str = "securities:\n  stocks:\n    - symbol: AAPL\n      name: Apple Inc.\n";

// ---- the shipped file ------------------------------------------------------------------

fn shipped() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
    Config::load(&path).unwrap()
}

#[test]
fn shipped_config_parses_with_expected_securities() {
    let cfg = shipped();
    let cats: Vec<&str> = cfg.categories().iter().map(|c| c.as_str()).collect();
    assert_eq!(
        cats,
        [
            "indices",
            "etfs",
            "stocks",
            "crypto",
            "bonds",
            "commodities",
            "currencies",
            "volatility"
        ]
    );
    let expected: &[(&str, &str, &str, &str, bool)] = &[
        ("indices", "^GSPC", "^GSPC", "SPX", true),
        ("indices", "^IXIC", "^IXIC", "IXIC", true),
        ("indices", "^DJI", "^DJI", "DJI", true),
        ("indices", "^RUT", "^RUT", "RUT", true),
        ("etfs", "SPY", "SPY", "SPY", true),
        ("etfs", "QQQ", "QQQ", "QQQ", true),
        ("etfs", "IWM", "IWM", "IWM", true),
        ("etfs", "ARKK", "ARKK", "ARKK", true),
        ("etfs", "ARKQ", "ARKQ", "ARKQ", true),
        ("etfs", "ARKG", "ARKG", "ARKG", true),
        ("stocks", "AAPL", "AAPL", "AAPL", true),
        ("stocks", "MSFT", "MSFT", "MSFT", true),
        ("stocks", "NVDA", "NVDA", "NVDA", true),
        ("stocks", "AMZN", "AMZN", "AMZN", true),
        ("stocks", "GOOGL", "GOOGL", "GOOGL", true),
        ("crypto", "BTC-USD", "BTC-USD", "BTCUSD", true),
        ("crypto", "ETH-USD", "ETH-USD", "ETHUSD", true),
        ("bonds", "TLT", "TLT", "TLT", true),
        ("bonds", "LQD", "LQD", "LQD", true),
        ("bonds", "HYG", "HYG", "HYG", true),
        ("bonds", "^TNX", "^TNX", "TNX", true),
        ("commodities", "GLD", "GLD", "GLD", true),
        ("commodities", "SLV", "SLV", "SLV", true),
        ("commodities", "USO", "USO", "USO", true),
        ("commodities", "GC=F", "GC=F", "GC", false),
        ("currencies", "EURUSD=X", "EURUSD=X", "EURUSD", true),
        ("currencies", "GBPUSD=X", "GBPUSD=X", "GBPUSD", true),
        ("currencies", "JPY=X", "JPY=X", "USDJPY", true),
        ("currencies", "DX-Y.NYB", "DX-Y.NYB", "DXY", true),
        ("volatility", "^VIX", "^VIX", "VIX", true),
    ];
    let actual: Vec<(&str, &str, &str, &str, bool)> = cfg
        .securities
        .iter()
        .map(|s| {
            (
                s.category.as_str(),
                s.symbol.as_str(),
                s.yahoo_symbol.as_str(),
                s.db_symbol.as_str(),
                s.enabled,
            )
        })
        .collect();
    assert_eq!(actual, expected);

    let names: HashMap<&str, &str> = cfg
        .securities
        .iter()
        .map(|s| (s.symbol.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(names["^GSPC"], "S&P 500 Index");
    assert_eq!(names["^TNX"], "CBOE 10-Year Treasury Yield");
    assert_eq!(names["DX-Y.NYB"], "US Dollar Index");
    assert_eq!(names["JPY=X"], "USD/JPY");

    assert_eq!(cfg.encoding, EncodingSettings::default());
    assert_eq!(cfg.embedding, EmbeddingSettings::Local);
    assert_eq!(cfg.encoding.days_back, 60);
    assert_eq!(cfg.encoding.embedding_days, 30);
    assert_eq!(cfg.encoding.batch_size.get(), 5);
    assert_eq!(cfg.encoding.max_retries, 3);
    assert_eq!(cfg.encoding.request_timeout, Duration::from_secs(30));
    assert_eq!(cfg.encoding.requests_per_second.get(), 1);
    assert_eq!(cfg.encoding.throttle_pause, Duration::from_secs(300));
    assert_eq!(
        (
            cfg.encoding.throttle_after,
            cfg.encoding.throttle_max_pauses,
            cfg.encoding.max_requests
        ),
        (3, 2, None)
    );
    assert_eq!(cfg.encoding.request_budget(40), 40 * 8 + 2);
    assert_eq!(cfg.encoding.retry_base, Duration::from_millis(500));
    assert_eq!(cfg.encoding.retry_max, Duration::from_secs(30));
}

#[test]
fn shipped_config_lines_point_at_the_entries() {
    let cfg = shipped();
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for s in &cfg.securities {
        let line = lines[s.line - 1];
        assert!(
            line.contains(&format!("symbol: \"{}\"", s.symbol)),
            "line {} is {line:?}, expected the entry of {}",
            s.line,
            s.symbol
        );
    }
}

#[test]
fn shipped_config_selects_all_but_the_disabled_future() {
    let cfg = shipped();
    let all = cfg.select(&[], &[]).unwrap();
    assert_eq!(all.len(), cfg.securities.len() - 1);
    assert!(all.iter().all(|s| s.symbol != "GC=F"));
}

#[test]
fn shipped_config_writes_out_the_feature_defaults() {
    let cfg = shipped();
    let defaults = FeatureSettings::default();
    let f = &cfg.features;
    assert!(f.enabled);
    assert_eq!(f.roles, defaults.roles);
    assert_eq!(f.correlations, defaults.correlations);
    assert_eq!(
        (f.correlation_days, f.momentum_days, f.spread_days),
        (30, 20, 20)
    );
    // Every default role names a configured, enabled security of the shipped file.
    for role in Role::ALL {
        let symbol = f.symbol(role).unwrap();
        assert!(
            cfg.securities
                .iter()
                .any(|s| s.enabled && &s.db_symbol == symbol),
            "{role:?} -> {symbol}"
        );
    }
}

// ---- the features section ----------------------------------------------------------------

/// Securities with these db_symbols (one category), then `features`.
fn with_features(symbols: &[&str], features: &str) -> String {
    let mut yaml = String::from("securities:\n  etfs:\n");
    for s in symbols {
        yaml.push_str(&format!("    - {{symbol: {s}, name: {s}}}\n"));
    }
    yaml.push_str("features:\n");
    yaml.push_str(features);
    yaml
}

#[test]
fn feature_defaults_cover_every_role_and_need_no_securities() {
    let d = FeatureSettings::default();
    assert_eq!(d.roles.len(), Role::ALL.len());
    for role in Role::ALL {
        assert_eq!(d.symbol(role).unwrap().as_str(), role.default_symbol());
    }
    assert_eq!(d.correlations.len(), DEFAULT_CORRELATIONS.len());
    // Absent or empty, the defaults apply, though AAPL plays no role.
    assert_eq!(parse(MINIMAL).unwrap().features, d);
    assert_eq!(parse(&format!("{MINIMAL}features:\n")).unwrap().features, d);
}

#[test]
fn feature_roles_override_one_by_one_and_correlations_replace_the_list() {
    let cfg = parse(&with_features(
        &["SPY", "QQQ", "IBIT"],
        "  enabled: false\n  roles:\n    btc: IBIT\n    qqq: QQQ\n  correlation_days: 60\n  momentum_days: 5\n  spread_days: 1\n  correlations:\n    sp500: SPY\n    tech_2: QQQ\n",
    ))
    .unwrap();
    let f = cfg.features;
    assert!(!f.enabled);
    assert_eq!(f.symbol(Role::Btc).unwrap().as_str(), "IBIT");
    assert_eq!(f.symbol(Role::Qqq).unwrap().as_str(), "QQQ");
    assert_eq!(f.symbol(Role::Vix).unwrap().as_str(), "VIX"); // default kept
    assert_eq!(
        (f.correlation_days, f.momentum_days, f.spread_days),
        (60, 5, 1)
    );
    let names: Vec<(&str, &str)> = f
        .correlations
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    assert_eq!(names, [("sp500", "SPY"), ("tech_2", "QQQ")]);
    let none = parse(&with_features(&["SPY"], "  correlations: {}\n")).unwrap();
    assert!(none.features.correlations.is_empty());
}

#[test]
fn a_feature_symbol_must_be_a_configured_db_symbol() {
    assert_eq!(
        err(&with_features(
            &["SPY", "QQQ"],
            "  roles:\n    qqq: QQQ\n    vix: VIXX\n"
        )),
        "config/securities.yaml:8: features.roles.vix: \"VIXX\" is not the db_symbol of any security in this file; features name securities by db_symbol"
    );
    // A Yahoo symbol or a case slip gets a hint with the line of the security.
    let yaml = "securities:\n  volatility:\n    - symbol: \"^VIX\"\n      name: VIX\n      db_symbol: VIX\nfeatures:\n  roles:\n    vix: \"^VIX\"\n";
    assert_eq!(
        err(yaml),
        "config/securities.yaml:8: features.roles.vix: \"^VIX\" is not the db_symbol of any security in this file; did you mean \"VIX\", the db_symbol of the security on line 3?; features name securities by db_symbol"
    );
    assert_eq!(
        err(&with_features(
            &["SPY"],
            "  correlations:\n    nasdaq: qqq\n"
        )),
        "config/securities.yaml:6: features.correlations.nasdaq: \"qqq\" is not the db_symbol of any security in this file; features name securities by db_symbol"
    );
    // A disabled security may play a role (its stored closes still count).
    assert!(parse("securities:\n  etfs:\n    - {symbol: QQQ, name: Q, enabled: false}\n    - {symbol: SPY, name: S}\nfeatures:\n  roles:\n    qqq: QQQ\n").is_ok());
}

#[test]
fn feature_section_errors_name_line_and_field() {
    assert_eq!(
        err(&with_features(&["SPY"], "  roles:\n    nasdaq: SPY\n")),
        "config/securities.yaml:6: features.roles.nasdaq: unknown key; allowed keys here: qqq, hyg, vix, tlt, arkk, spy, iwm, lqd, gld, dxy, btc"
    );
    assert_eq!(
        err(&with_features(&["SPY"], "  windows: 3\n")),
        "config/securities.yaml:5: features.windows: unknown key; allowed keys here: enabled, roles, correlation_days, momentum_days, spread_days, correlations"
    );
    assert_eq!(
        err(&with_features(&["SPY"], "  correlation_days: 2\n")),
        "config/securities.yaml:5: features.correlation_days: 2 is out of range; allowed: 5..=252"
    );
    assert_eq!(
        err(&with_features(&["SPY"], "  enabled: yes\n")),
        "config/securities.yaml:5: features.enabled: expected true or false, found \"yes\""
    );
    assert_eq!(
        err(&with_features(&["SPY"], "  correlations:\n    S&P: SPY\n")),
        "config/securities.yaml:6: features.correlations[\"S&P\"]: \"S&P\" is not a correlation name: use 1..=32 characters of a-z 0-9 _ starting with a letter (the feature is ml_{name}_correlation)"
    );
    assert_eq!(
        err(&with_features(
            &["SPY"],
            "  correlations:\n    a: SPY\n    a: SPY\n"
        )),
        "config/securities.yaml:7: features.correlations.a: key appears twice (first on line 6); keep one"
    );
    assert_eq!(
        err(&with_features(&["SPY"], "  correlations: [SPY]\n")),
        "config/securities.yaml:5: features.correlations: expected a mapping of name to db_symbol, e.g. `nasdaq: QQQ`, found a list"
    );
    assert_eq!(
        err(&with_features(&["SPY"], "  roles:\n    spy: \"S P Y\"\n")),
        "config/securities.yaml:6: features.roles.spy: symbol \"S P Y\" has a character outside A-Z a-z 0-9 ^ = . - _ (found ' ' at position 2)"
    );
}

// ---- successful parsing ----------------------------------------------------------------

#[test]
fn defaults_apply_and_encoding_may_be_omitted() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.path, Path::new(P));
    assert_eq!(cfg.encoding, EncodingSettings::default());
    let s = &cfg.securities[0];
    assert_eq!(s.category.as_str(), "stocks");
    assert_eq!(s.symbol, "AAPL");
    assert_eq!(s.name, "Apple Inc.");
    assert_eq!(s.yahoo_symbol.as_str(), "AAPL");
    assert_eq!(s.db_symbol.as_str(), "AAPL");
    assert!(s.enabled);
    assert_eq!(s.line, 3);

    let empty_section = parse(&format!("{MINIMAL}encoding:\n")).unwrap();
    assert_eq!(empty_section.encoding, EncodingSettings::default());
}

#[test]
fn encoding_values_are_read() {
    let cfg = parse(&format!(
        "{MINIMAL}encoding:\n  days_back: 365\n  embedding_days: 10\n  batch_size: 64\n  max_retries: 0\n  \
         request_timeout_secs: 600\n  requests_per_second: 1000\n  retry_base_ms: \"100\"\n  retry_max_ms: 100\n"
    ))
    .unwrap();
    let e = cfg.encoding;
    assert_eq!(
        (
            e.days_back,
            e.embedding_days,
            e.batch_size.get(),
            e.max_retries
        ),
        (365, 10, 64, 0)
    );
    assert_eq!(e.request_timeout, Duration::from_secs(600));
    assert_eq!(e.requests_per_second.get(), 1000);
    assert_eq!(
        (e.retry_base, e.retry_max),
        (Duration::from_millis(100), Duration::from_millis(100))
    );
}

#[test]
fn categories_keep_file_order_and_any_name() {
    let cfg = parse(
        "securities:\n  zeta: [{symbol: Z, name: z}]\n  alpha_2: [{symbol: A, name: a}]\n  zeta_b: [{symbol: B, name: b}]\n",
    )
    .unwrap();
    let cats: Vec<&str> = cfg.categories().iter().map(|c| c.as_str()).collect();
    assert_eq!(cats, ["zeta", "alpha_2", "zeta_b"]);
}

#[test]
fn symbols_and_names_must_be_yaml_strings() {
    let cfg = parse(
        "securities:\n  hk:\n    - symbol: \"0700\"\n      name: \"1.50\"\n      db_symbol: \"1e3\"\n",
    )
    .unwrap();
    let s = &cfg.securities[0];
    assert_eq!(
        (s.symbol.as_str(), s.name.as_str(), s.db_symbol.as_str()),
        ("0700", "1.50", "1e3")
    );
    for (yaml, field, written) in [
        ("    - symbol: 0700\n      name: x\n", "symbol", "0700"),
        ("    - symbol: \"123\"\n      name: 1.50\n", "name", "1.50"),
        (
            "    - symbol: A\n      name: x\n      db_symbol: 1e3\n",
            "db_symbol",
            "1e3",
        ),
        (
            "    - symbol: A\n      name: x\n      yahoo_symbol: true\n",
            "yahoo_symbol",
            "true",
        ),
        ("    - symbol: .inf\n      name: x\n", "symbol", ".inf"),
    ] {
        let e = err(&format!("securities:\n  hk:\n{yaml}"));
        assert!(
            e.contains(&format!("securities.hk[0].{field}: expected a"))
                && e.contains(&format!("as a YAML string (quote it: \"{written}\")")),
            "{e}"
        );
    }
}

#[test]
fn text_values_have_a_maximum_length() {
    let long = "x".repeat(MAX_TEXT_CHARS + 1);
    let e = err(&format!(
        "securities:\n  etfs:\n    - symbol: SPY\n      name: \"{long}\"\n"
    ));
    assert!(
        e.contains(
            "securities.etfs[0].name: 257 characters, more than the 256 a text value may have"
        ),
        "{e}"
    );
    let ok = "y".repeat(MAX_TEXT_CHARS);
    assert!(
        parse(&format!(
            "securities:\n  etfs:\n    - symbol: SPY\n      name: \"{ok}\"\n"
        ))
        .is_ok()
    );
}

#[test]
fn hostile_yaml_is_refused_by_a_budget_before_a_large_tree_exists() {
    // The billion laughs: 9 levels of 9 aliases, a few hundred bytes, 9^9 nodes expanded.
    let mut bomb = String::from("a0: &a0 [x]\n");
    for level in 1..=9 {
        let refs = vec![format!("*a{}", level - 1); 9].join(", ");
        bomb.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    bomb.push_str("securities:\n  etfs:\n    - symbol: SPY\n      name: *a9\n");
    // A wide bomb and a deep one too.
    let wide = format!(
        "x: &x [{}]\ny: [{}]\n",
        "1, ".repeat(2_000),
        "*x, ".repeat(5_000)
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // Refused by a budget before any large tree exists (the time and memory of the binary on
    // such files are checked in tests/it/cli.rs and measured in the README).
    for text in [bomb, wide, deep] {
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("invalid YAML")
                && (e.contains("total_replayed_events") || e.contains("recursion limit")),
            "{e}"
        );
    }
}

#[test]
fn crlf_and_bom_files_parse_with_correct_lines() {
    let text = "\u{feff}# c\r\nsecurities:\r\n  etfs:\r\n    - symbol: SPY\r\n      name: SPDR\r\n\r\n    - symbol: QQQ\r\n      name: Invesco\r\n";
    let cfg = parse(text).unwrap();
    let got: Vec<(&str, &str, usize)> = cfg
        .securities
        .iter()
        .map(|s| (s.symbol.as_str(), s.name.as_str(), s.line))
        .collect();
    assert_eq!(got, [("SPY", "SPDR", 4), ("QQQ", "Invesco", 7)]);
    assert_eq!(
        err("securities:\r\n  etfs:\r\n    - symbol: SPY\r\n      nam: x\r\n"),
        "config/securities.yaml:4: securities.etfs[0].nam: unknown key; allowed keys here: symbol, name, yahoo_symbol, db_symbol, source, enabled, sector"
    );
}

#[test]
fn aliases_are_resolved() {
    let cfg = parse(
        "securities:\n  a:\n    - {symbol: SPY, name: &n Broad market ETF}\n  b:\n    - symbol: QQQ\n      name: *n\n",
    )
    .unwrap();
    assert_eq!(cfg.securities[1].name, "Broad market ETF");
    assert_eq!(cfg.securities[1].line, 5);
    // a scalar alias in a symbol field keeps the anchored text, not the alias token
    let cfg = parse("securities:\n  a:\n    - {symbol: &s \"1.50\", name: x, db_symbol: A}\n    - {symbol: B, yahoo_symbol: *s, name: y}\n")
        .unwrap_err();
    assert!(
        cfg.to_string()
            .contains(r#""1.50" is already used by securities.a[0] (line 3)"#),
        "{cfg}"
    );
}

// ---- error messages --------------------------------------------------------------------

#[test]
fn missing_file_names_the_path_and_how_to_point_elsewhere() {
    let e = Config::load(Path::new("/nonexistent/dir/securities.yaml")).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("/nonexistent/dir/securities.yaml: cannot read the config file: "),
        "{msg}"
    );
    assert!(
        msg.contains("--config PATH") && msg.contains("MARKET_ENCODER_CONFIG"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    assert!(e.line().is_none());
}

#[test]
fn non_utf8_file_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, b"securities:\n  x: \xff\n").unwrap();
    let msg = Config::load(&path).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "{}:2: the file is not valid UTF-8; save it as UTF-8",
            path.display()
        )
    );
}

#[test]
fn load_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, MINIMAL).unwrap();
    let cfg = Config::load(&path).unwrap();
    assert_eq!(cfg.path, path);
    assert_eq!(cfg.securities.len(), 1);
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let msg = err("securities:\n  etfs: [\n    {symbol: SPY, name: x}\n");
    assert!(msg.starts_with("config/securities.yaml:"), "{msg}");
    assert!(msg.contains(": invalid YAML: "), "{msg}");
    let e = parse("securities:\n  etfs:\n    - symbol: SPY\n   name: x\n").unwrap_err();
    assert_eq!(e.line(), Some(4), "{e}");
    assert!(
        e.to_string().starts_with("config/securities.yaml:4:"),
        "{e}"
    );
    let msg = err("a: 'unterminated\n");
    assert!(msg.contains("invalid YAML"), "{msg}");
}

#[test]
fn unknown_keys_name_line_field_and_allowed_keys() {
    assert_eq!(
        err(&format!("{MINIMAL}encodign:\n  days_back: 5\n")),
        "config/securities.yaml:5: encodign: unknown key; allowed keys here: securities, source, encoding, embedding, features"
    );
    assert_eq!(
        err(
            "securities:\n  etfs:\n    - symbol: SPY\n      name: x\n    - symbol: QQQ\n      name: y\n      dbsymbol: Q\n"
        ),
        "config/securities.yaml:7: securities.etfs[1].dbsymbol: unknown key; allowed keys here: symbol, name, yahoo_symbol, db_symbol, source, enabled, sector"
    );
    assert_eq!(
        err(&format!(
            "{MINIMAL}encoding:\n  days_back: 5\n  batchsize: 3\n"
        )),
        "config/securities.yaml:7: encoding.batchsize: unknown key; allowed keys here: days_back, embedding_days, batch_size, max_retries, request_timeout_secs, requests_per_second, retry_base_ms, retry_max_ms, history_days, max_catch_up_days, throttle_after, throttle_pause_secs, throttle_max_pauses, max_requests"
    );
}

#[test]
fn history_days_is_a_number_of_days_or_max() {
    let c = parse(&format!(
        "{MINIMAL}encoding:\n  history_days: max\n  max_catch_up_days: 30\n"
    ))
    .unwrap();
    assert_eq!(c.encoding.history_days, crate::domain::HistoryDays::Max);
    assert_eq!(c.encoding.max_catch_up_days, 30);
    let c = parse(&format!("{MINIMAL}encoding:\n  history_days: 730\n")).unwrap();
    assert_eq!(
        c.encoding.history_days,
        crate::domain::HistoryDays::Days(730)
    );
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.encoding.history_days,
        crate::domain::HistoryDays::Days(400)
    );
    let e = err(&format!("{MINIMAL}encoding:\n  history_days: forever\n"));
    assert!(e.contains("encoding.history_days"), "{e}");
    let e = err(&format!("{MINIMAL}encoding:\n  max_catch_up_days: 0\n"));
    assert!(e.contains("encoding.max_catch_up_days"), "{e}");
}

#[test]
fn repeated_keys_name_both_lines() {
    assert_eq!(
        err("securities:\n  etfs:\n    - symbol: SPY\n      name: x\n      name: y\n"),
        "config/securities.yaml:5: securities.etfs[0].name: key appears twice (first on line 4); keep one"
    );
    assert_eq!(
        err(
            "securities:\n  etfs:\n    - {symbol: SPY, name: x}\n  etfs:\n    - {symbol: QQQ, name: y}\n"
        ),
        "config/securities.yaml:4: securities.etfs: key appears twice (first on line 2); keep one"
    );
}

#[test]
fn missing_required_fields_name_the_entry_line() {
    assert_eq!(
        err(
            "securities:\n  etfs:\n    - symbol: SPY\n      name: x\n\n    - symbol: QQQ\n      enabled: true\n"
        ),
        "config/securities.yaml:6: securities.etfs[1].name: required key is missing"
    );
    assert_eq!(
        err("securities:\n  stocks:\n    - name: Apple\n"),
        "config/securities.yaml:3: securities.stocks[0].symbol: required key is missing"
    );
    assert_eq!(
        err("encoding:\n  days_back: 5\n"),
        "config/securities.yaml:1: securities: required key is missing"
    );
}

#[test]
fn duplicate_db_symbol_names_both_places() {
    let yaml = "# shipped config\n\
                securities:\n  \
                  indices:\n    \
                    - symbol: \"^GSPC\"\n      \
                      db_symbol: \"SPX\"\n      \
                      name: \"S&P 500\"\n  \
                  etfs:\n    \
                    - {symbol: SPY, name: a}\n    \
                    - {symbol: QQQ, name: b}\n    \
                    - {symbol: IWM, name: c}\n    \
                    - symbol: FOO\n      \
                      name: d\n      \
                      yahoo_symbol: FOO\n      \
                      db_symbol: SPX\n";
    assert_eq!(
        err(yaml),
        r#"config/securities.yaml:14: securities.etfs[3].db_symbol: "SPX" is already used by securities.indices[0] (line 5); db_symbol must be unique"#
    );
}

#[test]
fn duplicate_db_symbol_from_default_points_at_symbol() {
    assert_eq!(
        err(
            "securities:\n  a:\n    - {symbol: X, name: x, yahoo_symbol: X1, db_symbol: SPY}\n  b:\n    - symbol: SPY\n      name: y\n"
        ),
        r#"config/securities.yaml:5: securities.b[0].symbol: "SPY" is already used by securities.a[0] (line 3); db_symbol must be unique (db_symbol defaults to symbol; set a different db_symbol)"#
    );
}

#[test]
fn duplicate_yahoo_symbol_names_both_places() {
    assert_eq!(
        err(
            "securities:\n  etfs:\n    - symbol: SPY\n      name: a\n  more:\n    - symbol: SPY2\n      name: b\n      yahoo_symbol: SPY\n"
        ),
        r#"config/securities.yaml:8: securities.more[0].yahoo_symbol: "SPY" is already used by securities.etfs[0] (line 3); yahoo_symbol must be unique"#
    );
}

#[test]
fn empty_and_invalid_symbols_name_the_field() {
    assert_eq!(
        err(
            "securities:\n  stocks:\n    - {symbol: AAPL, name: a}\n    - symbol: \"\"\n      name: b\n"
        ),
        "config/securities.yaml:4: securities.stocks[1].symbol: symbol is empty"
    );
    assert_eq!(
        err(
            "securities:\n  stocks:\n    - {symbol: AAPL, name: a}\n    - symbol: SPY\n      name: b\n      yahoo_symbol: S P Y\n"
        ),
        r#"config/securities.yaml:6: securities.stocks[1].yahoo_symbol: symbol "S P Y" has a character outside A-Z a-z 0-9 ^ = . - _ (found ' ' at position 2)"#
    );
    assert_eq!(
        err("securities:\n  stocks:\n    - symbol: S&P\n      name: b\n"),
        r#"config/securities.yaml:3: securities.stocks[0].symbol: symbol "S&P" has a character outside A-Z a-z 0-9 ^ = . - _ (found '&' at position 2); yahoo_symbol defaults to symbol, so set yahoo_symbol explicitly"#
    );
    assert_eq!(
        err("securities:\n  stocks:\n    - symbol: S&P\n      yahoo_symbol: SP\n      name: b\n"),
        r#"config/securities.yaml:3: securities.stocks[0].symbol: symbol "S&P" has a character outside A-Z a-z 0-9 ^ = . - _ (found '&' at position 2); db_symbol defaults to symbol, so set db_symbol explicitly"#
    );
    let long = "A".repeat(33);
    assert_eq!(
        err(&format!(
            "securities:\n  stocks:\n    - {{symbol: A, name: b, db_symbol: {long}}}\n"
        )),
        format!(
            r#"config/securities.yaml:3: securities.stocks[0].db_symbol: symbol "{long}" is 33 characters long; at most 32 are allowed"#
        )
    );
    assert_eq!(
        err("securities:\n  stocks:\n    - symbol: [A, B]\n      name: b\n"),
        "config/securities.yaml:3: securities.stocks[0].symbol: expected a symbol (text), found a list"
    );
    assert_eq!(
        err("securities:\n  stocks:\n    - symbol: A\n      name: \"  \"\n"),
        "config/securities.yaml:4: securities.stocks[0].name: name is empty; give the security a human-readable name"
    );
}

#[test]
fn bad_numbers_say_the_allowed_range() {
    let enc = |body: &str| err(&format!("{MINIMAL}encoding:\n{body}"));
    assert_eq!(
        enc("  batch_size: five\n"),
        r#"config/securities.yaml:6: encoding.batch_size: expected a whole number in 1..=64, found "five""#
    );
    assert_eq!(
        enc("  max_retries: -1\n"),
        "config/securities.yaml:6: encoding.max_retries: -1 is out of range; allowed: 0..=10"
    );
    assert_eq!(
        enc("  days_back: 0\n"),
        "config/securities.yaml:6: encoding.days_back: 0 is out of range; allowed: 1..=36500"
    );
    assert_eq!(
        enc("  days_back: 60\n  batch_size: 65\n"),
        "config/securities.yaml:7: encoding.batch_size: 65 is out of range; allowed: 1..=64"
    );
    assert_eq!(
        enc("  requests_per_second: 2.5\n"),
        "config/securities.yaml:6: encoding.requests_per_second: expected a whole number in 1..=1000, found 2.5"
    );
    assert_eq!(
        enc("  request_timeout_secs: 99999999999999999999999\n"),
        "config/securities.yaml:6: encoding.request_timeout_secs: expected a whole number in 1..=600, found 99999999999999999999999"
    );
    assert_eq!(
        enc("  retry_max_ms:\n"),
        "config/securities.yaml:6: encoding.retry_max_ms: expected a whole number in 1..=600000, found nothing (an empty value)"
    );
    assert_eq!(
        enc("  retry_base_ms: 1000\n  retry_max_ms: 999\n"),
        "config/securities.yaml:7: encoding.retry_max_ms: 999 is smaller than retry_base_ms (1000); the cap on backoff must be at least the first delay"
    );
    assert_eq!(
        enc("  retry_base_ms: 40000\n"),
        "config/securities.yaml:6: encoding.retry_base_ms: 40000 is larger than retry_max_ms (30000, the default); lower it or set retry_max_ms to at least 40000"
    );
    assert_eq!(
        err(&format!("{MINIMAL}encoding: 5\n")),
        "config/securities.yaml:5: encoding: expected a mapping of settings, found 5"
    );
}

#[test]
fn enabled_must_be_a_boolean() {
    assert_eq!(
        err("securities:\n  etfs:\n    - symbol: SPY\n      name: x\n      enabled: yes\n"),
        r#"config/securities.yaml:5: securities.etfs[0].enabled: expected true or false, found "yes""#
    );
}

#[test]
fn empty_securities_is_an_error() {
    let expected = "config/securities.yaml:1: securities: no securities configured; add a category with at least one entry, e.g. `stocks: [{symbol: AAPL, name: Apple Inc.}]`";
    assert_eq!(err("securities:\n"), expected);
    assert_eq!(err("securities: {}\n"), expected);
    assert_eq!(
        err(""),
        "config/securities.yaml:1: top level: the file is empty; it must define securities (and may define encoding and embedding)"
    );
    assert_eq!(
        err("- a\n- b\n"),
        "config/securities.yaml:1: top level: expected a mapping with the keys securities, encoding and embedding, found a list"
    );
    assert_eq!(
        err("securities:\n  - symbol: SPY\n"),
        "config/securities.yaml:2: securities: expected a mapping of category name to a list of securities, found a list"
    );
}

#[test]
fn category_must_be_a_non_empty_list() {
    assert_eq!(
        err("securities:\n  etfs:\n    symbol: SPY\n    name: x\n"),
        "config/securities.yaml:3: securities.etfs: expected a list of securities (entries starting with `- symbol:`), found a mapping"
    );
    assert_eq!(
        err("securities:\n  etfs: SPY\n"),
        r#"config/securities.yaml:2: securities.etfs: expected a list of securities (entries starting with `- symbol:`), found "SPY""#
    );
    assert_eq!(
        err("securities:\n  stocks: [{symbol: A, name: a}]\n  etfs: []\n"),
        "config/securities.yaml:3: securities.etfs: the category has no securities; add entries (`- symbol: ...`) or remove the key"
    );
    assert_eq!(
        err("securities:\n  stocks: [{symbol: A, name: a}]\n  etfs:\n"),
        "config/securities.yaml:3: securities.etfs: the category has no securities; add entries (`- symbol: ...`) or remove the key"
    );
    assert_eq!(
        err("securities:\n  etfs:\n    - SPY\n"),
        r#"config/securities.yaml:3: securities.etfs[0]: expected a security: a mapping with at least symbol and name, found "SPY""#
    );
}

#[test]
fn invalid_category_key_is_named() {
    assert_eq!(
        err("securities:\n  US Stocks:\n    - {symbol: A, name: a}\n"),
        r#"config/securities.yaml:2: securities["US Stocks"]: category "US Stocks" has a character outside a-z 0-9 _ (found 'U' at position 1); category keys are lowercase, like etfs or us_stocks"#
    );
    assert_eq!(
        err("securities:\n  Stocks:\n    - {symbol: A, name: a}\n"),
        r#"config/securities.yaml:2: securities.Stocks: category "Stocks" has a character outside a-z 0-9 _ (found 'S' at position 1); category keys are lowercase, like etfs or us_stocks"#
    );
    assert_eq!(
        err("securities:\n  [a, b]: [{symbol: A, name: a}]\n"),
        "config/securities.yaml:2: securities: expected a plain key name, found a list"
    );
}

#[test]
fn a_sector_is_read_where_written_and_checked() {
    let cfg = parse(
        "securities:\n  stocks:\n    - {symbol: AAPL, name: Apple, sector: technology}\n    - {symbol: JPM, name: JPMorgan}\n",
    )
    .unwrap();
    let sectors: Vec<Option<&str>> = cfg
        .securities
        .iter()
        .map(|s| s.sector.as_ref().map(crate::domain::Sector::as_str))
        .collect();
    assert_eq!(sectors, [Some("technology"), None]);
    assert_eq!(
        cfg.securities[0]
            .sector
            .as_ref()
            .map(crate::domain::Sector::words),
        Some("technology".to_owned())
    );
    assert_eq!(
        err("securities:\n  stocks:\n    - {symbol: AAPL, name: Apple, sector: Technology}\n"),
        r#"config/securities.yaml:3: securities.stocks[0].sector: sector "Technology" has a character outside a-z 0-9 _ (found 'T' at position 1); sectors are lowercase, like technology or consumer_discretionary"#
    );
    assert_eq!(
        err(
            "securities:\n  stocks:\n    - {symbol: AMZN, name: Amazon, sector: consumer discretionary}\n"
        ),
        r#"config/securities.yaml:3: securities.stocks[0].sector: sector "consumer discretionary" has a character outside a-z 0-9 _ (found ' ' at position 9); sectors are lowercase, like technology or consumer_discretionary"#
    );
    assert_eq!(
        err("securities:\n  stocks:\n    - {symbol: AAPL, name: Apple, sector: }\n"),
        "config/securities.yaml:3: securities.stocks[0].sector: sector is empty; sectors are lowercase, like technology or consumer_discretionary"
    );
    assert_eq!(
        err("securities:\n  stocks:\n    - {symbol: AAPL, name: Apple, sector: 7}\n"),
        r#"config/securities.yaml:3: securities.stocks[0].sector: expected a sector name as a YAML string (quote it: "7"), found 7"#
    );
}

// ---- embedding -------------------------------------------------------------------------

fn openai(cfg: &Config) -> &OpenAiEndpoint {
    match &cfg.embedding {
        EmbeddingSettings::OpenAi(endpoint) => endpoint,
        EmbeddingSettings::Local => panic!("expected provider openai, got local"),
    }
}

/// `MINIMAL` (4 lines) followed by an `embedding:` section (line 5) with this body.
fn embedding(body: &str) -> Result<Config, ConfigError> {
    parse(&format!("{MINIMAL}embedding:\n{body}"))
}

fn embedding_err(body: &str) -> String {
    err(&format!("{MINIMAL}embedding:\n{body}"))
}

const OPENAI: &str =
    "  provider: openai\n  base_url: http://127.0.0.1:11434/v1\n  model: nomic-embed-text\n";

#[test]
fn embedding_defaults_to_the_local_model() {
    assert_eq!(parse(MINIMAL).unwrap().embedding, EmbeddingSettings::Local);
    assert_eq!(embedding("").unwrap().embedding, EmbeddingSettings::Local);
    assert_eq!(
        embedding("  provider: local\n").unwrap().embedding,
        EmbeddingSettings::Local
    );
}

#[test]
fn openai_section_is_read() {
    let cfg = embedding(
        "  provider: openai\n  base_url: https://api.openai.com/v1/\n  model: text-embedding-3-small\n  \
         api_key_env: OPENAI_API_KEY\n  batch_size: 2048\n  dimensions: 512\n  timeout: 90s\n",
    )
    .unwrap();
    assert_eq!(
        openai(&cfg),
        &OpenAiEndpoint {
            base_url: Url::parse("https://api.openai.com/v1/").unwrap(),
            model: "text-embedding-3-small".into(),
            api_key_env: Some("OPENAI_API_KEY".into()),
            batch_size: NonZeroUsize::new(2048).unwrap(),
            dimensions: NonZeroU32::new(512),
            timeout: Duration::from_secs(90),
        }
    );
    // The encoding section may come before or after; `timeout` may omit the unit.
    let cfg = parse(&format!(
        "embedding:\n{OPENAI}  timeout: 5\n{MINIMAL}encoding:\n  days_back: 5\n"
    ))
    .unwrap();
    assert_eq!(openai(&cfg).timeout, Duration::from_secs(5));
    assert_eq!(cfg.encoding.days_back, 5);
}

#[test]
fn openai_defaults_match_the_client() {
    let cfg = embedding(OPENAI).unwrap();
    let e = openai(&cfg);
    assert_eq!(e.base_url.as_str(), "http://127.0.0.1:11434/v1");
    assert_eq!(e.model, "nomic-embed-text");
    assert_eq!(e.api_key_env, None);
    assert_eq!(e.dimensions, None);
    assert_eq!(
        e.batch_size.get(),
        crate::job::embed::openai::DEFAULT_BATCH_SIZE
    );
    assert_eq!(e.timeout, crate::job::embed::openai::DEFAULT_TIMEOUT);
    assert_eq!(
        usize::try_from(EMBEDDING_BATCH_SIZE.max).unwrap(),
        crate::job::embed::openai::MAX_BATCH_SIZE
    );
}

#[test]
fn shipped_config_example_of_the_openai_provider_parses() {
    // The commented example in the shipped file, uncommented, is a valid section.
    let text = shipped_text();
    let example: Vec<String> = text
        .lines()
        .skip_while(|l| *l != "# embedding:")
        .take_while(|l| l.starts_with("# ") && !l.starts_with("# A Chroma"))
        .map(|l| l.trim_start_matches("# ").to_owned())
        .collect();
    assert!(
        example.len() > 5,
        "no commented embedding example in the shipped config"
    );
    let cfg = parse(&format!("{MINIMAL}{}\n", example.join("\n"))).unwrap();
    let e = openai(&cfg);
    assert_eq!(e.model, "nomic-embed-text");
    assert_eq!(e.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
    assert_eq!(e.dimensions, NonZeroU32::new(768));
}

fn shipped_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH))
        .unwrap()
}

#[test]
fn embedding_errors_name_line_and_field() {
    assert_eq!(
        embedding_err(&format!("{OPENAI}  modle: x\n")),
        "config/securities.yaml:9: embedding.modle: unknown key; allowed keys here: provider, base_url, model, api_key_env, batch_size, dimensions, timeout"
    );
    assert_eq!(
        embedding_err("  provider: openai\n  base_url: http://h/v1\n"),
        "config/securities.yaml:6: embedding.model: required key is missing"
    );
    assert_eq!(
        embedding_err("  provider: openai\n  model: m\n"),
        "config/securities.yaml:6: embedding.base_url: required key is missing"
    );
    assert_eq!(
        embedding_err("  provider: cohere\n"),
        r#"config/securities.yaml:6: embedding.provider: "cohere" is not a provider; use local (the in-process all-MiniLM-L6-v2) or openai (an OpenAI-compatible /v1/embeddings endpoint)"#
    );
    assert_eq!(
        embedding_err("  provider: local\n  model: nomic-embed-text\n"),
        "config/securities.yaml:7: embedding.model: only used with provider: openai; remove it or set provider: openai"
    );
    assert_eq!(
        embedding_err("  base_url: http://h/v1\n"),
        "config/securities.yaml:6: embedding.base_url: only used with provider: openai; remove it or set provider: openai"
    );
    assert_eq!(
        embedding_err(&format!("{OPENAI}  batch_size: 4096\n")),
        "config/securities.yaml:9: embedding.batch_size: 4096 is out of range; allowed: 1..=2048"
    );
    assert_eq!(
        embedding_err(&format!("{OPENAI}  dimensions: 768x\n")),
        r#"config/securities.yaml:9: embedding.dimensions: expected a whole number in 1..=65536, found "768x""#
    );
    assert_eq!(
        embedding_err(&format!("{OPENAI}  timeout: 1m\n")),
        r#"config/securities.yaml:9: embedding.timeout: expected a duration in whole seconds such as 60s (1s..=600s), found "1m""#
    );
    assert_eq!(
        embedding_err(&format!("{OPENAI}  timeout: 0s\n")),
        "config/securities.yaml:9: embedding.timeout: 0s is out of range; allowed: 1..=600"
    );
    assert_eq!(
        embedding_err(&format!("{OPENAI}  timeout: 601\n")),
        "config/securities.yaml:9: embedding.timeout: 601 is out of range; allowed: 1..=600"
    );
    assert_eq!(
        embedding_err(&format!("{OPENAI}  timeout: [1]\n")),
        "config/securities.yaml:9: embedding.timeout: expected a duration in whole seconds such as 60s (1s..=600s), found a list"
    );
    assert_eq!(
        embedding_err("  provider: openai\n  base_url: ftp://h/v1\n  model: m\n"),
        r#"config/securities.yaml:7: embedding.base_url: "ftp://h/v1" is not an http(s) URL"#
    );
    assert_eq!(
        embedding_err("  provider: openai\n  base_url: localhost:11434\n  model: m\n"),
        r#"config/securities.yaml:7: embedding.base_url: "localhost:11434" is not an http(s) URL"#
    );
    assert_eq!(
        embedding_err("  provider: openai\n  base_url: not a url\n  model: m\n"),
        r#"config/securities.yaml:7: embedding.base_url: "not a url" is not a URL (relative URL without a base); write the API's base URL, e.g. http://127.0.0.1:11434/v1 or https://api.openai.com/v1"#
    );
    assert_eq!(
        embedding_err("  provider: openai\n  base_url: http://h/v1?key=1\n  model: m\n"),
        r#"config/securities.yaml:7: embedding.base_url: "http://h/v1?key=1" must not have a query or fragment; requests go to {base_url}/embeddings"#
    );
    assert_eq!(
        embedding_err(&format!("{OPENAI}  model: x\n")),
        "config/securities.yaml:9: embedding.model: key appears twice (first on line 8); keep one"
    );
    assert_eq!(
        embedding_err("  provider: openai\n  base_url: http://h/v1\n  model: \" m\"\n"),
        "config/securities.yaml:8: embedding.model: the model name is empty or has spaces around it; write the name the endpoint knows, e.g. nomic-embed-text or text-embedding-3-small"
    );
    assert_eq!(
        err(&format!("{MINIMAL}embedding: openai\n")),
        r#"config/securities.yaml:5: embedding: expected a mapping of settings, found "openai""#
    );
}

#[test]
fn secrets_in_the_embedding_section_are_not_echoed() {
    let msg = embedding_err(
        "  provider: openai\n  base_url: https://user:hunter2@api.example.com/v1\n  model: m\n",
    );
    assert_eq!(
        msg,
        "config/securities.yaml:7: embedding.base_url: credentials in the URL are not supported (the value is not shown); put the key in an environment variable and name it in api_key_env"
    );
    let msg = embedding_err(&format!("{OPENAI}  api_key_env: sk-proj-abc123\n"));
    assert_eq!(
        msg,
        "config/securities.yaml:9: embedding.api_key_env: must be the NAME of the environment variable that holds the key (letters, digits and _), e.g. OPENAI_API_KEY, never the key itself; the value is not shown"
    );
    for name in ["OPENAI_API_KEY", "_K", "key2"] {
        let cfg = embedding(&format!("{OPENAI}  api_key_env: {name}\n")).unwrap();
        assert_eq!(openai(&cfg).api_key_env.as_deref(), Some(name));
    }
    for bad in ["2KEY", "A-B", "\"\"", "A B"] {
        let msg = embedding_err(&format!("{OPENAI}  api_key_env: {bad}\n"));
        assert!(msg.contains("the value is not shown"), "{bad}: {msg}");
    }
}

// ---- select ----------------------------------------------------------------------------

const SELECT: &str = "securities:\n  indices:\n    - {symbol: \"^GSPC\", name: S&P 500, db_symbol: SPX}\n  \
                      etfs:\n    - {symbol: SPY, name: SPDR}\n    - {symbol: QQQ, name: Invesco}\n  \
                      commodities:\n    - {symbol: GLD, name: Gold ETF}\n    - {symbol: GC=F, name: Gold Futures, db_symbol: GC, enabled: false}\n";

fn syms(v: &[&Security]) -> Vec<String> {
    v.iter().map(|s| s.symbol.clone()).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn select_filters_by_category_and_symbol() {
    let cfg = parse(SELECT).unwrap();
    assert_eq!(
        syms(&cfg.select(&[], &[]).unwrap()),
        ["^GSPC", "SPY", "QQQ", "GLD"]
    );
    assert_eq!(
        syms(&cfg.select(&strings(&["etfs"]), &[]).unwrap()),
        ["SPY", "QQQ"]
    );
    assert_eq!(
        syms(&cfg.select(&strings(&["etfs", "indices"]), &[]).unwrap()),
        ["^GSPC", "SPY", "QQQ"]
    );
    // symbol, yahoo_symbol or db_symbol; result in file order
    assert_eq!(
        syms(&cfg.select(&[], &strings(&["QQQ", "SPX"])).unwrap()),
        ["^GSPC", "QQQ"]
    );
    assert_eq!(
        syms(&cfg.select(&[], &strings(&["^GSPC", "SPX"])).unwrap()),
        ["^GSPC"]
    );
    assert_eq!(
        syms(
            &cfg.select(&strings(&["commodities"]), &strings(&["GLD"]))
                .unwrap()
        ),
        ["GLD"]
    );
}

#[test]
fn select_errors() {
    let cfg = parse(SELECT).unwrap();
    assert_eq!(
        cfg.select(&strings(&["bonds"]), &[])
            .unwrap_err()
            .to_string(),
        r#"config/securities.yaml: unknown category "bonds"; categories in this file: indices, etfs, commodities"#
    );
    assert_eq!(
        cfg.select(&[], &strings(&["XYZ"])).unwrap_err().to_string(),
        r#"config/securities.yaml: no security matches "XYZ" (compared with symbol, yahoo_symbol and db_symbol); run with --dry-run to list the configured securities"#
    );
    assert_eq!(
        cfg.select(&[], &strings(&["spy"])).unwrap_err().to_string(),
        r#"config/securities.yaml: no security matches "spy" (compared with symbol, yahoo_symbol and db_symbol); did you mean "SPY" (line 5)? symbols are case-sensitive; run with --dry-run to list the configured securities"#
    );
    assert_eq!(
        cfg.select(&strings(&["etfs"]), &strings(&["GLD"]))
            .unwrap_err()
            .to_string(),
        r#"config/securities.yaml: no security in categories etfs matches "GLD" (compared with symbol, yahoo_symbol and db_symbol); it is in category commodities, which was not selected (line 8); run with --dry-run to list the configured securities"#
    );
    let e = cfg.select(&[], &strings(&["GC"])).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"config/securities.yaml:9: securities.commodities[1]: "GC" is disabled (enabled: false); set enabled: true there to fetch it"#
    );
    assert_eq!(e.line(), Some(9));

    let all_disabled = parse(
        "securities:\n  a:\n    - {symbol: X, name: x, enabled: false}\n  b:\n    - {symbol: Y, name: y}\n",
    )
    .unwrap();
    assert_eq!(
        all_disabled
            .select(&strings(&["a"]), &[])
            .unwrap_err()
            .to_string(),
        "config/securities.yaml: no enabled securities selected (categories: a; symbols: all)"
    );
}

// ---- properties ------------------------------------------------------------------------

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct GenEntry {
        base: String,
        name: String,
        yahoo: Option<String>,
        db: Option<String>,
        enabled: Option<bool>,
        flow: bool,
        quote: bool,
        name_first: bool,
        blank_before: bool,
    }

    #[derive(Debug, Clone)]
    struct GenConfig {
        categories: Vec<(String, Vec<GenEntry>)>,
        encoding: Option<Vec<Option<u32>>>,
        encoding_first: bool,
    }

    const SETTINGS: [&IntSetting; 8] = [
        &DAYS_BACK,
        &EMBEDDING_DAYS,
        &BATCH_SIZE,
        &MAX_RETRIES,
        &REQUEST_TIMEOUT_SECS,
        &REQUESTS_PER_SECOND,
        &RETRY_BASE_MS,
        &RETRY_MAX_MS,
    ];

    fn entry() -> impl Strategy<Value = GenEntry> {
        (
            "[A-Za-z0-9^=.-]{1,20}",
            "[A-Za-z0-9][A-Za-z0-9 &.,()'$/+:#-]{0,30}",
            prop::option::of("[A-Za-z0-9^=.-]{1,20}"),
            prop::option::of("[A-Za-z0-9^=.-]{1,20}"),
            prop::option::of(any::<bool>()),
            any::<[bool; 4]>(),
        )
            .prop_map(
                |(base, name, yahoo, db, enabled, [flow, quote, name_first, blank_before])| {
                    GenEntry {
                        base,
                        name,
                        yahoo,
                        db,
                        enabled,
                        flow,
                        quote,
                        name_first,
                        blank_before,
                    }
                },
            )
    }

    fn encoding() -> impl Strategy<Value = Vec<Option<u32>>> {
        let values: Vec<BoxedStrategy<Option<u32>>> = SETTINGS
            .iter()
            .map(|s| prop::option::of(s.min..=s.max).boxed())
            .collect();
        values.prop_map(|mut v| {
            // keep retry_max >= retry_base whatever is set
            let base = v[6].unwrap_or(RETRY_BASE_MS.default);
            let max = v[7].unwrap_or(RETRY_MAX_MS.default);
            if max < base {
                v[7] = Some(base);
            }
            v
        })
    }

    fn config() -> impl Strategy<Value = GenConfig> {
        (
            prop::collection::btree_map(
                "[a-z][a-z0-9_]{0,12}",
                prop::collection::vec(entry(), 1..5),
                1..5,
            ),
            prop::option::of(encoding()),
            any::<bool>(),
        )
            .prop_map(|(cats, encoding, encoding_first)| GenConfig {
                categories: cats.into_iter().collect(),
                encoding,
                encoding_first,
            })
    }

    /// `s` as YAML: quoted when asked, and when a plain scalar would not be a YAML string
    /// (`1_1`, `.5`, `true`, `null`): symbols and names must be strings.
    fn scalar(s: &str, quote: bool) -> String {
        let number_like = s.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c));
        let keyword = ["true", "false", "null", "~"].contains(&s.to_ascii_lowercase().as_str());
        if quote || number_like || keyword {
            serde_json::to_string(s).unwrap()
        } else {
            s.to_owned()
        }
    }

    /// Renders the config; returns the text and the expected result.
    fn render(g: &GenConfig) -> (String, Vec<Security>, EncodingSettings) {
        let mut lines: Vec<String> = vec!["# generated".into()];
        let mut expected = Vec::new();
        let mut k = 0usize;
        let mut encoding = EncodingSettings::default();
        let mut render_encoding = |lines: &mut Vec<String>| {
            if let Some(values) = &g.encoding {
                lines.push("encoding:".into());
                for (setting, value) in SETTINGS.iter().zip(values) {
                    if let Some(v) = value {
                        lines.push(format!("  {}: {v}   # comment", setting.key));
                    }
                }
                let get = |i: usize| values[i].unwrap_or(SETTINGS[i].default);
                encoding = EncodingSettings {
                    days_back: get(0),
                    embedding_days: get(1),
                    batch_size: nonzero_usize(get(2)),
                    max_retries: get(3),
                    request_timeout: Duration::from_secs(u64::from(get(4))),
                    requests_per_second: nonzero_u32(get(5)),
                    retry_base: Duration::from_millis(u64::from(get(6))),
                    retry_max: Duration::from_millis(u64::from(get(7))),
                    ..EncodingSettings::default()
                };
            }
        };
        if g.encoding_first {
            render_encoding(&mut lines);
        }
        lines.push("securities:".into());
        for (cat, entries) in &g.categories {
            lines.push(format!("  {cat}:"));
            for e in entries {
                k += 1;
                let symbol = format!("{}_{k}", e.base);
                let yahoo = e.yahoo.as_ref().map(|y| format!("{y}_{k}_y"));
                let db = e.db.as_ref().map(|d| format!("{d}_{k}_d"));
                let mut fields = vec![
                    ("symbol", scalar(&symbol, e.quote)),
                    ("name", scalar(&e.name, true)),
                ];
                if e.name_first {
                    fields.swap(0, 1);
                }
                if let Some(y) = &yahoo {
                    fields.push(("yahoo_symbol", scalar(y, e.quote)));
                }
                if let Some(d) = &db {
                    fields.push(("db_symbol", scalar(d, e.quote)));
                }
                if let Some(en) = e.enabled {
                    fields.push(("enabled", en.to_string()));
                }
                if e.blank_before {
                    lines.push(String::new());
                    lines.push("    # a comment".into());
                }
                let line = lines.len() + 1;
                if e.flow {
                    let body: Vec<String> =
                        fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    lines.push(format!("    - {{{}}}", body.join(", ")));
                } else {
                    for (i, (k, v)) in fields.iter().enumerate() {
                        let lead = if i == 0 { "    - " } else { "      " };
                        lines.push(format!("{lead}{k}: {v}"));
                    }
                }
                expected.push(Security {
                    category: Category::parse(cat).unwrap(),
                    symbol: symbol.clone(),
                    name: e.name.clone(),
                    sector: None,
                    yahoo_symbol: YahooSymbol::parse(yahoo.as_deref().unwrap_or(&symbol)).unwrap(),
                    db_symbol: DbSymbol::parse(db.as_deref().unwrap_or(&symbol)).unwrap(),
                    source: crate::domain::Source::Yahoo,
                    enabled: e.enabled.unwrap_or(true),
                    line,
                });
            }
        }
        if !g.encoding_first {
            render_encoding(&mut lines);
        }
        (lines.join("\n") + "\n", expected, encoding)
    }

    fn assert_one_line_error(e: &ConfigError) -> Result<(), TestCaseError> {
        let msg = e.to_string();
        prop_assert!(
            !msg.contains('\n') && !msg.contains('\r'),
            "multi-line: {msg:?}"
        );
        prop_assert!(msg.starts_with(P), "no path prefix: {msg}");
        if let Some(line) = e.line() {
            prop_assert!(
                msg.starts_with(&format!("{P}:{line}:")),
                "line not in prefix: {msg}"
            );
        }
        Ok(())
    }

    /// Fragments that tend to break YAML in interesting ways.
    const FRAGMENTS: &[&str] = &[
        ":",
        "-",
        " ",
        "  ",
        "\n",
        "'",
        "\"",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&a ",
        "*a",
        "!!str ",
        "#",
        "0",
        "-1",
        "true",
        "~",
        "? ",
        "|",
        ">",
        "\t",
        "\u{feff}",
        "é",
        "---\n",
        "...\n",
        "<<: ",
        "enabled: ",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn generated_configs_round_trip(g in config()) {
            let (text, expected, encoding) = render(&g);
            let cfg = match parse(&text) {
                Ok(cfg) => cfg,
                Err(e) => return Err(TestCaseError::fail(format!("{e}\n---\n{text}"))),
            };
            prop_assert_eq!(&cfg.securities, &expected, "{}", text);
            prop_assert_eq!(&cfg.encoding, &encoding);
            let cats: Vec<&str> = g.categories.iter().map(|(c, _)| c.as_str()).collect();
            let got: Vec<&str> = cfg.categories().iter().map(|c| c.as_str()).collect();
            prop_assert_eq!(got, cats);
            let enabled = expected.iter().filter(|s| s.enabled).count();
            match cfg.select(&[], &[]) {
                Ok(sel) => prop_assert_eq!(sel.len(), enabled),
                Err(e) => {
                    prop_assert_eq!(enabled, 0);
                    assert_one_line_error(&e)?;
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            if let Err(e) = parse(&text) {
                assert_one_line_error(&e)?;
            }
        }

        #[test]
        fn yaml_like_text_never_panics(text in "([a-z_]{1,8}: ?|- |  |\\[|\\]|\\{|\\}|, |\"|'|&a |\\*a |[0-9.-]{1,4}|true|\n|#){0,60}") {
            if let Err(e) = parse(&text) {
                assert_one_line_error(&e)?;
            }
        }

        #[test]
        fn mutated_shipped_config_never_panics(
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..6, prop::sample::select(FRAGMENTS)), 1..4)
        ) {
            let mut text = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH),
            ).unwrap();
            for (at, remove, insert) in edits {
                let chars: Vec<char> = text.chars().collect();
                let start = at.index(chars.len());
                let end = (start + remove).min(chars.len());
                text = chars[..start].iter().chain(insert.chars().collect::<Vec<_>>().iter()).chain(chars[end..].iter()).collect();
            }
            match parse(&text) {
                Ok(cfg) => prop_assert!(!cfg.securities.is_empty()),
                Err(e) => assert_one_line_error(&e)?,
            }
        }
    }
}
