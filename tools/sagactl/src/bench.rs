//! `sagactl bench`: the benchmark lives in its own binary, `jetsaga-bench`,
//! built beside `sagactl`; this runs it with the same arguments.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context;

/// Runs `jetsaga-bench ARGS` (with `--json` when sagactl was given it) and
/// exits as it did.
pub fn run(args: &[OsString], json: bool) -> anyhow::Result<ExitCode> {
    let bench = launcher::binary("jetsaga-bench")?;
    let mut command = std::process::Command::new(&bench);
    if json {
        command.arg("--json");
    }
    let status = command
        .args(args)
        .status()
        .with_context(|| format!("running {}", bench.display()))?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // Killed by a signal.
        None => ExitCode::FAILURE,
    })
}
