//! Configuration every service shares (docs/contract.md section 2), read from the
//! environment through a small seam so it can be tested without touching
//! the process environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Where configuration comes from: the process environment in `main`, a
/// map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| (*v).to_owned())
    }
}

/// A variable that is set but unusable. `main` prints it and exits 64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self {
            var,
            message: message.into(),
        }
    }
}

/// How the service authenticates to NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    None,
    Credentials(PathBuf),
    UserPassword { user: String, password: String },
}

/// A client certificate and its key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsClient {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL`: the two transports built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    Grpc,
}

/// `OTEL_EXPORTER_OTLP_COMPRESSION`: how export requests are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpCompression {
    None,
    Gzip,
}

/// Trace export over OTLP. The exporter and the batch processor read the
/// standard variables themselves (`OTEL_EXPORTER_OTLP_*`, `OTEL_BSP_*`,
/// `OTEL_TRACES_SAMPLER*`, `OTEL_RESOURCE_ATTRIBUTES`); they are checked
/// here so that a typo stops the service with a clear message instead of
/// being ignored, as the SDK would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpExport {
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`:
    /// `http://` or `https://` (TLS, trusting the system's CA certificates).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, else
    /// `OTEL_EXPORTER_OTLP_COMPRESSION`; `none` by default.
    pub compression: OtlpCompression,
}

impl OtlpExport {
    /// Whether the endpoint is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.endpoint.starts_with("https://")
    }
}

/// The settings of docs/contract.md section 2 that every service has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonConfig {
    /// `OTEL_SERVICE_NAME`, defaulting to the binary's name.
    pub service_name: String,
    pub nats_urls: Vec<String>,
    pub nats_auth: NatsAuth,
    /// `NATS_TLS_CA`: when set, the connection requires TLS and trusts
    /// this CA.
    pub nats_tls_ca: Option<PathBuf>,
    /// `NATS_TLS_CERT` and `NATS_TLS_KEY`: a client certificate, for
    /// servers that verify their clients (mutual TLS).
    pub nats_tls_client: Option<TlsClient>,
    pub http_addr: SocketAddr,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// Where traces go: `None` when no OTLP endpoint is set (or
    /// `OTEL_SDK_DISABLED=true`), and then nothing is exported.
    pub otlp: Option<OtlpExport>,
    pub stream_replicas: usize,
    pub shutdown_grace: Duration,
    /// `SAGA_HISTORY_RETENTION_SECONDS`: how long what a saga leaves is
    /// kept (its records, the participants' facts about its order, the
    /// order's superseded events), each counted from when it was written.
    pub retention: Duration,
}

