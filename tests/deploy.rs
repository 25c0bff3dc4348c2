//! Checks the deployment files under `deploy/`: every YAML file parses, the
//! Kubernetes manifests and the compose file have what the stream job and
//! the daily summary need, the example configuration and the ConfigMap's
//! copy load with the real loader, the Dockerfile builds a non-root image,
//! the systemd units are complete, and every `bouncelens ...` command they
//! run or show is accepted by the binary (subcommand and options).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use bouncelens::config::Config;
use serde::Deserialize;
use serde_yaml::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root()).unwrap_or(path).display().to_string()
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir).into_iter().filter(|p| has_extension(p, &["yml", "yaml"])).collect()
}

/// The documents of a YAML file, empty ones left out.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(document)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", relative(path)));
        if !value.is_null() {
            documents.push(value);
        }
    }
    documents
}

/// The value at a path of mapping keys.
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path).and_then(Value::as_str)
}

/// A YAML scalar as text (`9898`, `true` and `"x"` alike).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A list of strings, or a string split on whitespace (compose allows both).
fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar_text).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Loads a configuration text the way the binary does, with `env` applied.
fn load_config_text(text: &str, env: &[(String, String)]) -> Config {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bouncelens.toml");
    std::fs::write(&path, text).expect("the config is written");
    Config::load_with_env(Some(&path), env)
        .unwrap_or_else(|e| panic!("the configuration does not load: {e}"))
}

/// The `BOUNCELENS_*` variables among `env`.
fn bouncelens_env(env: &[(String, String)]) -> Vec<(String, String)> {
    env.iter()
        .filter(|(k, _)| k.starts_with(bouncelens::config::ENV_PREFIX))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------
// All files

#[test]
fn every_deploy_file_starts_with_a_comment() {
    for path in files_under(&deploy_dir()) {
        let text = read(&path);
        assert!(
            text.trim_start().starts_with('#'),
            "{} should start with a comment saying what it is",
            relative(&path)
        );
    }
}

#[test]
fn every_yaml_file_parses() {
    let files = yaml_files(&deploy_dir());
    assert!(files.len() >= 7, "expected the compose file and the Kubernetes manifests");
    for path in files {
        assert!(
            !yaml_documents(&path).is_empty(),
            "{} holds no document",
            relative(&path)
        );
    }
}

// ---------------------------------------------------------------------------
// The example configuration

/// `(section, key)` of every key of a serialized configuration.
fn config_keys(
    value: &serde_json::Value,
    section: &str,
    out: &mut BTreeSet<(String, String)>,
) {
    let serde_json::Value::Object(map) = value else { return };
    for (key, v) in map {
        if v.is_object() {
            let sub =
                if section.is_empty() { key.clone() } else { format!("{section}.{key}") };
            out.insert((section.to_string(), format!("[{sub}]")));
            config_keys(v, &sub, out);
        } else {
            out.insert((section.to_string(), key.clone()));
        }
    }
}

/// `(section, key)` of every key written in a TOML text, commented out or
/// not, and `(parent, "[section]")` of every section header.
fn documented_keys(text: &str) -> BTreeSet<(String, String)> {
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.trim().to_string();
            let parent = section.rsplit_once('.').map_or("", |(p, _)| p);
            keys.insert((parent.to_string(), format!("[{section}]")));
            continue;
        }
        let body = line.trim_start_matches('#').trim();
        if let Some((key, _)) = body.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                keys.insert((section.clone(), key.to_string()));
            }
        }
    }
    keys
}

#[test]
fn example_config_loads_and_documents_every_key() {
    let path = deploy_dir().join("bouncelens.toml");
    let config = Config::load_with_env(Some(&path), &[])
        .unwrap_or_else(|e| panic!("deploy/bouncelens.toml does not load: {e}"));

    // Its values are the defaults, except the data root, which is set to
    // the image's volume and the systemd state directory.
    assert_eq!(config.data_dir, Path::new("/var/lib/bouncelens/data"));
    let defaults = Config::default();
    assert_eq!(
        Config { data_dir: defaults.data_dir.clone(), ..config },
        defaults,
        "deploy/bouncelens.toml should show the defaults; update it with them"
    );

    let mut expected = BTreeSet::new();
    let serialized = serde_json::to_value(&defaults).expect("the config serializes");
    config_keys(&serialized, "", &mut expected);
    let documented = documented_keys(&read(&path));
    let missing: Vec<_> = expected.difference(&documented).collect();
    assert!(missing.is_empty(), "keys missing from deploy/bouncelens.toml: {missing:?}");
}

