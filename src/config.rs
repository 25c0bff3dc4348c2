//! The configuration: one TOML file, every key overridable from the
//! environment, unknown keys refused by name.
//!
//! `deploy/bouncelens.toml` is the documented example. An environment
//! variable `BOUNCELENS_<SECTION>__<KEY>` (double underscore between levels,
//! case-insensitive) overrides a key: `BOUNCELENS_KAFKA__BROKERS=k1:9092`,
//! `BOUNCELENS_FLUSH__MAX_ROWS=50000`, `BOUNCELENS_DATA_DIR=/var/lib/x`.
//! Only variables whose first part names a top-level key are read, so other
//! variables that happen to share the prefix are ignored; below a known
//! key, an unknown one is refused like in the file.
//! The value is read as a TOML value when it parses as one (numbers,
//! booleans, `["a","b"]`), else as text. Raw librdkafka settings go under
//! `[kafka.librdkafka]` and are passed through untouched, which is how TLS
//! and SASL are configured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::formats::InputFormat;
use crate::pipeline::{DEFAULT_MAX_RAW_BYTES, FlushPolicy};

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "BOUNCELENS_";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The data root: `deliveries/`, `rejected/`, `summaries/` live here.
    pub data_dir: PathBuf,
    /// The zone of the `date` partition and of report days.
    pub time_zone: String,
    /// A taxonomy file layered over the built-in one.
    pub taxonomy: Option<PathBuf>,
    pub kafka: KafkaConfig,
    pub input: InputConfig,
    pub flush: FlushPolicy,
    pub dead_letter: DeadLetterConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub summary: SummaryConfig,
    pub reports: ReportsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            time_zone: "UTC".to_string(),
            taxonomy: None,
            kafka: KafkaConfig::default(),
            input: InputConfig::default(),
            flush: FlushPolicy::default(),
            dead_letter: DeadLetterConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            summary: SummaryConfig::default(),
            reports: ReportsConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    /// Where a consumer group without committed offsets starts.
    pub auto_offset_reset: String,
    /// Raw librdkafka settings, passed through (TLS, SASL, timeouts).
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_string(),
            topics: vec!["mail-delivery-logs".to_string()],
            group_id: "bouncelens".to_string(),
            auto_offset_reset: "earliest".to_string(),
            librdkafka: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    pub format: InputFormat,
    /// Messages larger than this are dead-lettered.
    pub max_record_bytes: usize,
    /// A file mapping sender addresses or domains to organisations.
    pub org_map: Option<PathBuf>,
    pub null_sender_org: String,
    pub unknown_sender_org: String,
    /// Zone of syslog stamps, which carry none.
    pub syslog_time_zone: String,
    /// Year of syslog stamps; unset infers it from the receive time.
    pub syslog_year: Option<i32>,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            format: InputFormat::Auto,
            max_record_bytes: 1024 * 1024,
            org_map: None,
            null_sender_org: "_system".to_string(),
            unknown_sender_org: "_unknown".to_string(),
            syslog_time_zone: "UTC".to_string(),
            syslog_year: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// A Kafka topic that also receives every dead letter (raw bytes as
    /// the value, the reason and source in headers). Empty: table only.
    pub topic: String,
    /// Raw bytes kept per dead letter in the `rejected` table.
    pub max_raw_bytes: usize,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        Self { topic: String::new(), max_raw_bytes: DEFAULT_MAX_RAW_BYTES }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`; empty disables.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9898".to_string() }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter: `info`, `bouncelens=debug`, ...
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: "text".to_string(), level: "info".to_string() }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SummaryConfig {
    /// Whether `run` writes yesterday's summaries itself.
    pub enabled: bool,
    /// Cron expression (5 fields) in `time_zone`.
    pub cron: String,
    pub time_zone: String,
}

impl Default for SummaryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cron: "0 1 * * *".to_string(),
            time_zone: "UTC".to_string(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// A folder of user `.sql` reports, added to the built-in ones.
    pub dir: Option<PathBuf>,
}

/// A configuration problem, said so a person can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// Reads `path` (or the defaults), then applies the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &vars)
    }

    pub fn load_with_env(
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let (text, origin) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?,
                p.display().to_string(),
            ),
            None => (String::new(), "(defaults)".to_string()),
        };
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| {
            ConfigError::Parse { path: origin.clone(), message: e.to_string() }
        })?;
        // Only variables naming a known top-level key are overrides; others
        // sharing the prefix (Kubernetes injects BOUNCELENS_SERVICE_HOST for
        // a Service called `bouncelens`) are not ours and are left alone.
        let known =
            toml::Table::try_from(Config::default()).expect("the defaults serialize");
        let mut overrides: Vec<&str> = Vec::new();
        for (var, value) in env {
            let Some(key) = var.strip_prefix(ENV_PREFIX) else { continue };
            let first = key.split("__").next().unwrap_or_default().to_ascii_lowercase();
            if !known.contains_key(&first) && first != "taxonomy" {
                continue;
            }
            apply_env(&mut table, var, key, value)?;
            overrides.push(var);
        }
        let config: Config =
            toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
                let origin = if overrides.is_empty() {
                    origin.clone()
                } else {
                    format!(
                        "{origin} with the environment overrides {}",
                        overrides.join(", ")
                    )
                };
                ConfigError::Parse { path: origin, message: e.to_string() }
            })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.zone()?;
        parse_zone("input.syslog_time_zone", &self.input.syslog_time_zone)?;
        parse_zone("summary.time_zone", &self.summary.time_zone)?;
        if self.kafka.topics.is_empty()
            || self.kafka.topics.iter().any(|t| t.trim().is_empty())
        {
            return Err(ConfigError::Invalid {
                key: "kafka.topics",
                message: "list at least one topic, none empty".to_string(),
            });
        }
        if self.flush.max_rows == 0 || self.flush.max_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "flush",
                message: "max_rows and max_bytes must be above zero".to_string(),
            });
        }
        if !matches!(
            self.kafka.auto_offset_reset.as_str(),
            "earliest"
                | "latest"
                | "smallest"
                | "largest"
                | "beginning"
                | "end"
                | "error"
        ) {
            return Err(ConfigError::Invalid {
                key: "kafka.auto_offset_reset",
                message: format!(
                    "{:?} is not `earliest`, `latest` or `error`",
                    self.kafka.auto_offset_reset
                ),
            });
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::Invalid {
                key: "metrics.listen",
                message: format!(
                    "{:?} is not an address such as `127.0.0.1:9898` or `0.0.0.0:9898` (empty disables)",
                    self.metrics.listen
                ),
            });
        }
        if self.input.max_record_bytes == 0 || self.dead_letter.max_raw_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "input.max_record_bytes",
                message: "input.max_record_bytes and dead_letter.max_raw_bytes must be above zero"
                    .to_string(),
            });
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::Invalid {
                key: "log.level",
                message: format!(
                    "{:?} is not a log filter such as `info` or `bouncelens=debug`: {e}",
                    self.log.level
                ),
            });
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid {
                key: "log.format",
                message: format!("{:?} is not `text` or `json`", self.log.format),
            });
        }
        crate::schedule::parse_cron(&self.summary.cron)
            .map_err(|message| ConfigError::Invalid { key: "summary.cron", message })?;
        Ok(())
    }

    /// The time zone of the `date` partition.
    pub fn zone(&self) -> Result<Tz, ConfigError> {
        parse_zone("time_zone", &self.time_zone)
    }

    /// The effective configuration as TOML, with secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut masked = self.clone();
        for (key, value) in masked.kafka.librdkafka.iter_mut() {
            if is_secret(key) {
                *value = "********".to_string();
            }
        }
        toml::to_string_pretty(&masked).expect("the config serializes")
    }
}

/// Whether a librdkafka setting holds a secret.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "key.pem", "token", "sasl.oauthbearer.config", "ssl.key"]
        .iter()
        .any(|s| k.contains(s))
}

pub fn parse_zone(key: &'static str, name: &str) -> Result<Tz, ConfigError> {
    name.parse::<Tz>().map_err(|_| ConfigError::Invalid {
        key,
        message: format!(
            "{name:?} is not an IANA time zone such as `UTC` or `Asia/Shanghai`"
        ),
    })
}

fn apply_env(
    table: &mut toml::Table,
    var: &str,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let path: Vec<String> = key.split("__").map(|p| p.to_ascii_lowercase()).collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            var: var.to_string(),
            message: "expected BOUNCELENS_SECTION__KEY".to_string(),
        });
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut node = table;
    for part in &path[..path.len() - 1] {
        let entry = node
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.to_string(),
            message: format!("`{part}` is not a section"),
        })?;
    }
    // librdkafka's property names are lower case words joined by dots,
    // which shells do not allow in variable names: underscores stand for the
    // dots (BOUNCELENS_KAFKA__LIBRDKAFKA__SASL_PASSWORD is sasl.password).
    let mut last = path.last().expect("non-empty").clone();
    if path.len() == 3 && path[0] == "kafka" && path[1] == "librdkafka" {
        last = last.replace('_', ".");
    }
    let value = match (&parsed, path.first().map(String::as_str)) {
        (toml::Value::String(_), _) => parsed,
        (_, Some("kafka")) if path.get(1).map(String::as_str) == Some("librdkafka") => {
            toml::Value::String(value.to_string())
        }
        (_, Some("kafka")) if last == "brokers" || last == "group_id" => {
            toml::Value::String(value.to_string())
        }
        _ => parsed,
    };
    node.insert(last, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load_with_env(Some(&path), &env)
    }

    #[test]
    fn environment_overrides_file_values() {
        let c = load(
            "[kafka]\nbrokers = \"a:1\"\n",
            &[("BOUNCELENS_KAFKA__BROKERS", "b:2"), ("BOUNCELENS_FLUSH__MAX_ROWS", "5")],
        )
        .unwrap();
        assert_eq!(c.kafka.brokers, "b:2");
        assert_eq!(c.flush.max_rows, 5);
        let c =
            load("", &[("BOUNCELENS_KAFKA__LIBRDKAFKA__SASL_PASSWORD", "pw")]).unwrap();
        assert_eq!(
            c.kafka.librdkafka.get("sasl.password").map(String::as_str),
            Some("pw")
        );
        let err =
            load("", &[("BOUNCELENS_FLUSH__MAX_ROWZ", "5")]).unwrap_err().to_string();
        assert!(err.contains("BOUNCELENS_FLUSH__MAX_ROWZ"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = load("[kafka]\nbrokerz = \"a:1\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("brokerz"), "{err}");
        let err =
            load("", &[("BOUNCELENS_FLUSH__MAX_ROWZ", "1")]).unwrap_err().to_string();
        assert!(err.contains("max_rowz"), "{err}");
    }

    #[test]
    fn unrelated_variables_with_the_prefix_are_ignored() {
        let c = load(
            "",
            &[
                ("BOUNCELENS_SERVICE_HOST", "10.0.0.1"),
                ("BOUNCELENS_PORT_9898_TCP", "tcp://10.0.0.1:9898"),
                ("BOUNCELENS_CACHE", "/root/.cache"),
                ("BOUNCELENS_TIME_ZONE", "Asia/Shanghai"),
            ],
        )
        .unwrap();
        assert_eq!(c.time_zone, "Asia/Shanghai");
    }

    #[test]
    fn secrets_are_masked() {
        let c = load(
            "[kafka.librdkafka]\n\"sasl.password\" = \"hunter2\"\n\"security.protocol\" = \"SASL_SSL\"\n",
            &[],
        )
        .unwrap();
        let shown = c.to_masked_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("SASL_SSL"), "{shown}");
    }

    #[test]
    fn bad_values_say_which_key() {
        for (text, key) in [
            ("time_zone = \"Mars/Olympus\"\n", "time_zone"),
            ("[kafka]\nauto_offset_reset = \"middle\"\n", "kafka.auto_offset_reset"),
            ("[metrics]\nlisten = \"nonsense\"\n", "metrics.listen"),
            ("[input]\nmax_record_bytes = 0\n", "input.max_record_bytes"),
            ("[log]\nlevel = \"bogus==\"\n", "log.level"),
        ] {
            let err = load(text, &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