impl CommonConfig {
    /// Reads the common settings; `binary` and `default_http_addr` are the
    /// service's own defaults.
    pub fn from_env(
        env: &impl Env,
        binary: &str,
        default_http_addr: &str,
    ) -> Result<Self, ConfigError> {
        let nats_urls = parse_urls(
            &env.var("NATS_URL")
                .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned()),
        )?;
        let nats_auth = match (
            env.var("NATS_CREDS"),
            env.var("NATS_USER"),
            env.var("NATS_PASSWORD"),
        ) {
            (Some(_), Some(_), _) => {
                return Err(ConfigError::new(
                    "NATS_CREDS",
                    "set either NATS_CREDS or NATS_USER and NATS_PASSWORD, not both",
                ))
            }
            (Some(path), None, _) => NatsAuth::Credentials(existing_file("NATS_CREDS", path)?),
            (None, Some(user), Some(password)) => NatsAuth::UserPassword { user, password },
            (None, Some(_), None) => {
                return Err(ConfigError::new(
                    "NATS_PASSWORD",
                    "must be set when NATS_USER is",
                ))
            }
            (None, None, Some(_)) => {
                return Err(ConfigError::new(
                    "NATS_USER",
                    "must be set when NATS_PASSWORD is",
                ))
            }
            (None, None, None) => NatsAuth::None,
        };
        let nats_tls_ca = env
            .var("NATS_TLS_CA")
            .map(|path| existing_file("NATS_TLS_CA", path))
            .transpose()?;
        let nats_tls_client = match (env.var("NATS_TLS_CERT"), env.var("NATS_TLS_KEY")) {
            (Some(cert), Some(key)) => Some(TlsClient {
                cert: existing_file("NATS_TLS_CERT", cert)?,
                key: existing_file("NATS_TLS_KEY", key)?,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "NATS_TLS_KEY",
                    "must be set when NATS_TLS_CERT is",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "NATS_TLS_CERT",
                    "must be set when NATS_TLS_KEY is",
                ))
            }
        };
        let log_format = match env.var("LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("must be json or text, got {other:?}"),
                ))
            }
        };
        let stream_replicas = parse_or(env, "STREAM_REPLICAS", 1usize)?;
        if !(1..=5).contains(&stream_replicas) {
            return Err(ConfigError::new(
                "STREAM_REPLICAS",
                "must be between 1 and 5",
            ));
        }
        let grace_seconds = parse_or(env, "SHUTDOWN_GRACE_SECONDS", 25u64)?;
        if grace_seconds == 0 {
            return Err(ConfigError::new(
                "SHUTDOWN_GRACE_SECONDS",
                "must be positive",
            ));
        }
        let retention_seconds = parse_or(env, "SAGA_HISTORY_RETENTION_SECONDS", 604_800u64)?;
        if retention_seconds == 0 {
            return Err(ConfigError::new(
                "SAGA_HISTORY_RETENTION_SECONDS",
                "must be positive",
            ));
        }
        Ok(Self {
            service_name: env
                .var("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| binary.to_owned()),
            nats_urls,
            nats_auth,
            nats_tls_ca,
            nats_tls_client,
            http_addr: parse_or(
                env,
                "HTTP_ADDR",
                default_http_addr.parse().expect("valid default"),
            )?,
            log_format,
            log_filter: log_filter(env)?,
            otlp: otlp_export(env)?,
            stream_replicas,
            shutdown_grace: Duration::from_secs(grace_seconds),
            retention: Duration::from_secs(retention_seconds),
        })
    }
}

fn otlp_export(env: &impl Env) -> Result<Option<OtlpExport>, ConfigError> {
    let set = |name: &str| env.var(name).filter(|v| !v.trim().is_empty());
    match set("OTEL_TRACES_SAMPLER").as_deref() {
        None
        | Some("always_on" | "always_off" | "parentbased_always_on" | "parentbased_always_off") => {
        }
        Some("traceidratio" | "parentbased_traceidratio") => {
            let arg = set("OTEL_TRACES_SAMPLER_ARG").unwrap_or_else(|| "1.0".to_owned());
            match arg.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => {}
                _ => {
                    return Err(ConfigError::new(
                        "OTEL_TRACES_SAMPLER_ARG",
                        format!("must be a ratio between 0 and 1, got {arg:?}"),
                    ))
                }
            }
        }
        Some(other) => {
            return Err(ConfigError::new(
                "OTEL_TRACES_SAMPLER",
                format!(
                    "must be always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off or parentbased_traceidratio, got {other:?}"
                ),
            ))
        }
    }
    for name in [
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_EXPORT_TIMEOUT",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    ] {
        if let Some(raw) = set(name) {
            if !matches!(raw.trim().parse::<u64>(), Ok(n) if n > 0) {
                return Err(ConfigError::new(
                    name,
                    format!("must be a positive whole number, got {raw:?}"),
                ));
            }
        }
    }
    let protocol_var = if set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").is_some() {
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    } else {
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    };
    let protocol = match set(protocol_var).as_deref().map(str::trim) {
        None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
        Some("grpc") => OtlpProtocol::Grpc,
        Some(other) => {
            return Err(ConfigError::new(
                protocol_var,
                format!("must be http/protobuf or grpc, got {other:?}"),
            ))
        }
    };
    let compression_var = if set("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION").is_some() {
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"
    } else {
        "OTEL_EXPORTER_OTLP_COMPRESSION"
    };
    let compression = match set(compression_var).map(|v| v.trim().to_ascii_lowercase()) {
        None => OtlpCompression::None,
        Some(v) if v == "none" => OtlpCompression::None,
        Some(v) if v == "gzip" => OtlpCompression::Gzip,
        Some(other) => {
            return Err(ConfigError::new(
                compression_var,
                format!("must be gzip or none, got {other:?}"),
            ))
        }
    };
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let endpoint_var = if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    } else {
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    };
    let Some(endpoint) = set(endpoint_var) else {
        return Ok(None);
    };
    let endpoint = endpoint.trim().to_owned();
    let host = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or("");
    if host.is_empty() || host.starts_with('/') {
        return Err(ConfigError::new(
            endpoint_var,
            format!(
                "must be an http:// or https:// URL such as http://collector:4318, got {endpoint:?}"
            ),
        ));
    }
    Ok(Some(OtlpExport {
        endpoint,
        protocol,
        compression,
    }))
}

