//! Throughput of the log pipeline: runs an app whose output goes through a `LogHub` to pmi's
//! own stdout, and prints the time taken on stderr.
//!
//! ```sh
//! cargo build --release --example logbench
//! time (cat lines.txt | cat > /dev/null)                          # baseline
//! target/release/examples/logbench prefixed cat lines.txt > /dev/null
//! ```

use std::os::fd::OwnedFd;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pmi::config::{LogFiles, LogFormat};
use pmi::logs::{LogHub, LogSource};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (format, cmd) = match args.split_first() {
        Some((f, cmd)) if !cmd.is_empty() => (f.as_str(), cmd),
        _ => {
            eprintln!("usage: logbench raw|prefixed|json CMD [ARG]...");
            return ExitCode::from(2);
        }
    };
    let format = match format {
        "raw" => LogFormat::Raw,
        "prefixed" => LogFormat::Prefixed,
        "json" => LogFormat::Json,
        other => {
            eprintln!("unknown format {other}");
            return ExitCode::from(2);
        }
    };
    match run(format, cmd) {
        Ok(took) => {
            eprintln!("logbench {format:?}: {:.3} s", took.as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("logbench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(format: LogFormat, cmd: &[String]) -> std::io::Result<Duration> {
    let start = Instant::now();
    let (out_r, out_w): (OwnedFd, OwnedFd) = nix::unistd::pipe()?;
    let (err_r, err_w): (OwnedFd, OwnedFd) = nix::unistd::pipe()?;
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .spawn()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let hub = LogHub::new(format);
    rt.block_on(async {
        let src = LogSource {
            app: Arc::from("bench"),
            pm_id: 0,
            instance: 0,
            instances: 1,
            files: LogFiles::default(),
        };
        hub.attach(src, out_r, err_r);
        hub.drain(Duration::from_secs(3600)).await;
    });
    child.wait()?;
    Ok(start.elapsed())
}
