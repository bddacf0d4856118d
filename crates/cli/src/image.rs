//! Image commands: `image pull|load|save|ls|inspect|tag|rm|prune`, `registry
//! login|logout`, `system df`, and what `run IMAGE` needs (pull when missing). The
//! work happens in the apiserver; a pull or load passes a pipe with the call, which
//! the apiserver writes progress into as JSON lines, drawn here per layer.

use std::io::{BufRead, IsTerminal, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use container_image::auth;
use container_image::progress::{Event, Status};
use container_protocol::api::{ApiRequest, ApiResponse, ImagePull};
use container_protocol::container::{ContainerConfig, PullPolicy};
use container_protocol::ErrorKind;

use crate::client::{call, call_fds, ApiClient, Failed};
use crate::output::{self, Format};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// Load images from a docker-archive, OCI archive (file or stdin) or OCI layout dir.
    Load {
        /// Archive file or OCI layout directory (default: stdin).
        #[arg(short = 'i', long = "input")]
        input: Option<PathBuf>,
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Save images to a docker-archive (with an OCI layout inside).
    Save {
        /// Output file (default: stdout, which must not be a terminal).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show images' records and configs as JSON.
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Remove images (refused while a container uses one, unless -f).
    #[command(alias = "remove")]
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove images without a tag (-a: every image no container uses) and their layers.
    Prune {
        #[arg(short = 'a', long)]
        all: bool,
        /// Accepted for Docker's sake: nothing is asked.
        #[arg(short = 'f', long)]
        force: bool,
    },
}

#[derive(Args, Clone)]
pub struct PullArgs {
    /// Print only the manifest digest.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// os/arch[/variant] (default: this host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// false: plain HTTP or an unverified certificate are fine for this registry.
    #[arg(long = "tls-verify", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    pub reference: String,
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Check credentials with the registry and keep them in ~/.docker/config.json.
    Login {
        #[arg(short = 'u', long)]
        username: Option<String>,
        #[arg(short = 'p', long)]
        password: Option<String>,
        #[arg(long = "password-stdin")]
        password_stdin: bool,
        #[arg(long = "tls-verify", default_value_t = true, action = clap::ArgAction::Set)]
        tls_verify: bool,
        /// host[:port] (default: Docker Hub).
        server: Option<String>,
    },
    /// Forget the credentials of a registry.
    Logout { server: Option<String> },
}

/// A pipe for progress: the read end for us, the write end to send.
fn progress_pipe() -> Result<(std::fs::File, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("progress pipe")?;
    Ok((std::fs::File::from(r), w))
}

/// Draws progress events until the apiserver closes its end: bars on a terminal,
/// plain lines (one per change of a layer's state) otherwise, nothing when quiet.
fn draw(input: std::fs::File, to_stderr: bool, quiet: bool) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let terminal = if to_stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let say = |line: String| {
            if to_stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        };
        let multi = indicatif::MultiProgress::with_draw_target(if to_stderr {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::stdout()
        });
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:12} {msg:12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        let mut bars: std::collections::BTreeMap<String, indicatif::ProgressBar> =
            Default::default();
        let mut last: std::collections::BTreeMap<String, Status> = Default::default();
        for line in std::io::BufReader::new(input).lines() {
            let Ok(line) = line else { break };
            let Ok(e) = serde_json::from_str::<Event>(&line) else {
                continue;
            };
            if quiet {
                continue;
            }
            let word = match e.status {
                Status::Resolving => "resolving",
                Status::Waiting => "waiting",
                Status::Downloading => "downloading",
                Status::Exists => "already here",
                Status::Unpacking => "unpacking",
                Status::Done => "done",
            };
            if terminal && e.id.len() == 12 {
                let bar = bars.entry(e.id.clone()).or_insert_with(|| {
                    let b = multi.add(indicatif::ProgressBar::new(e.total));
                    b.set_style(style.clone());
                    b.set_prefix(e.id.clone());
                    b
                });
                bar.set_message(word);
                bar.set_length(e.total.max(1));
                match e.status {
                    Status::Done | Status::Exists => bar.finish_with_message(word),
                    _ => bar.set_position(e.current),
                }
            } else if last.get(&e.id) != Some(&e.status) {
                last.insert(e.id.clone(), e.status.clone());
                if e.total > 0 && e.id.len() == 12 {
                    say(format!("{}: {word} ({})", e.id, size(e.total)));
                } else {
                    say(format!("{}: {word}", e.id));
                }
            }
        }
        for b in bars.values() {
            b.finish();
        }
    })
}

pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}{}", UNITS[u])
            .replace(".000", "")
            .trim_end_matches('0')
            .to_string()
    }
}

/// Credentials for the registry of `reference`, from the user's Docker config.
fn credentials(reference: &str) -> Result<Option<auth::Credentials>> {
    let r = container_image::Reference::parse(reference)?;
    Ok(auth::lookup(&auth::config_path(), &r.registry)?)
}

/// Pulls `reference`, drawing progress on stdout (or stderr, for `run`).
pub async fn pull(
    client: &ApiClient,
    args: &PullArgs,
    to_stderr: bool,
) -> Result<serde_json::Value> {
    let creds = credentials(&args.reference)?;
    let (read, write) = progress_pipe()?;
    let drawer = draw(read, to_stderr, args.quiet);
    let req = ApiRequest::ImagePull(ImagePull {
        reference: args.reference.clone(),
        platform: args.platform.clone(),
        insecure: !args.tls_verify,
        username: creds.as_ref().map(|c| c.username.clone()),
        password: creds.map(|c| c.password),
    });
    let answer = call_fds(client, req, vec![write]).await;
    let _ = drawer.join();
    let (ApiResponse::Json(j), _) = answer? else {
        bail!("unexpected answer from the apiserver");
    };
    serde_json::from_str(&j).context("the apiserver's pull answer is not JSON")
}

pub async fn run(client: &ApiClient, command: ImageCommand) -> Result<i32> {
    match command {
        ImageCommand::Pull(args) => {
            let record = pull(client, &args, false).await?;
            let digest = record["manifest"].as_str().unwrap_or_default();
            if args.quiet {
                println!("{digest}");
            } else {
                println!("Digest: {digest}");
                println!("Image: {}", record["id"].as_str().unwrap_or_default());
            }
            Ok(0)
        }
        ImageCommand::Load { input, quiet } => load(client, input, quiet).await,
        ImageCommand::Save { output, images } => save(client, output, images).await,
        ImageCommand::Ls { quiet, format } => ls(client, quiet, format).await,
        ImageCommand::Inspect { images } => {
            let mut found = Vec::new();
            let mut code = 0;
            for i in images {
                match call(client, ApiRequest::ImageInspect(vec![i])).await {
                    Ok(ApiResponse::Json(j)) => {
                        let v: Vec<serde_json::Value> = serde_json::from_str(&j)?;
                        found.extend(v);
                    }
                    Ok(_) => bail!("unexpected answer from the apiserver"),
                    Err(e) => {
                        eprintln!("container: error: {e:#}");
                        code = code.max(i32::from(crate::client::exit_code(&e)));
                    }
                }
            }
            output::json(&found)?;
            Ok(code)
        }
        ImageCommand::Tag { source, target } => {
            call(client, ApiRequest::ImageTag { source, target }).await?;
            Ok(0)
        }
        ImageCommand::Rm { force, images } => {
            let ApiResponse::Names(lines) = call(
                client,
                ApiRequest::ImageRemove {
                    names: images,
                    force,
                },
            )
            .await?
            else {
                bail!("unexpected answer from the apiserver");
            };
            for l in lines {
                println!("{l}");
            }
            Ok(0)
        }
        ImageCommand::Prune { all, force: _ } => {
            let ApiResponse::Json(j) = call(client, ApiRequest::ImagePrune { all }).await? else {
                bail!("unexpected answer from the apiserver");
            };
            let v: serde_json::Value = serde_json::from_str(&j)?;
            for id in v["images"].as_array().into_iter().flatten() {
                println!("Deleted: {}", id.as_str().unwrap_or_default());
            }
            println!(
                "Total reclaimed space: {}",
                size(v["reclaimed"].as_u64().unwrap_or(0))
            );
            Ok(0)
        }
    }
}