/// Parses `name` when it is set, or gives `default`.
pub fn parse_or<T>(env: &impl Env, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match env.var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}"))),
    }
}

fn log_filter(env: &impl Env) -> Result<String, ConfigError> {
    let filter = env.var("RUST_LOG").unwrap_or_else(|| "info".to_owned());
    tracing_subscriber::EnvFilter::try_new(&filter)
        .map(|_| filter.clone())
        .map_err(|e| ConfigError::new("RUST_LOG", format!("not a tracing filter: {e}")))
}

fn parse_urls(raw: &str) -> Result<Vec<String>, ConfigError> {
    let urls: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        return Err(ConfigError::new("NATS_URL", "no server URL given"));
    }
    for url in &urls {
        if url.parse::<async_nats::ServerAddr>().is_err() {
            return Err(ConfigError::new(
                "NATS_URL",
                format!("not a NATS URL: {url:?}"),
            ));
        }
    }
    Ok(urls)
}

fn existing_file(var: &'static str, path: String) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(path);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ConfigError::new(
            var,
            format!("no such file: {}", path.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&'static str, &'static str)]) -> Result<CommonConfig, ConfigError> {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        CommonConfig::from_env(&env, "order-service", "0.0.0.0:8081")
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.nats_urls, ["nats://127.0.0.1:4222"]);
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:8081");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.service_name, "order-service");
        assert_eq!(c.stream_replicas, 1);
        assert_eq!(c.shutdown_grace, Duration::from_secs(25));
        assert_eq!(c.retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.nats_auth, NatsAuth::None);
        assert!(c.otlp.is_none());
    }

    #[test]
    fn a_cluster_is_a_comma_separated_list() {
        let c = config(&[("NATS_URL", "nats://a:4222, nats://b:4222")]).unwrap();
        assert_eq!(c.nats_urls, ["nats://a:4222", "nats://b:4222"]);
    }

    #[test]
    fn every_bad_variable_is_named() {
        for (var, value) in [
            ("HTTP_ADDR", "not an address"),
            ("LOG_FORMAT", "xml"),
            ("STREAM_REPLICAS", "0"),
            ("STREAM_REPLICAS", "three"),
            ("SHUTDOWN_GRACE_SECONDS", "-1"),
            ("SAGA_HISTORY_RETENTION_SECONDS", "0"),
            ("SAGA_HISTORY_RETENTION_SECONDS", "7d"),
            ("NATS_URL", "http://[::1"),
            ("NATS_CREDS", "/no/such/file.creds"),
            ("NATS_TLS_CA", "/no/such/ca.pem"),
            ("RUST_LOG", "info,=[bad"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "deflate"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{var}={value} gave {err}");
            assert!(err.to_string().contains(var));
        }
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_both_must_exist() {
        assert_eq!(
            config(&[("NATS_TLS_CERT", "/etc/hostname")])
                .unwrap_err()
                .var,
            "NATS_TLS_KEY"
        );
        assert_eq!(
            config(&[("NATS_TLS_KEY", "/etc/hostname")])
                .unwrap_err()
                .var,
            "NATS_TLS_CERT"
        );
        assert_eq!(
            config(&[
                ("NATS_TLS_CERT", "/no/such/cert.pem"),
                ("NATS_TLS_KEY", "/etc/hostname")
            ])
            .unwrap_err()
            .var,
            "NATS_TLS_CERT"
        );
        let c = config(&[
            ("NATS_TLS_CERT", "/etc/hostname"),
            ("NATS_TLS_KEY", "/etc/hostname"),
        ])
        .unwrap();
        assert!(c.nats_tls_client.is_some());
    }

    #[test]
    fn a_user_needs_a_password() {
        assert_eq!(
            config(&[("NATS_USER", "u")]).unwrap_err().var,
            "NATS_PASSWORD"
        );
        let c = config(&[("NATS_USER", "u"), ("NATS_PASSWORD", "p")]).unwrap();
        assert!(matches!(c.nats_auth, NatsAuth::UserPassword { .. }));
    }

    #[test]
    fn trace_export_follows_the_standard_variables() {
        // Compose passes an unset variable as an empty one.
        assert!(config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])
            .unwrap()
            .otlp
            .is_none());
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]).unwrap();
        assert_eq!(
            c.otlp,
            Some(OtlpExport {
                endpoint: "http://collector:4318".into(),
                protocol: OtlpProtocol::HttpProtobuf,
                compression: OtlpCompression::None,
            })
        );
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://jaeger:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ])
        .unwrap();
        let otlp = c.otlp.unwrap();
        assert_eq!(
            otlp.endpoint, "http://jaeger:4317",
            "the signal's own variable wins"
        );
        assert_eq!(otlp.protocol, OtlpProtocol::Grpc);
        let off = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .unwrap();
        assert!(off.otlp.is_none());
    }

    #[test]
    fn https_endpoints_are_exported_to_over_tls() {
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otlp.vendor.example")]).unwrap();
        let otlp = c.otlp.unwrap();
        assert_eq!(otlp.endpoint, "https://otlp.vendor.example");
        assert!(otlp.is_tls());
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]).unwrap();
        assert!(!c.otlp.unwrap().is_tls());
    }

    #[test]
    fn compression_is_gzip_or_none() {
        let compression = |vars: &[(&'static str, &'static str)]| {
            let mut vars = vars.to_vec();
            vars.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"));
            config(&vars).map(|c| c.otlp.unwrap().compression)
        };
        assert_eq!(compression(&[]), Ok(OtlpCompression::None));
        assert_eq!(
            compression(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]),
            Ok(OtlpCompression::Gzip)
        );
        assert_eq!(
            compression(&[("OTEL_EXPORTER_OTLP_COMPRESSION", " GZIP ")]),
            Ok(OtlpCompression::Gzip)
        );
        assert_eq!(
            compression(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "none")]),
            Ok(OtlpCompression::None)
        );
        assert_eq!(
            compression(&[
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
            ]),
            Ok(OtlpCompression::None),
            "the signal's own variable wins"
        );
        let err = compression(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]).unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_COMPRESSION");
        assert!(err.to_string().contains("gzip or none"), "{err}");
        // Checked even when nothing is exported, like the other settings.
        let err = config(&[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "br")]).unwrap_err();
        assert_eq!(err.var, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION");
    }

    #[test]
    fn samplers_are_checked() {
        for ok in [
            vec![("OTEL_TRACES_SAMPLER", "parentbased_always_on")],
            vec![
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ],
        ] {
            assert!(config(&ok).is_ok(), "{ok:?}");
        }
        let err = config(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OTEL_TRACES_SAMPLER_ARG");
    }
}
