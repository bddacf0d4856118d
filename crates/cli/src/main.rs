//! `container`: the command line. It talks only to the apiserver.

mod client;
mod output;
mod system;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use container_store::paths::{self, Paths};
use output::Format;

#[derive(Parser)]
#[command(name = "container", version, about = "Run containers on Linux")]
struct Cli {
    /// State root (passed on to an apiserver started by `system start`).
    #[arg(long, global = true, env = paths::ROOT_ENV, default_value = paths::DEFAULT_ROOT)]
    root: PathBuf,
    /// Runtime directory holding the apiserver socket.
    #[arg(long = "run-dir", global = true, env = paths::RUN_DIR_ENV, default_value = paths::DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the apiserver.
    System {
        #[command(subcommand)]
        command: SystemCommand,
    },
}

#[derive(Subcommand)]
enum SystemCommand {
    /// Start the apiserver (detached) unless it is running, and wait until it answers.
    Start,
    /// Stop every helper, then the apiserver.
    Stop,
    /// Show the apiserver and its live helpers.
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("container: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("container: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let paths = Paths::new(cli.root, cli.run_dir);
    match cli.command {
        Command::System { command } => match command {
            SystemCommand::Start => system::start(&paths).await?,
            SystemCommand::Stop => system::stop(&paths).await?,
            SystemCommand::Status { format } => system::status(&paths, format).await?,
        },
    }
    Ok(ExitCode::SUCCESS)
}