async fn load(client: &ApiClient, input: Option<PathBuf>, quiet: bool) -> Result<i32> {
    let (fd, directory): (OwnedFd, bool) = match &input {
        Some(path) => {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("image load: {}", path.display()))?;
            let f = std::fs::File::open(path)
                .with_context(|| format!("image load: open {}", path.display()))?;
            (f.into(), meta.is_dir())
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!("image load: no archive: give -i FILE or pipe one into stdin");
            }
            (std::io::stdin().as_fd().try_clone_to_owned()?, false)
        }
    };
    let (read, write) = progress_pipe()?;
    let drawer = draw(read, false, quiet);
    let answer = call_fds(client, ApiRequest::ImageLoad { directory }, vec![fd, write]).await;
    let _ = drawer.join();
    let (ApiResponse::Json(j), _) = answer? else {
        bail!("unexpected answer from the apiserver");
    };
    let loaded: Vec<container_image::archive::Loaded> = serde_json::from_str(&j)?;
    for l in loaded {
        if l.tags.is_empty() {
            println!("Loaded image ID: {}", l.id);
        }
        for t in l.tags {
            println!("Loaded image: {t}");
        }
    }
    Ok(0)
}

async fn save(client: &ApiClient, output: Option<PathBuf>, images: Vec<String>) -> Result<i32> {
    let fd: OwnedFd = match &output {
        Some(path) => std::fs::File::create(path)
            .with_context(|| format!("image save: create {}", path.display()))?
            .into(),
        None => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "image save: refusing to write an archive to a terminal: use -o FILE or a pipe"
                );
            }
            std::io::stdout().as_fd().try_clone_to_owned()?
        }
    };
    let answer = call_fds(client, ApiRequest::ImageSave(images), vec![fd]).await;
    if answer.is_err() {
        if let Some(path) = &output {
            let _ = std::fs::remove_file(path);
        }
    }
    answer?;
    Ok(0)
}

async fn ls(client: &ApiClient, quiet: bool, format: Format) -> Result<i32> {
    let ApiResponse::Json(j) = call(client, ApiRequest::ImageList).await? else {
        bail!("unexpected answer from the apiserver");
    };
    let list: Vec<serde_json::Value> = serde_json::from_str(&j)?;
    if format == Format::Json {
        output::json(&list)?;
        return Ok(0);
    }
    if quiet {
        for e in &list {
            let id = e["record"]["id"].as_str().unwrap_or_default();
            println!(
                "{}",
                &id.trim_start_matches("sha256:")[..12.min(id.len().saturating_sub(7))]
            );
        }
        return Ok(0);
    }
    let mut rows = Vec::new();
    for e in &list {
        let id = e["record"]["id"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("sha256:");
        let short = id.get(..12).unwrap_or(id).to_string();
        let size_bytes: u64 = e["record"]["layers"]
            .as_array()
            .map(|ls| ls.iter().filter_map(|l| l["unpacked"].as_u64()).sum())
            .unwrap_or(0);
        let created = e["record"]["created"]
            .as_str()
            .unwrap_or("")
            .get(..19)
            .unwrap_or("")
            .replace('T', " ");
        let tags: Vec<container_image::Reference> = e["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                t.as_str()
                    .and_then(|t| container_image::Reference::parse(t).ok())
            })
            .collect();
        if tags.is_empty() {
            rows.push(vec![
                "<none>".into(),
                "<none>".into(),
                short.clone(),
                created.clone(),
                size(size_bytes),
            ]);
        }
        for t in tags {
            rows.push(vec![
                t.familiar_name(),
                t.tag.clone().unwrap_or_default(),
                short.clone(),
                created.clone(),
                size(size_bytes),
            ]);
        }
    }
    output::table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows)?;
    Ok(0)
}

pub async fn registry(client: &ApiClient, command: RegistryCommand) -> Result<i32> {
    match command {
        RegistryCommand::Login {
            username,
            password,
            password_stdin,
            tls_verify,
            server,
        } => {
            let server =
                server.unwrap_or_else(|| container_image::reference::DOCKER_HUB.to_string());
            let username = match username {
                Some(u) => u,
                None => bail!("registry login: give -u USERNAME"),
            };
            let password = match (password, password_stdin) {
                (Some(_), true) => {
                    bail!("registry login: --password and --password-stdin together")
                }
                (Some(p), false) => p,
                (None, true) => {
                    let mut p = String::new();
                    std::io::stdin().read_to_string(&mut p)?;
                    p.trim_end_matches(['\n', '\r']).to_string()
                }
                (None, false) => bail!("registry login: give --password-stdin (or -p PASSWORD)"),
            };
            if password.is_empty() {
                bail!("registry login: empty password");
            }
            call(
                client,
                ApiRequest::RegistryLogin {
                    registry: server.clone(),
                    username: username.clone(),
                    password: password.clone(),
                    insecure: !tls_verify,
                },
            )
            .await?;
            auth::store(
                &auth::config_path(),
                &server,
                &auth::Credentials { username, password },
            )?;
            println!("Login Succeeded");
            Ok(0)
        }
        RegistryCommand::Logout { server } => {
            let server =
                server.unwrap_or_else(|| container_image::reference::DOCKER_HUB.to_string());
            if auth::erase(&auth::config_path(), &server)? {
                println!("Removing login credentials for {server}");
            } else {
                println!("Not logged in to {server}");
            }
            Ok(0)
        }
    }
}