// ---------------------------------------------------------------------------
// Kubernetes

fn kubernetes_dir() -> PathBuf {
    deploy_dir().join("kubernetes")
}

/// Every object of the manifests, by kind.
fn kubernetes_objects() -> BTreeMap<String, Vec<Value>> {
    let mut objects: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for path in yaml_files(&kubernetes_dir()) {
        for doc in yaml_documents(&path) {
            let kind = str_at(&doc, &["kind"]).unwrap_or_else(|| {
                panic!("{}: a document without `kind`", relative(&path))
            });
            objects.entry(kind.to_string()).or_default().push(doc);
        }
    }
    objects
}

fn one<'a>(objects: &'a BTreeMap<String, Vec<Value>>, kind: &str) -> &'a Value {
    match objects.get(kind).map(Vec::as_slice) {
        Some([object]) => object,
        other => panic!("expected one {kind}, found {}", other.map_or(0, <[Value]>::len)),
    }
}

fn pod_spec(workload: &Value) -> &Value {
    let path: &[&str] = match str_at(workload, &["kind"]) {
        Some("CronJob") => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    };
    at(workload, path).expect("a pod template")
}

fn containers(pod: &Value) -> &[Value] {
    at(pod, &["containers"]).and_then(Value::as_sequence).expect("containers").as_slice()
}

/// The container port a probe or service port refers to, by number or name.
fn resolve_port(container: &Value, port: &Value) -> Option<u64> {
    if let Some(n) = port.as_u64() {
        return Some(n);
    }
    let name = port.as_str()?;
    at(container, &["ports"])?
        .as_sequence()?
        .iter()
        .find(|p| str_at(p, &["name"]) == Some(name))
        .and_then(|p| at(p, &["containerPort"]))
        .and_then(Value::as_u64)
}

fn assert_probe(container: &Value, probe: &str, path: &str) {
    let get = at(container, &[probe, "httpGet"])
        .unwrap_or_else(|| panic!("the stream job container has no HTTP {probe}"));
    assert_eq!(str_at(get, &["path"]), Some(path), "{probe} path");
    let port = at(get, &["port"]).expect("a probe port");
    assert_eq!(resolve_port(container, port), Some(9898), "{probe} port");
}

/// The name of the claim mounted at `mount_path` in a pod.
fn claim_mounted_at(pod: &Value, container: &Value, mount_path: &str) -> Option<String> {
    let mounts = at(container, &["volumeMounts"])?.as_sequence()?;
    let volume = mounts.iter().find(|m| str_at(m, &["mountPath"]) == Some(mount_path))?;
    let volume = str_at(volume, &["name"])?;
    at(pod, &["volumes"])?
        .as_sequence()?
        .iter()
        .find(|v| str_at(v, &["name"]) == Some(volume))
        .and_then(|v| str_at(v, &["persistentVolumeClaim", "claimName"]))
        .map(str::to_string)
}

fn assert_non_root(pod: &Value, what: &str) {
    assert_eq!(
        at(pod, &["securityContext", "runAsNonRoot"]).and_then(Value::as_bool),
        Some(true),
        "{what}: securityContext.runAsNonRoot"
    );
}

/// The literal `env` entries of a container.
fn container_env(container: &Value) -> Vec<(String, String)> {
    let Some(env) = at(container, &["env"]).and_then(Value::as_sequence) else {
        return Vec::new();
    };
    env.iter()
        .filter_map(|e| {
            Some((str_at(e, &["name"])?.to_string(), str_at(e, &["value"])?.to_string()))
        })
        .collect()
}

/// The ConfigMap's `bouncelens.toml`, loaded.
fn configmap_config(
    objects: &BTreeMap<String, Vec<Value>>,
    env: &[(String, String)],
) -> Config {
    let configmap = one(objects, "ConfigMap");
    let text = str_at(configmap, &["data", "bouncelens.toml"])
        .expect("the ConfigMap holds bouncelens.toml");
    load_config_text(text, env)
}

