//! The command line of a service binary: `--help` (what the binary is, and
//! the environment variables that configure it, with their defaults) and
//! `--version`. A service is configured by its environment only
//! (docs/contract.md, section 2), so any other argument is a usage error:
//! exit 64 (`EX_USAGE`), the code of every invalid configuration.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;

use crate::service::EXIT_CONFIG;

/// What `--help` and `--version` say about a service binary.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    pub name: &'static str,
    pub version: &'static str,
    /// One sentence: what the service does.
    pub about: &'static str,
    /// The service's default `HTTP_ADDR`.
    pub http_addr: &'static str,
    /// The variables of this service alone; those every service shares are
    /// listed with them.
    pub vars: &'static [Var],
}

/// An environment variable, as `--help` lists it.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    pub default: Fallback,
    pub meaning: &'static str,
}

impl Var {
    pub const fn new(name: &'static str, default: Fallback, meaning: &'static str) -> Self {
        Self {
            name,
            default,
            meaning,
        }
    }
}

/// What a variable is when it is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// This value: setting the variable to it changes nothing.
    Value(&'static str),
    /// Nothing: the feature is off.
    Unset,
    /// Said in words (such as "the binary's name").
    Described(&'static str),
}

/// The variables every service reads, in two parts around `HTTP_ADDR`,
/// whose default is each service's own: the NATS connection...
const CONNECTION: &[Var] = &[
    Var::new(
        "NATS_URL",
        Fallback::Value("nats://127.0.0.1:4222"),
        "NATS server URL, or a comma-separated list (cluster)",
    ),
    Var::new("NATS_CREDS", Fallback::Unset, "NATS credentials file"),
    Var::new(
        "NATS_USER",
        Fallback::Unset,
        "NATS user (with NATS_PASSWORD), instead of NATS_CREDS",
    ),
    Var::new("NATS_PASSWORD", Fallback::Unset, "NATS password"),
    Var::new(
        "NATS_TLS_CA",
        Fallback::Unset,
        "CA file: when set, the NATS connection requires TLS",
    ),
];

/// ...and the rest.
const COMMON: &[Var] = &[
    Var::new("LOG_FORMAT", Fallback::Value("json"), "json or text"),
    Var::new(
        "RUST_LOG",
        Fallback::Value("info"),
        "tracing filter of the logs",
    ),
    Var::new(
        "STREAM_REPLICAS",
        Fallback::Value("1"),
        "replicas of the streams and buckets it creates (3 on a cluster)",
    ),
    Var::new(
        "SHUTDOWN_GRACE_SECONDS",
        Fallback::Value("25"),
        "time to finish in-flight work after SIGTERM or SIGINT",
    ),
    Var::new(
        "OTEL_SERVICE_NAME",
        Fallback::Described("the binary's name"),
        "service.name of its spans",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        Fallback::Unset,
        "http:// or https:// URL to export traces to over OTLP; unset: no export",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        Fallback::Value("http/protobuf"),
        "http/protobuf or grpc",
    ),
    Var::new(
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        Fallback::Value("none"),
        "gzip or none",
    ),
    Var::new(
        "OTEL_TRACES_SAMPLER",
        Fallback::Value("parentbased_always_on"),
        "which traces are kept (OTEL_TRACES_SAMPLER_ARG: the ratio)",
    ),
];

/// What the arguments ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run,
    Help,
    Version,
    /// An argument the binary does not take.
    Unknown(String),
}

/// Reads the arguments (without the program's name). `--help` wins over
/// `--version`, as in most tools; any other argument is unknown.
pub fn action<I: IntoIterator<Item = OsString>>(args: I) -> Action {
    let args: Vec<OsString> = args.into_iter().collect();
    let given = |flags: [&str; 2]| args.iter().any(|a| flags.iter().any(|f| a == f));
    if given(["--help", "-h"]) {
        Action::Help
    } else if given(["--version", "-V"]) {
        Action::Version
    } else {
        match args.first() {
            None => Action::Run,
            Some(arg) => Action::Unknown(arg.to_string_lossy().into_owned()),
        }
    }
}

/// Answers `--help` and `--version` (exit 0) or an unknown argument (exit
/// 64) from the process's arguments; returns when there are none. Call it
/// first thing in `main`.
pub fn handle_args(binary: &Binary) {
    match action(std::env::args_os().skip(1)) {
        Action::Run => {}
        Action::Help => {
            print!("{}", help(binary));
            std::process::exit(0);
        }
        Action::Version => {
            println!("{} {}", binary.name, binary.version);
            std::process::exit(0);
        }
        Action::Unknown(arg) => {
            eprintln!("{}", unknown(binary, &arg));
            std::process::exit(EXIT_CONFIG);
        }
    }
}

/// The one line printed for an argument the binary does not take.
pub fn unknown(binary: &Binary, arg: &str) -> String {
    format!(
        "{name}: unknown argument {arg:?}: it is configured by environment variables \
         (see {name} --help)",
        name = binary.name
    )
}

