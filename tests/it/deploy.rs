//! The Kubernetes manifests in k8s/ against the binary they deploy: their `args` parse with
//! the binary's own clap parser, the CronJob provides every variable the job needs, its grace
//! period covers the shutdown, the ConfigMap's securities.yaml is config/securities.yaml, and
//! the backfill's shards cover the selection. No cluster needed (scripts/check-k8s.sh checks
//! the schemas).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use market_encoder::cli::{Cli, Command};
use market_encoder::config::Config;
use market_encoder::config::env::{
    DEFAULT_DB_TIMEOUT, EnvValue, JOB_ENV, SHARDS_VAR, indexed_job_shard,
};
use market_encoder::domain::Shard;
use serde_json::Value;

const NAMESPACE: &str = "time-series-indexing";

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s")
}

/// Every document of one manifest file.
fn docs(file: &str) -> Vec<Value> {
    let path = k8s_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn one(file: &str, kind: &str, name: &str) -> Value {
    docs(file)
        .into_iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{file}: no {kind} {name}"))
}

fn manifests() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| {
            Path::new(f)
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml")
        })
        .filter(|f| f != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

fn cronjob() -> Value {
    one(
        "market-encoder-cronjob.yaml",
        "CronJob",
        "market-encoder-daily",
    )
}

fn migrate_job() -> Value {
    one(
        "market-encoder-migrate-job.yaml",
        "Job",
        "market-encoder-migrate",
    )
}

fn backfill_job() -> Value {
    one(
        "market-encoder-backfill-indexed-job.yaml",
        "Job",
        "market-encoder-backfill",
    )
}

/// The pod spec of a Job or a CronJob.
fn pod_spec(object: &Value) -> &Value {
    match object["kind"].as_str() {
        Some("CronJob") => &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &object["spec"]["template"]["spec"],
    }
}

fn container(object: &Value) -> &Value {
    let containers = pod_spec(object)["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The container's `args` as the binary's command line (the image's ENTRYPOINT is the binary).
fn parse_args(object: &Value) -> Cli {
    let mut argv = vec!["market-encoder".to_owned()];
    argv.extend(strings(&container(object)["args"]));
    Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

/// The container's literal `env` values.
fn literal_env(object: &Value) -> Vec<(String, String)> {
    container(object)["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Every variable name the container gets: `env` entries plus the keys of the ConfigMaps and
/// Secrets it reads with `envFrom`.
fn provided_env(object: &Value) -> BTreeSet<String> {
    let c = container(object);
    let mut names: BTreeSet<String> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    let config = docs("market-encoder-config.yaml");
    for from in c["envFrom"].as_array().unwrap() {
        let (kind, name) = if let Some(name) = from["configMapRef"]["name"].as_str() {
            ("ConfigMap", name)
        } else if let Some(name) = from["secretRef"]["name"].as_str() {
            ("Secret", name)
        } else {
            panic!("unknown envFrom {from}");
        };
        let source = config
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| {
                panic!("envFrom {kind} {name} is not in market-encoder-config.yaml")
            });
        for data in ["data", "stringData"] {
            if let Some(map) = source[data].as_object() {
                names.extend(map.keys().cloned());
            }
        }
    }
    names
}

#[test]
fn every_object_is_labelled_and_namespaced() {
    let files = manifests();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        for doc in docs(&file) {
            let what = format!("{file}: {} {}", doc["kind"], doc["metadata"]["name"]);
            assert_eq!(doc["metadata"]["namespace"], NAMESPACE, "{what}");
            assert_eq!(doc["metadata"]["labels"]["app"], "market-encoder", "{what}");
            if doc["kind"] == "Job" || doc["kind"] == "CronJob" {
                let template = match doc["kind"].as_str() {
                    Some("CronJob") => &doc["spec"]["jobTemplate"]["spec"]["template"],
                    _ => &doc["spec"]["template"],
                };
                assert_eq!(
                    template["metadata"]["labels"]["app"], "market-encoder",
                    "{what}: pods"
                );
            }
        }
    }
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let k = docs("kustomization.yaml").remove(0);
    assert_eq!(k["namespace"], NAMESPACE);
    let listed: BTreeSet<String> = strings(&k["resources"]).into_iter().collect();
    let present: BTreeSet<String> = manifests().into_iter().collect();
    assert_eq!(listed, present);
    let images = k["images"].as_array().unwrap();
    assert!(images.iter().any(|i| i["name"] == "market-encoder"));
}

#[test]
fn the_cronjob_runs_the_job_on_weekday_mornings_without_overlap() {
    let cj = cronjob();
    assert_eq!(cj["spec"]["schedule"], "30 6 * * 1-5");
    assert_eq!(cj["spec"]["timeZone"], "Etc/UTC");
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
    for key in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        assert!(cj["spec"][key].is_u64(), "{key}");
    }
    for key in ["backoffLimit", "activeDeadlineSeconds"] {
        assert!(cj["spec"]["jobTemplate"]["spec"][key].is_u64(), "{key}");
    }
    let cli = parse_args(&cj);
    assert!(cli.command.is_none(), "the one-shot job, not a subcommand");
    assert!(!cli.run.dry_run);
    assert!(cli.run.job.shard.is_none());
}

#[test]
fn the_containers_run_locked_down() {
    for object in [cronjob(), migrate_job(), backfill_job()] {
        let what = object["metadata"]["name"].clone();
        let pod = pod_spec(&object);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
        let sc = &container(&object)["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{what}");
        assert_eq!(sc["runAsUser"], 10001, "{what}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{what}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
        let c = container(&object);
        assert!(c["resources"]["requests"]["memory"].is_string(), "{what}");
        assert!(c["resources"]["limits"]["memory"].is_string(), "{what}");
        assert_eq!(c["image"], "market-encoder:latest", "{what}");
        // /tmp is the one writable place.
        let tmp = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/tmp")
            .unwrap_or_else(|| panic!("{what}: no /tmp mount"));
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == tmp["name"])
            .unwrap();
        assert!(volume["emptyDir"].is_object(), "{what}");
    }
}

#[test]
fn the_cronjob_provides_every_variable_the_job_needs() {
    for object in [cronjob(), backfill_job(), migrate_job()] {
        let provided = provided_env(&object);
        let missing: Vec<&&str> = JOB_ENV.iter().filter(|v| !provided.contains(**v)).collect();
        assert!(
            missing.is_empty(),
            "{}: missing {missing:?} (has {provided:?})",
            object["metadata"]["name"]
        );
    }
    let env = literal_env(&cronjob());
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(
        get("EMBEDDING_MODEL_DIR"),
        Some("/opt/market-encoder/model")
    );
    assert_eq!(
        get("MARKET_ENCODER_CONFIG"),
        Some("/etc/market-encoder/securities.yaml")
    );
}

#[test]
fn the_config_file_is_the_mounted_configmap() {
    for object in [cronjob(), backfill_job()] {
        let cli = parse_args(&object);
        let config = cli.run.config;
        let c = container(&object);
        let mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| config.starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{} is not on a mounted volume", config.display()));
        assert_eq!(mount["readOnly"], true);
        let volume = pod_spec(&object)["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        assert_eq!(volume["configMap"]["name"], "market-encoder-config");
        let file = config
            .strip_prefix(mount["mountPath"].as_str().unwrap())
            .unwrap();
        assert_eq!(file, Path::new("securities.yaml"));
    }
}

#[test]
fn the_configmap_holds_the_shipped_securities_file() {
    let cm = one(
        "market-encoder-config.yaml",
        "ConfigMap",
        "market-encoder-config",
    );
    let embedded = cm["data"]["securities.yaml"].as_str().unwrap();
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/securities.yaml"),
    )
    .unwrap();
    assert!(
        embedded == shipped,
        "k8s/market-encoder-config.yaml's securities.yaml differs from config/securities.yaml: copy the file into the ConfigMap"
    );
    let config = Config::from_yaml(embedded, Path::new("/etc/market-encoder/securities.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.securities.is_empty());
}

#[test]
fn the_secret_holds_placeholders_only() {
    let secret = one(
        "market-encoder-config.yaml",
        "Secret",
        "market-encoder-secrets",
    );
    assert!(
        secret["data"].is_null(),
        "no base64 data: placeholders in stringData"
    );
    assert_eq!(secret["stringData"]["DB_PASSWORD"], "CHANGE-ME");
}

/// What a run may still do after SIGTERM: Yahoo fetches and the embed/index stage are
/// abandoned at once (nothing is marked that Chroma did not accept), so what remains is the
/// embedding chunk computing on a blocking thread (by design under 15 s, see
/// `job/memory.rs` `EMBED_CHUNK`), a store transaction in flight and the `runs` row, each
/// waiting at most the acquire timeout for a connection.
const EMBED_CHUNK_BOUND: Duration = Duration::from_secs(15);

#[test]
fn the_grace_period_covers_the_shutdown() {
    let bound = EMBED_CHUNK_BOUND + 2 * DEFAULT_DB_TIMEOUT;
    assert_eq!(
        bound,
        Duration::from_secs(25),
        "update the CronJob's comment"
    );
    for object in [cronjob(), migrate_job(), backfill_job()] {
        let grace = pod_spec(&object)["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
        assert!(
            Duration::from_secs(grace) >= bound + Duration::from_secs(30),
            "{}: terminationGracePeriodSeconds {grace} < {} s + 30 s",
            object["metadata"]["name"],
            bound.as_secs()
        );
    }
}

#[test]
fn the_migrate_job_migrates() {
    let cli = parse_args(&migrate_job());
    assert!(matches!(cli.command, Some(Command::Migrate)));
    assert!(provided_env(&migrate_job()).contains("DB_PASSWORD"));
}

#[test]
fn the_backfill_shards_cover_the_selection() {
    let job = backfill_job();
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    let completions = job["spec"]["completions"].as_u64().unwrap();
    assert_eq!(completions, 4);
    assert_eq!(job["spec"]["parallelism"], 4);
    let cli = parse_args(&job);
    assert!(cli.command.is_none());
    let args = &cli.run.job;
    assert!(args.from.is_some() && args.to.is_some(), "--from and --to");
    assert!(
        args.shard.is_none(),
        "the shard comes from JOB_COMPLETION_INDEX"
    );
    let env = literal_env(&job);
    let shards = env
        .iter()
        .find(|(k, _)| k == SHARDS_VAR)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{SHARDS_VAR} is not set"));
    assert_eq!(
        shards,
        completions.to_string(),
        "{SHARDS_VAR} = completions"
    );

    let config = Config::from_yaml(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/securities.yaml"),
        )
        .unwrap(),
        Path::new("securities.yaml"),
    )
    .unwrap();
    let selected: Vec<String> = config
        .select(&args.categories, &args.symbols)
        .unwrap()
        .iter()
        .map(|s| s.db_symbol.as_str().to_owned())
        .collect();
    let mut covered = Vec::new();
    for index in 0..completions {
        let index = index.to_string();
        let pod_env = EnvValue::from_pairs(&[
            ("JOB_COMPLETION_INDEX", index.as_str()),
            (SHARDS_VAR, shards.as_str()),
        ]);
        let shard: Shard = indexed_job_shard(&pod_env).unwrap().unwrap();
        assert_eq!(shard.to_string(), format!("{index}/{shards}"));
        let mine = shard.select(selected.clone(), String::as_str);
        assert!(!mine.is_empty(), "shard {shard} is empty");
        covered.extend(mine);
    }
    covered.sort();
    let mut all = selected;
    all.sort();
    assert_eq!(covered, all, "the shards cover the selection exactly once");
}