pub async fn df(client: &ApiClient, format: Format) -> Result<i32> {
    let ApiResponse::Json(j) = call(client, ApiRequest::DiskUsage).await? else {
        bail!("unexpected answer from the apiserver");
    };
    let v: serde_json::Value = serde_json::from_str(&j)?;
    if format == Format::Json {
        output::json(&v)?;
        return Ok(0);
    }
    let row = |kind: &str, o: &serde_json::Value, active: Option<u64>| {
        vec![
            kind.to_string(),
            o["count"].as_u64().unwrap_or(0).to_string(),
            active.map_or("-".to_string(), |a| a.to_string()),
            size(o["size"].as_u64().unwrap_or(0)),
        ]
    };
    let rows = vec![
        row("Images", &v["images"], v["images"]["active"].as_u64()),
        row("Containers", &v["containers"], None),
        row("Local Volumes", &v["volumes"], None),
    ];
    output::table(&["TYPE", "TOTAL", "ACTIVE", "SIZE"], &rows)?;
    Ok(0)
}

/// `run IMAGE`/`create IMAGE` with `--pull`: pulls first when asked to, or when the
/// image is not here, as Docker does (progress on stderr).
pub async fn ensure(
    client: &ApiClient,
    config: &ContainerConfig,
    platform: Option<String>,
) -> Result<()> {
    let Some(image) = &config.image else {
        return Ok(());
    };
    let here = match call(
        client,
        ApiRequest::ImageInspect(vec![image.reference.clone()]),
    )
    .await
    {
        Ok(_) => true,
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<Failed>()
                    .is_some_and(|f| f.kind == ErrorKind::NotFound)
            }) =>
        {
            false
        }
        Err(e) => return Err(e),
    };
    let wanted = match image.pull {
        PullPolicy::Always => true,
        PullPolicy::Missing => !here,
        PullPolicy::Never if !here => {
            return Err(Failed::error(
                ErrorKind::NotFound,
                format!("image {} not found, and --pull=never", image.reference),
            ))
        }
        PullPolicy::Never => false,
    };
    if !wanted {
        return Ok(());
    }
    if !here {
        eprintln!("Unable to find image '{}' locally", image.reference);
    }
    let args = PullArgs {
        quiet: false,
        platform,
        tls_verify: true,
        reference: image.reference.clone(),
    };
    pull(client, &args, true)
        .await
        .map_err(|e| anyhow!("{e:#}"))?;
    Ok(())
}

/// `run [OPTIONS] IMAGE [COMMAND [ARG...]]`: the first argument is the image unless
/// `--rootfs` or `--config` is given, or the command follows a `--` (the form that
/// runs without an image: `run [OPTIONS] -- COMMAND`).
pub fn image_argument(rootfs: bool, config: bool, command: &[String]) -> bool {
    if rootfs || config || command.is_empty() {
        return false;
    }
    let argv: Vec<String> = std::env::args().collect();
    let at = argv.len().saturating_sub(command.len());
    !(at > 0 && argv.get(at - 1).map(String::as_str) == Some("--") && argv[at..] == *command)
}

/// `--pull=missing|always|never`.
pub fn parse_pull(text: &str) -> Result<PullPolicy, String> {
    match text {
        "missing" => Ok(PullPolicy::Missing),
        "always" => Ok(PullPolicy::Always),
        "never" => Ok(PullPolicy::Never),
        other => Err(format!(
            "{other:?} is not a pull policy (missing, always, never)"
        )),
    }
}

/// The image and the command of `run`'s arguments (see [`image_argument`]).
pub fn split(a: &crate::container::CreateArgs) -> (Option<String>, Vec<String>) {
    let own_root = a.rootfs.is_some() || a.security.host_rootfs;
    if image_argument(own_root, a.config.is_some(), &a.command) {
        (Some(a.command[0].clone()), a.command[1..].to_vec())
    } else {
        (None, a.command.clone())
    }
}