#[test]
fn kubernetes_manifests_run_the_stream_job_and_the_daily_summary() {
    let objects = kubernetes_objects();
    for kind in ["Deployment", "CronJob", "ConfigMap", "Service", "PersistentVolumeClaim"]
    {
        assert!(objects.contains_key(kind), "no {kind} in deploy/kubernetes");
    }
    let pvc = one(&objects, "PersistentVolumeClaim");
    let claim = str_at(pvc, &["metadata", "name"]).expect("the claim's name");

    // The stream job.
    let deployment = one(&objects, "Deployment");
    let pod = pod_spec(deployment);
    assert_non_root(pod, "Deployment");
    let [container] = containers(pod) else {
        panic!("the Deployment runs one container")
    };
    assert!(
        argv_invocations(&kubernetes_argv(container, &image_entrypoint()))
            .iter()
            .any(|w| w.first().map(String::as_str) == Some("run")),
        "the Deployment runs `bouncelens run`"
    );
    assert_probe(container, "livenessProbe", "/healthz");
    assert_probe(container, "readinessProbe", "/readyz");
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                at(container, &["resources", bound, resource]).is_some(),
                "the stream job has no resources.{bound}.{resource}"
            );
        }
    }
    let config = configmap_config(&objects, &bouncelens_env(&container_env(container)));
    assert_eq!(config.metrics.listen, "0.0.0.0:9898", "must be reachable in a pod");
    let data_dir = config.data_dir.to_str().expect("a UTF-8 data_dir");
    assert_eq!(
        claim_mounted_at(pod, container, data_dir).as_deref(),
        Some(claim),
        "the stream job mounts the claim at data_dir"
    );

    // The daily summary.
    let cronjob = one(&objects, "CronJob");
    assert_eq!(str_at(cronjob, &["spec", "concurrencyPolicy"]), Some("Forbid"));
    assert!(
        str_at(cronjob, &["spec", "timeZone"]).is_some_and(|z| !z.is_empty()),
        "the CronJob names its timeZone"
    );
    let schedule = str_at(cronjob, &["spec", "schedule"]).expect("a schedule");
    assert_eq!(
        schedule.split_whitespace().count(),
        5,
        "a five-field schedule: {schedule}"
    );
    let job_pod = pod_spec(cronjob);
    assert_non_root(job_pod, "CronJob");
    let [job_container] = containers(job_pod) else {
        panic!("the CronJob runs one container")
    };
    assert_eq!(
        claim_mounted_at(job_pod, job_container, data_dir).as_deref(),
        Some(claim),
        "the summary mounts the stream job's claim at data_dir"
    );
    let job_invocations =
        argv_invocations(&kubernetes_argv(job_container, &image_entrypoint()));
    assert!(
        job_invocations.iter().any(|w| w.first().map(String::as_str) == Some("summary")),
        "the CronJob runs `bouncelens summary`: {job_invocations:?}"
    );
    // A CronJob writes the summaries: the built-in scheduler must be off,
    // or every day would be summarised twice.
    assert!(!config.summary.enabled, "summary.enabled must be false in the ConfigMap");

    // Prometheus finds the metrics port.
    let service = one(&objects, "Service");
    assert_eq!(
        str_at(service, &["metadata", "annotations", "prometheus.io/scrape"]),
        Some("true")
    );
    let ports =
        at(service, &["spec", "ports"]).and_then(Value::as_sequence).expect("ports");
    assert!(
        ports.iter().any(|p| {
            at(p, &["targetPort"]).and_then(|t| resolve_port(container, t)) == Some(9898)
        }),
        "the Service targets the metrics port"
    );
}

#[test]
fn kustomization_lists_every_manifest() {
    let path = kubernetes_dir().join("kustomization.yaml");
    let [kustomization]: [Value; 1] =
        yaml_documents(&path).try_into().expect("one document");
    let listed: BTreeSet<String> =
        words(at(&kustomization, &["resources"])).into_iter().collect();
    let present: BTreeSet<String> = yaml_files(&kubernetes_dir())
        .iter()
        .filter(|p| p.file_name() != Some(OsStr::new("kustomization.yaml")))
        .map(|p| p.strip_prefix(kubernetes_dir()).expect("inside").display().to_string())
        .collect();
    assert_eq!(listed, present, "kustomization.yaml resources vs the files beside it");
}

// ---------------------------------------------------------------------------
// docker compose

fn compose_services() -> serde_yaml::Mapping {
    let path = deploy_dir().join("docker-compose.yml");
    let [compose]: [Value; 1] = yaml_documents(&path).try_into().expect("one document");
    at(&compose, &["services"]).and_then(Value::as_mapping).expect("services").clone()
}