/// The text of `--help`.
pub fn help(binary: &Binary) -> String {
    let mut out = format!(
        "{name} {version}\n{about}\n\n\
         Usage: {name} [--help | --version]\n\n\
         Configured by the environment (docs/contract.md, section 2); an invalid value\n\
         stops it at start with exit 64 and the variable's name.\n\n\
         Environment:\n",
        name = binary.name,
        version = binary.version,
        about = binary.about,
    );
    for var in vars(binary) {
        let line = match var.default {
            Fallback::Value(value) => format!("{}={value}", var.name),
            Fallback::Unset => format!("{} (unset)", var.name),
            Fallback::Described(text) => format!("{} (default: {text})", var.name),
        };
        let _ = writeln!(out, "  {line}\n      {}", var.meaning);
    }
    out.push_str(
        "\nThe other standard OTEL_* variables (headers, timeouts, batching) are honoured:\n\
         see docs/observability.md.\n",
    );
    out
}

/// Every variable `binary` reads, the shared ones first.
pub fn vars(binary: &Binary) -> Vec<Var> {
    let http = Var::new(
        "HTTP_ADDR",
        Fallback::Value(binary.http_addr),
        "listener of /healthz, /readyz and /metrics",
    );
    CONNECTION
        .iter()
        .copied()
        .chain([http])
        .chain(COMMON.iter().copied())
        .chain(binary.vars.iter().copied())
        .collect()
}

/// For the binary's tests: configures it (`from_env`) from an empty
/// environment and from one that sets every variable to the default
/// `--help` gives it, and says how they differ, if they do.
pub fn check_documented_defaults<C, E>(
    binary: &Binary,
    from_env: impl Fn(&HashMap<&'static str, &'static str>) -> Result<C, E>,
) -> Result<(), String>
where
    C: std::fmt::Debug,
    E: std::fmt::Debug,
{
    let documented = format!("{:?}", from_env(&documented_defaults(binary)));
    let actual = format!("{:?}", from_env(&HashMap::new()));
    if documented == actual {
        Ok(())
    } else {
        Err(format!(
            "--help's defaults give\n  {documented}\nbut the defaults are\n  {actual}"
        ))
    }
}

/// Each variable with a default value, set to it.
fn documented_defaults(binary: &Binary) -> HashMap<&'static str, &'static str> {
    vars(binary)
        .into_iter()
        .filter_map(|var| match var.default {
            Fallback::Value(value) => Some((var.name, value)),
            Fallback::Unset | Fallback::Described(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CommonConfig;

    const BINARY: Binary = Binary {
        name: "order-service",
        version: "1.2.3",
        about: "Owns orders.",
        http_addr: "0.0.0.0:8081",
        vars: &[Var::new(
            "ORDER_CONCURRENCY",
            Fallback::Value("128"),
            "place commands handled at once",
        )],
    };

    fn action_of(args: &[&str]) -> Action {
        action(args.iter().map(OsString::from))
    }

    #[test]
    fn no_argument_runs_the_service() {
        assert_eq!(action_of(&[]), Action::Run);
    }

    #[test]
    fn help_and_version_have_long_and_short_forms() {
        assert_eq!(action_of(&["--help"]), Action::Help);
        assert_eq!(action_of(&["-h"]), Action::Help);
        assert_eq!(action_of(&["--version"]), Action::Version);
        assert_eq!(action_of(&["-V"]), Action::Version);
        assert_eq!(action_of(&["--version", "--help"]), Action::Help);
    }

    #[test]
    fn any_other_argument_is_unknown() {
        assert_eq!(
            action_of(&["--port", "80"]),
            Action::Unknown("--port".into())
        );
        assert_eq!(action_of(&["help"]), Action::Unknown("help".into()));
        let line = unknown(&BINARY, "--port");
        assert!(line.starts_with("order-service: unknown argument \"--port\""));
        assert!(line.contains("order-service --help"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn help_lists_every_variable_with_its_default() {
        let text = help(&BINARY);
        assert!(text.starts_with("order-service 1.2.3\nOwns orders.\n"));
        for line in [
            "  NATS_URL=nats://127.0.0.1:4222\n",
            "  HTTP_ADDR=0.0.0.0:8081\n",
            "  OTEL_EXPORTER_OTLP_ENDPOINT (unset)\n",
            "  OTEL_SERVICE_NAME (default: the binary's name)\n",
            "  ORDER_CONCURRENCY=128\n      place commands handled at once\n",
        ] {
            assert!(text.contains(line), "{line:?} in:\n{text}");
        }
        assert_eq!(
            vars(&BINARY)
                .iter()
                .filter(|v| text.contains(&format!("  {}", v.name)))
                .count(),
            CONNECTION.len() + COMMON.len() + 2
        );
    }

    #[test]
    fn the_shared_defaults_are_the_configuration_s() {
        assert!(documented_defaults(&BINARY).contains_key("SHUTDOWN_GRACE_SECONDS"));
        let common = |env: &HashMap<&str, &str>| {
            CommonConfig::from_env(env, "order-service", "0.0.0.0:8081")
        };
        check_documented_defaults(&BINARY, common).unwrap();
    }

    #[test]
    fn a_wrong_default_is_caught() {
        let wrong = Binary {
            http_addr: "0.0.0.0:9999",
            ..BINARY
        };
        let common = |env: &HashMap<&str, &str>| {
            CommonConfig::from_env(env, "order-service", "0.0.0.0:8081")
        };
        let err = check_documented_defaults(&wrong, common).unwrap_err();
        assert!(err.contains("9999"), "{err}");
    }
}
