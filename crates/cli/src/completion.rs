//! `container completion bash|zsh|fish` and man pages, generated from the clap
//! definitions the CLI parses with, so neither can drift from the flags.
//!
//! The scripts are clap_complete's static ones, plus (bash and fish) a hook that
//! completes the names of containers, networks and images where a command takes them,
//! by running the hidden `container __complete KIND`, which asks the apiserver. zsh gets
//! the static script only.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;
use container_protocol::api::{ApiRequest, ApiResponse};
use container_store::Paths;

use crate::client::{call, try_connect};

/// What the hidden `__complete` lists.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Kind {
    Containers,
    Networks,
    Images,
}

/// Commands whose operands are container ids, and the `network`/`image` verbs whose
/// operands are names: what the hooks complete.
const CONTAINER_VERBS: &str = "start stop kill rm inspect logs wait exec";
const NETWORK_VERBS: &str = "rm inspect";
const IMAGE_VERBS: &str = "rm inspect tag save";
/// `network connect|disconnect NET CONTAINER`: a network, then a container.
const ATTACH_VERBS: &str = "connect disconnect";

fn bash_hook() -> String {
    format!(
        r#"
# Names from the apiserver where a command takes them; clap's completion otherwise.
_container_names() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} sub="" verb="" i w n=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${{COMP_WORDS[i]}}
        case $w in --ip | --ip6 | --mac | --alias) ((i++)); continue ;; esac
        [[ $w == -* ]] && continue
        if [[ -z $sub ]]; then sub=$w; elif [[ -z $verb ]]; then verb=$w; else ((n++)); fi
    done
    if [[ $cur != -* && -n $sub ]]; then
        local kind=""
        case " {containers} " in *" $sub "*) kind=containers ;; esac
        if [[ $sub == network && -n $verb && " {networks} " == *" $verb "* ]]; then kind=networks; fi
        if [[ $sub == network && " {attach} " == *" $verb "* ]]; then
            if ((n == 0)); then kind=networks; elif ((n == 1)); then kind=containers; fi
        fi
        if [[ $sub == image && -n $verb && " {images} " == *" $verb "* ]]; then kind=images; fi
        if [[ -n $kind ]]; then
            COMPREPLY=($(compgen -W "$("${{COMP_WORDS[0]}}" __complete "$kind" 2>/dev/null)" -- "$cur"))
            return 0
        fi
    fi
    _container "$@"
}}
complete -F _container_names -o bashdefault -o default container
"#,
        containers = CONTAINER_VERBS,
        networks = NETWORK_VERBS,
        images = IMAGE_VERBS,
        attach = ATTACH_VERBS,
    )
}

fn fish_hook() -> String {
    let mut s = String::from("\n# Names from the apiserver where a command takes them.\n");
    s.push_str(&format!(
        "complete -c container -f -n '__fish_seen_subcommand_from {CONTAINER_VERBS}' -a '(container __complete containers 2>/dev/null)'\n"
    ));
    s.push_str(&format!(
        "complete -c container -f -n '__fish_seen_subcommand_from network; and __fish_seen_subcommand_from {NETWORK_VERBS}' -a '(container __complete networks 2>/dev/null)'\n"
    ));
    s.push_str(&format!(
        "complete -c container -f -n '__fish_seen_subcommand_from network; and __fish_seen_subcommand_from {ATTACH_VERBS}' -a '(container __complete networks 2>/dev/null; container __complete containers 2>/dev/null)'\n"
    ));
    s.push_str(&format!(
        "complete -c container -f -n '__fish_seen_subcommand_from image; and __fish_seen_subcommand_from {IMAGE_VERBS}' -a '(container __complete images 2>/dev/null)'\n"
    ));
    s
}

pub fn script(shell: Shell, out: &mut impl Write) -> Result<()> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(shell, &mut cmd, "container", out);
    match shell {
        Shell::Bash => out.write_all(bash_hook().as_bytes())?,
        Shell::Fish => out.write_all(fish_hook().as_bytes())?,
        _ => {}
    }
    Ok(())
}

/// The names of `kind`, one per line; nothing (and success) when the apiserver does not
/// answer: a completion must never print an error into the user's command line.
pub async fn names(paths: &Paths, kind: Kind) -> Result<i32> {
    let Ok(client) = try_connect(&paths.apiserver_socket()).await else {
        return Ok(0);
    };
    let names: Vec<String> = match kind {
        Kind::Containers => match call(&client, ApiRequest::ContainerList { all: true }).await {
            Ok(ApiResponse::Containers(list)) => list.iter().map(|c| c.id.clone()).collect(),
            _ => vec![],
        },
        Kind::Networks => match call(&client, ApiRequest::NetworkList).await {
            Ok(ApiResponse::Networks(list)) => list.into_iter().map(|n| n.name).collect(),
            _ => vec![],
        },
        Kind::Images => match call(&client, ApiRequest::ImageList).await {
            Ok(ApiResponse::Json(j)) => serde_json::from_str::<Vec<serde_json::Value>>(&j)
                .unwrap_or_default()
                .iter()
                .flat_map(|e| {
                    e["tags"]
                        .as_array()
                        .map(|t| {
                            t.iter()
                                .filter_map(|t| t.as_str().map(str::to_string))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default()
                })
                .collect(),
            _ => vec![],
        },
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for n in names {
        writeln!(out, "{n}")?;
    }
    Ok(0)
}

/// One man page per command and subcommand (`container.1`, `container-run.1`,
/// `container-network-create.1`, …) into `dir`.
pub fn man_pages(dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let cmd = crate::Cli::command();
    let mut written = 0;
    write_page(&cmd, "container", dir, &mut written)?;
    Ok(written)
}

fn write_page(cmd: &clap::Command, name: &str, dir: &Path, written: &mut usize) -> Result<()> {
    if cmd.is_hide_set() {
        return Ok(());
    }
    let page = cmd.clone().name(name.to_string());
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    std::fs::write(&path, buf).with_context(|| format!("write {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        write_page(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