/// A compose service's environment, as a map or as `KEY=value` items.
fn compose_env(service: &Value) -> Vec<(String, String)> {
    match at(service, &["environment"]) {
        Some(Value::Mapping(map)) => map
            .iter()
            .filter_map(|(k, v)| {
                Some((scalar_text(k)?, scalar_text(v).unwrap_or_default()))
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|i| {
                let (k, v) = i.split_once('=').unwrap_or((i, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a compose service or container runs the bouncelens image.
fn is_bouncelens_image(spec: &Value) -> bool {
    let built_here =
        str_at(spec, &["build", "dockerfile"]).is_some_and(|d| d.ends_with("Dockerfile"));
    let named = str_at(spec, &["image"]).is_some_and(|image| {
        let name = image.rsplit('/').next().unwrap_or(image);
        name.split([':', '@']).next() == Some("bouncelens")
    });
    built_here || named
}

#[test]
fn compose_runs_kafka_in_kraft_mode_and_the_stream_job() {
    let services = compose_services();
    let kafka = services
        .iter()
        .find(|(_, s)| {
            str_at(s, &["image"]).is_some_and(|i| i.starts_with("apache/kafka:"))
        })
        .map(|(name, s)| (name.as_str().expect("a service name"), s))
        .expect("a service running the apache/kafka image");
    let kafka_env = compose_env(kafka.1);
    let roles = kafka_env
        .iter()
        .find(|(k, _)| k == "KAFKA_PROCESS_ROLES")
        .map(|(_, v)| v.as_str())
        .expect("KAFKA_PROCESS_ROLES: Kafka in KRaft mode");
    assert!(roles.contains("broker") && roles.contains("controller"), "roles: {roles}");

    let entrypoint = image_entrypoint();
    let job = services
        .values()
        .find(|s| {
            argv_invocations(&compose_argv(s, &entrypoint))
                .iter()
                .any(|w| w.first().map(String::as_str) == Some("run"))
        })
        .expect("a service running `bouncelens run`");
    let env = compose_env(job);
    let brokers =
        env.iter().find(|(k, _)| k == "BOUNCELENS_KAFKA__BROKERS").map(|(_, v)| v);
    assert_eq!(brokers.map(String::as_str), Some(format!("{}:9092", kafka.0).as_str()));

    // The configuration it mounts exists and loads with its overrides.
    let mounted = words(at(job, &["volumes"]))
        .into_iter()
        .find(|v| v.contains(":/etc/bouncelens/"))
        .expect("the configuration is mounted");
    let source = deploy_dir().join(mounted.split(':').next().expect("a source"));
    let config = load_config_text(&read(&source), &bouncelens_env(&env));
    assert_eq!(config.kafka.brokers, format!("{}:9092", kafka.0));
    assert_eq!(config.metrics.listen, "0.0.0.0:9898", "must be reachable in a container");
}

// ---------------------------------------------------------------------------
// Dockerfile

fn dockerfile() -> String {
    read(&deploy_dir().join("Dockerfile"))
}

/// `(INSTRUCTION, arguments)` of a Dockerfile's lines (continuations are
/// not joined: the checks here only look at one-line instructions).
fn instructions(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| {
            !l.trim_start().starts_with('#') && !l.starts_with(char::is_whitespace)
        })
        .filter_map(|l| {
            let (instruction, rest) = l.trim().split_once(char::is_whitespace)?;
            Some((instruction.to_ascii_uppercase(), rest.trim().to_string()))
        })
        .collect()
}

fn exec_form(instruction: &str) -> Vec<String> {
    let (_, args) = instructions(&dockerfile())
        .into_iter()
        .rfind(|(i, _)| i == instruction)
        .unwrap_or_else(|| panic!("the Dockerfile has no {instruction}"));
    serde_json::from_str(&args)
        .unwrap_or_else(|e| panic!("{instruction} should be in exec form (JSON): {e}"))
}

/// The ENTRYPOINT of the image the Dockerfile builds.
fn image_entrypoint() -> Vec<String> {
    exec_form("ENTRYPOINT")
}

#[test]
fn dockerfile_builds_in_stages_and_runs_as_non_root() {
    let text = dockerfile();
    let instructions = instructions(&text);
    let from: Vec<_> = instructions.iter().filter(|(i, _)| i == "FROM").collect();
    assert!(from.len() >= 2, "a multi-stage build: {from:?}");

    let last_from = instructions.iter().rposition(|(i, _)| i == "FROM").expect("a FROM");
    let user = instructions[last_from..]
        .iter()
        .rfind(|(i, _)| i == "USER")
        .map(|(_, u)| u.as_str())
        .expect("the runtime stage sets USER");
    let name = user.split(':').next().unwrap_or(user);
    assert!(!matches!(name, "root" | "0"), "USER {user} is root");

    assert!(
        instructions
            .iter()
            .any(|(i, a)| i == "EXPOSE" && a.split_whitespace().any(|p| p == "9898")),
        "EXPOSE 9898"
    );
    let mut argv = image_entrypoint();
    assert!(argv.first().is_some_and(|e| is_bouncelens(e)), "ENTRYPOINT {argv:?}");
    argv.extend(exec_form("CMD"));
    assert_eq!(
        argv.get(1).map(String::as_str),
        Some("run"),
        "the default command: {argv:?}"
    );

    // Every COPY from the build context names something that exists.
    for (_, args) in
        instructions.iter().filter(|(i, a)| i == "COPY" && !a.starts_with("--"))
    {
        let paths: Vec<&str> = args.split_whitespace().collect();
        for source in &paths[..paths.len() - 1] {
            assert!(
                repo_root().join(source).exists(),
                "COPY {source}: not in the repository"
            );
        }
    }
}

/// Files the crates embed at compile time must be in what the Dockerfile
/// copies into the builder, or the image build breaks.
#[test]
fn dockerfile_copies_every_embedded_file() {
    let copied: Vec<PathBuf> = instructions(&dockerfile())
        .into_iter()
        .filter(|(i, a)| i == "COPY" && !a.starts_with("--"))
        .flat_map(|(_, a)| {
            let paths: Vec<String> = a.split_whitespace().map(str::to_string).collect();
            paths[..paths.len() - 1]
                .iter()
                .map(|p| {
                    let path = repo_root().join(p);
                    path.canonicalize().unwrap_or(path)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut sources: Vec<PathBuf> = files_under(&repo_root().join("src"));
    for krate in std::fs::read_dir(repo_root().join("crates")).expect("crates/").flatten()
    {
        let src = krate.path().join("src");
        if src.is_dir() {
            sources.extend(files_under(&src));
        }
    }
    for source in sources.iter().filter(|p| has_extension(p, &["rs"])) {
        let text = read(source);
        for marker in ["include_str!(\"", "include_bytes!(\""] {
            for (start, _) in text.match_indices(marker) {
                let rest = &text[start + marker.len()..];
                let Some(end) = rest.find('"') else { continue };
                let embedded = source.parent().expect("a folder").join(&rest[..end]);
                let embedded = embedded.canonicalize().unwrap_or(embedded);
                assert!(
                    copied.iter().any(|c| embedded.starts_with(c)),
                    "{} embeds {}, which deploy/Dockerfile does not copy",
                    relative(source),
                    relative(&embedded)
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// systemd

/// A unit file's `[Section]` names and `Key=value` entries by section.
fn unit_sections(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            sections.entry(current.clone()).or_default();
        } else if let Some((key, value)) = line.split_once('=') {
            let entries = sections.entry(current.clone()).or_default();
            entries.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    sections
}

fn unit_value<'a>(
    sections: &'a BTreeMap<String, Vec<(String, String)>>,
    section: &str,
    key: &str,
) -> Option<&'a str> {
    sections.get(section)?.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn systemd_units() -> Vec<PathBuf> {
    files_under(&deploy_dir().join("systemd"))
}

/// The command of an `ExecStart=` value, its `-@:+!` prefixes removed.
fn exec_start_words(value: &str) -> Vec<String> {
    let command = value.trim_start_matches(['-', '@', ':', '+', '!']);
    shell_commands(command).into_iter().next().unwrap_or_default()
}

#[test]
fn systemd_units_are_complete() {
    let units = systemd_units();
    let names: BTreeSet<String> = units
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .collect();
    assert!(names.contains("bouncelens.service"), "{names:?}");
    let mut timers = 0;
    for path in &units {
        let text = read(path);
        let sections = unit_sections(&text);
        let what = relative(path);
        assert!(sections.contains_key("Unit"), "{what}: no [Unit]");
        if has_extension(path, &["service"]) {
            assert!(sections.contains_key("Service"), "{what}: no [Service]");
            let exec = unit_value(&sections, "Service", "ExecStart")
                .unwrap_or_else(|| panic!("{what}: no ExecStart"));
            let program = exec_start_words(exec).into_iter().next().unwrap_or_default();
            assert!(
                program.starts_with('/'),
                "{what}: ExecStart {program:?} is not absolute"
            );
            // "%" starts a systemd specifier; a literal one is written "%%".
            assert!(
                !exec.replace("%%", "").contains('%'),
                "{what}: an unescaped % in ExecStart: {exec}"
            );
            let user = unit_value(&sections, "Service", "User");
            assert!(user.is_some_and(|u| u != "root"), "{what}: runs as {user:?}");
            assert!(
                unit_value(&sections, "Service", "Type").is_some(),
                "{what}: no Type"
            );
        } else if has_extension(path, &["timer"]) {
            timers += 1;
            assert!(sections.contains_key("Timer"), "{what}: no [Timer]");
            assert!(sections.contains_key("Install"), "{what}: no [Install]");
            assert!(
                unit_value(&sections, "Timer", "OnCalendar").is_some(),
                "{what}: no OnCalendar"
            );
            let stem = path.file_stem().and_then(|s| s.to_str()).expect("a name");
            let target = unit_value(&sections, "Timer", "Unit")
                .map_or_else(|| format!("{stem}.service"), str::to_string);
            assert!(
                names.contains(&target),
                "{what} starts {target}, which is not beside it"
            );
            let service = unit_sections(&read(&path.with_file_name(&target)));
            assert_eq!(
                unit_value(&service, "Service", "Type"),
                Some("oneshot"),
                "{target}"
            );
        } else {
            panic!("{what}: not a .service or .timer unit");
        }
    }
    assert!(timers >= 1, "a timer for the daily summary");

    let subcommands: BTreeSet<String> = units
        .iter()
        .flat_map(|p| unit_sections(&read(p)).into_values().flatten())
        .filter(|(key, _)| key == "ExecStart")
        .flat_map(|(_, value)| script_invocations(&value))
        .filter_map(|args| args.first().cloned())
        .collect();
    for sub in ["run", "summary"] {
        assert!(
            subcommands.contains(sub),
            "no unit runs `bouncelens {sub}`: {subcommands:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Subcommands

/// Whether a word names the program: `bouncelens` or a path to it in a
/// `bin/` folder (not `/etc/bouncelens` and the like).
fn is_bouncelens(word: &str) -> bool {
    word == "bouncelens" || word.ends_with("bin/bouncelens")
}

/// The commands of a shell one-liner or an `ExecStart=` value, each as its
/// words: quotes group, and a newline, `;`, `&`, `|`, `(`, `)` or a backtick
/// outside quotes ends a command. Enough for the commands in deploy/.
fn shell_commands(script: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.get_or_insert_with(String::new).push(c),
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    word.get_or_insert_with(String::new);
                }
                '\\' if chars.peek() == Some(&'\n') => {
                    chars.next();
                }
                '\n' | ';' | '&' | '|' | '(' | ')' | '`' => {
                    words.extend(word.take());
                    if !words.is_empty() {
                        commands.push(std::mem::take(&mut words));
                    }
                }
                c if c.is_whitespace() => words.extend(word.take()),
                c => word.get_or_insert_with(String::new).push(c),
            },
        }
    }
    words.extend(word.take());
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

/// The arguments after `bouncelens` in each command of a shell script.
fn script_invocations(script: &str) -> Vec<Vec<String>> {
    shell_commands(script).iter().flat_map(|words| argv_invocations(words)).collect()
}

/// The arguments of `bouncelens` in one command: after the program (also
/// behind `exec` and the like), or in a `sh -c` script.
fn argv_invocations(argv: &[String]) -> Vec<Vec<String>> {
    if let Some(program) = argv.iter().position(|w| is_bouncelens(w)) {
        return vec![argv[program + 1..].to_vec()];
    }
    match argv {
        [shell, flag, script, ..] if shell.ends_with("sh") && flag == "-c" => {
            script_invocations(script)
        }
        _ => Vec::new(),
    }
}

/// An argv from an entrypoint and its arguments. Without an entrypoint of
/// its own a container of our image runs its ENTRYPOINT; without either,
/// the image's default command runs (checked with the Dockerfile).
fn argv(
    spec: &Value,
    entry: Option<&Value>,
    args: Option<&Value>,
    image: &[String],
) -> Vec<String> {
    let mut argv = match entry {
        Some(e) => words(Some(e)),
        None if args.is_some() && is_bouncelens_image(spec) => image.to_vec(),
        None => Vec::new(),
    };
    argv.extend(words(args));
    argv
}

/// The argv of a compose service: `entrypoint`, then `command`.
fn compose_argv(service: &Value, image: &[String]) -> Vec<String> {
    argv(service, at(service, &["entrypoint"]), at(service, &["command"]), image)
}

/// The argv of a Kubernetes container: `command`, then `args`.
fn kubernetes_argv(container: &Value, image: &[String]) -> Vec<String> {
    argv(container, at(container, &["command"]), at(container, &["args"]), image)
}

/// Every `bouncelens ...` that deploy/ runs or shows, with where.
fn invocations() -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let entrypoint = image_entrypoint();

    let mut image_argv = entrypoint.clone();
    image_argv.extend(exec_form("CMD"));
    for args in argv_invocations(&image_argv) {
        found.push(("deploy/Dockerfile ENTRYPOINT + CMD".to_string(), args));
    }

    for (name, service) in compose_services() {
        let name = name.as_str().unwrap_or_default().to_string();
        for args in argv_invocations(&compose_argv(&service, &entrypoint)) {
            found.push((format!("docker-compose.yml service {name}"), args));
        }
    }

    for (kind, objects) in kubernetes_objects() {
        if kind != "Deployment" && kind != "CronJob" {
            continue;
        }
        for object in &objects {
            let pod = pod_spec(object);
            let init = at(pod, &["initContainers"]).and_then(Value::as_sequence);
            for container in containers(pod).iter().chain(init.into_iter().flatten()) {
                for args in argv_invocations(&kubernetes_argv(container, &entrypoint)) {
                    found.push((format!("kubernetes {kind}"), args));
                }
            }
        }
    }

    for path in systemd_units() {
        let sections = unit_sections(&read(&path));
        for (key, value) in sections.values().flatten() {
            if key.starts_with("Exec") {
                for args in script_invocations(value) {
                    found.push((relative(&path), args));
                }
            }
        }
    }

    // Commands shown in comments: `bouncelens ...` in backticks, and
    // `docker compose ... run ... bouncelens <arguments>` lines.
    for path in files_under(&deploy_dir()) {
        let text = read(&path);
        let origin = format!("{} (comment)", relative(&path));
        for line in text.lines() {
            for snippet in line.split('`').skip(1).step_by(2) {
                if snippet.split_whitespace().next().is_some_and(is_bouncelens) {
                    for args in script_invocations(snippet) {
                        found.push((origin.clone(), args));
                    }
                }
            }
            let comment = line.trim_start().strip_prefix('#').map(str::trim_start);
            if let Some(command) = comment.filter(|c| c.starts_with("docker compose ")) {
                for args in script_invocations(command) {
                    found.push((origin.clone(), args));
                }
            }
        }
    }
    found
}

fn bouncelens_help(words: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bouncelens"))
        .args(words)
        .arg("--help")
        .output()
        .expect("the bouncelens binary runs")
}

#[test]
fn every_bouncelens_command_in_deploy_is_accepted() {
    let found = invocations();
    for origin in ["Dockerfile", "docker-compose", "kubernetes", "systemd"] {
        assert!(
            found.iter().any(|(w, _)| w.contains(origin) && !w.ends_with("(comment)")),
            "no `bouncelens <subcommand>` run in {origin}: {found:?}"
        );
    }

    // `bouncelens <arguments> --help`: clap refuses an unknown subcommand or
    // option, or a bad value of a choice, before it prints the help.
    let mut checked: BTreeMap<&[String], Vec<&str>> = BTreeMap::new();
    for (origin, args) in &found {
        assert!(
            args.first().is_some_and(|a| !a.starts_with('-')),
            "{origin}: `bouncelens` without a subcommand: {args:?}"
        );
        checked.entry(args.as_slice()).or_default().push(origin.as_str());
    }
    let failures: Vec<String> = checked
        .iter()
        .filter_map(|(args, origins)| {
            let output = bouncelens_help(args);
            (!output.status.success()).then(|| {
                format!(
                    "`bouncelens {}` (in {}): {}: {}",
                    args.join(" "),
                    origins.join(", "),
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "commands in deploy/ that bouncelens refuses:\n{}",
        failures.join("\n")
    );
}
