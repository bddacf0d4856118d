//! `container`: the command line. It talks only to the apiserver.

mod attach;
mod client;
mod completion;
mod config_file;
mod container;
mod events;
mod health;
mod image;
mod logs;
mod network;
mod output;
mod resources;
mod security;
mod stats;
mod system;
mod volume;
mod when;

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
    /// Manage networks.
    Network {
        #[command(subcommand)]
        command: network::NetworkCommand,
    },
    /// Manage images.
    #[command(alias = "images")]
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Manage volumes.
    Volume {
        #[command(subcommand)]
        command: volume::VolumeCommand,
    },
    /// Pull an image (as `image pull`).
    Pull(image::PullArgs),
    /// Log in to and out of registries.
    Registry {
        #[command(subcommand)]
        command: image::RegistryCommand,
    },
    /// Create and start a container; attached unless -d.
    Run {
        /// Run in the background and print the container's id.
        #[arg(short = 'd', long)]
        detach: bool,
        #[command(flatten)]
        args: container::CreateArgs,
    },
    /// Create a container without starting it.
    Create {
        #[command(flatten)]
        args: container::CreateArgs,
    },
    /// Start created or stopped containers.
    Start {
        /// Attach stdout/stderr and wait (one container).
        #[arg(short = 'a', long)]
        attach: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Stop containers: a signal, then SIGKILL after the grace time.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        /// Default: the image's StopSignal, else SIGTERM.
        #[arg(short = 's', long = "signal")]
        signal: Option<String>,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Send a signal to containers.
    Kill {
        #[arg(short = 's', long = "signal", default_value = "SIGKILL")]
        signal: String,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove containers.
    #[command(alias = "remove")]
    Rm {
        /// Kill running containers first.
        #[arg(short = 'f', long)]
        force: bool,
        /// Remove the containers' anonymous volumes too.
        #[arg(short = 'v', long = "volumes")]
        volumes: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List containers.
    #[command(alias = "ps", alias = "list")]
    Ls {
        /// Include stopped and created containers.
        #[arg(short = 'a', long)]
        all: bool,
        /// Only ids.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Show long cells whole (a table cuts them to 40 characters).
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show containers' configuration and state as JSON.
    Inspect {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print a detached container's output.
    Logs {
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(short = 'n', long = "tail")]
        tail: Option<usize>,
        id: String,
    },
    /// Print a shell completion script (bash and fish also complete names by asking
    /// the apiserver): `container completion bash > /etc/bash_completion.d/container`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Names for completion scripts, one per line.
    #[command(name = "__complete", hide = true)]
    CompleteNames {
        #[arg(value_enum)]
        kind: completion::Kind,
    },
    /// Writes the man pages into DIR (`cargo xtask man` runs it).
    #[command(name = "__man", hide = true)]
    Man { dir: PathBuf },
    /// Print lifecycle events (create, start, die, destroy, …) as they happen.
    Events {
        /// Also those since this time: seconds since the epoch, a duration back from now
        /// (10m), or an RFC 3339 time. The apiserver keeps the last 1,024.
        #[arg(long)]
        since: Option<String>,
        /// Stop at this time (same forms as --since); without it, run until interrupted.
        #[arg(long)]
        until: Option<String>,
        /// type=container|network, container=ID, network=NAME, event=ACTION; repeated
        /// keys mean any of them, different keys all of them.
        #[arg(short = 'f', long = "filter", value_parser = events::parse_filter)]
        filters: Vec<container_protocol::api::EventFilter>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// CPU, memory, pids and network of running containers (all, or those named).
    Stats {
        /// One reading, then exit.
        #[arg(long = "no-stream")]
        no_stream: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        ids: Vec<String>,
    },
    /// Wait for containers to stop and print their exit codes.
    Wait {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Run a command in a running container.
    Exec {
        #[arg(short = 'i', long)]
        interactive: bool,
        #[arg(short = 't', long)]
        tty: bool,
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
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
    /// Space used by images, containers and volumes.
    Df {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List leaked or inconsistent resources; exit non-zero if there are any.
    Check {
        /// Repair what is found.
        #[arg(long)]
        fix: bool,
        /// Also hash every blob of the image store again.
        #[arg(long)]
        digests: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove stopped containers, unused networks and dangling images (all unused
    /// images with -a).
    Prune {
        /// Every image no container uses, not only untagged ones.
        #[arg(short = 'a', long)]
        all: bool,
        /// Also anonymous volumes no container uses.
        #[arg(long)]
        volumes: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// Dies of SIGPIPE when its reader goes away (`container ls | head -1`), as coreutils
/// do: the shell sees 141 and prints nothing. Rust ignores SIGPIPE by default, which
/// turns the closed pipe into a panic in `println!` or a "Broken pipe" error. Writes to
/// the apiserver's socket are unaffected: they pass MSG_NOSIGNAL.
/// A terminal session ignores it again while the terminal is raw (`attach::RawMode`).
fn die_quietly_on_closed_pipe() {
    attach::set_sigpipe(nix::sys::signal::SigHandler::SigDfl);
}

fn main() -> ExitCode {
    die_quietly_on_closed_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            // One line, as every other error: clap's first line without its own prefix.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("container: error: {message} (see --help)");
            // Docker's code for a command line it could not take.
            return ExitCode::from(125);
        }
    };
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
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("container: error: {e:#}");
            // As Docker: 125 when the runtime failed, 126/127 for the command, 1 for a
            // missing object.
            ExitCode::from(client::exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let paths = Paths::new(cli.root, cli.run_dir);
    match cli.command {
        Command::System { command } => match command {
            SystemCommand::Start => system::start(&paths).await.map(|_| 0),
            SystemCommand::Stop => system::stop(&paths).await.map(|_| 0),
            SystemCommand::Status { format } => system::status(&paths, format).await.map(|_| 0),
            SystemCommand::Check {
                fix,
                digests,
                format,
            } => system::check(&paths, fix, digests, format).await,
            SystemCommand::Prune {
                all,
                volumes,
                format,
            } => system::prune(&paths, all, volumes, format).await,
            SystemCommand::Df { format } => {
                let client = client::connect(&paths.apiserver_socket()).await?;
                image::df(&client, format).await
            }
        },
        Command::Network { command } => network::run(&paths, command).await.map(|_| 0),
        Command::Image { command } => {
            let client = client::connect(&paths.apiserver_socket()).await?;
            image::run(&client, command).await
        }
        Command::Volume { command } => {
            let client = client::connect(&paths.apiserver_socket()).await?;
            volume::run(&client, command).await
        }
        Command::Pull(args) => {
            let client = client::connect(&paths.apiserver_socket()).await?;
            image::run(&client, image::ImageCommand::Pull(args)).await
        }
        Command::Registry { command } => {
            let client = client::connect(&paths.apiserver_socket()).await?;
            image::registry(&client, command).await
        }
        Command::Run { detach, args } => container::run(&paths, args, detach).await,
        Command::Create { args } => container::create_cmd(&paths, args).await,
        Command::Start { attach, ids } => container::start(&paths, ids, attach).await,
        Command::Stop { time, signal, ids } => {
            container::stop(&paths, ids, time, signal.as_deref()).await
        }
        Command::Kill { signal, ids } => container::kill(&paths, ids, &signal).await,
        Command::Rm {
            force,
            volumes,
            ids,
        } => container::rm(&paths, ids, force, volumes).await,
        Command::Ls {
            all,
            quiet,
            no_trunc,
            format,
        } => container::ls(&paths, all, quiet, no_trunc, format).await,
        Command::Inspect { ids } => container::inspect(&paths, ids).await,
        Command::Logs { follow, tail, id } => {
            let client = client::connect(&paths.apiserver_socket()).await?;
            logs::logs(&client, &id, follow, tail).await
        }
        Command::Wait { ids } => container::wait(&paths, ids).await,
        Command::Completion { shell } => {
            completion::script(shell, &mut std::io::stdout().lock())?;
            Ok(0)
        }
        Command::CompleteNames { kind } => completion::names(&paths, kind).await,
        Command::Man { dir } => {
            let n = completion::man_pages(&dir)?;
            println!("{n} man pages in {}", dir.display());
            Ok(0)
        }
        Command::Events {
            since,
            until,
            filters,
            format,
        } => {
            let client = client::connect(&paths.apiserver_socket()).await?;
            events::events(&client, since, until, filters, format).await
        }
        Command::Stats {
            no_stream,
            format,
            ids,
        } => stats::stats(&paths, ids, no_stream, format).await,
        Command::Exec {
            interactive,
            tty,
            env,
            id,
            command,
        } => {
            let client = client::connect(&paths.apiserver_socket()).await?;
            attach::exec(&client, &id, command, env, interactive, tty).await
        }
    }
}
