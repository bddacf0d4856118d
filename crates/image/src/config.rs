//! How an image's config and `run`'s flags make the process, as Docker combines them
//! (docs.docker.com, "Dockerfile reference: Understand how CMD and ENTRYPOINT
//! interact", and `docker run --entrypoint`):
//!
//! * the process is ENTRYPOINT followed by CMD;
//! * arguments after the image replace CMD;
//! * `--entrypoint X` replaces ENTRYPOINT and drops the image's CMD (arguments after
//!   the image are X's); `--entrypoint ''` empties it, so the arguments are the whole
//!   command;
//! * `-e K=V` overrides the image's `K` (the image's other variables stay);
//! * `-w` replaces WorkingDir, `-u` replaces User; without either, the image's, and
//!   without those, `/` and root;
//! * labels: the image's, then the container's over them; StopSignal: the image's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

/// What of an image config a container's process takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl RunConfig {
    /// From an image config (OCI or Docker; the same JSON keys).
    pub fn from_image_config(c: &oci_spec::image::ImageConfiguration) -> RunConfig {
        let Some(cfg) = c.config() else {
            return RunConfig::default();
        };
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        RunConfig {
            entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
            cmd: cfg.cmd().clone().unwrap_or_default(),
            env: cfg.env().clone().unwrap_or_default(),
            working_dir: nonempty(cfg.working_dir()),
            user: nonempty(cfg.user()),
            stop_signal: nonempty(cfg.stop_signal()),
            labels: cfg
                .labels()
                .clone()
                .map(|l| l.into_iter().collect())
                .unwrap_or_default(),
        }
    }
}

/// What `run` was given besides the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// Arguments after the image.
    pub command: Vec<String>,
    /// `--entrypoint`: `Some(vec![])` for `--entrypoint ''`.
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// The process and metadata a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combined {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
    pub labels: BTreeMap<String, String>,
}

pub fn combine(image: &RunConfig, flags: &Flags) -> Result<Combined> {
    let (entrypoint, cmd) = match &flags.entrypoint {
        Some(ep) => (
            ep.iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>(),
            flags.command.clone(),
        ),
        None if !flags.command.is_empty() => (image.entrypoint.clone(), flags.command.clone()),
        None => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let mut args = entrypoint;
    args.extend(cmd);
    if args.is_empty() || args[0].is_empty() {
        return Err(invalid(
            "no command specified: the image has no Entrypoint or Cmd; give one after the image",
        ));
    }
    let mut env: Vec<String> = Vec::new();
    for e in image.env.iter().chain(flags.env.iter()) {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match env
            .iter_mut()
            .find(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) == key)
        {
            Some(slot) => *slot = e.clone(),
            None => env.push(e.clone()),
        }
    }
    let cwd = flags.workdir.clone().or_else(|| {
        image.working_dir.as_ref().map(|w| {
            if w.starts_with('/') {
                w.clone()
            } else {
                format!("/{w}")
            }
        })
    });
    let mut labels = image.labels.clone();
    labels.extend(flags.labels.clone());
    Ok(Combined {
        args,
        env,
        cwd,
        user: flags.user.clone().or_else(|| image.user.clone()),
        stop_signal: image.stop_signal.clone(),
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// Docker's documented table (Dockerfile reference, "Understand how CMD and
    /// ENTRYPOINT interact"), plus the `run` overrides.
    type Case = (
        Vec<String>,
        Vec<String>,
        Vec<String>,
        Option<Vec<String>>,
        Option<Vec<String>>,
    );

    #[test]
    fn entrypoint_and_cmd_combine_as_docker_documents() {
        let ep = v(&["/bin/ep", "e1"]);
        let cmd = v(&["c1", "c2"]);
        // (image entrypoint, image cmd, run args, --entrypoint, expected argv or None = error)
        let cases: Vec<Case> = vec![
            (vec![], vec![], vec![], None, None),
            (vec![], cmd.clone(), vec![], None, Some(cmd.clone())),
            (ep.clone(), vec![], vec![], None, Some(ep.clone())),
            (
                ep.clone(),
                cmd.clone(),
                vec![],
                None,
                Some(v(&["/bin/ep", "e1", "c1", "c2"])),
            ),
            (
                vec![],
                cmd.clone(),
                v(&["ls", "-l"]),
                None,
                Some(v(&["ls", "-l"])),
            ),
            (
                ep.clone(),
                cmd.clone(),
                v(&["x"]),
                None,
                Some(v(&["/bin/ep", "e1", "x"])),
            ),
            // --entrypoint replaces ENTRYPOINT and drops the image's CMD.
            (
                ep.clone(),
                cmd.clone(),
                vec![],
                Some(v(&["/bin/sh"])),
                Some(v(&["/bin/sh"])),
            ),
            (
                ep.clone(),
                cmd.clone(),
                v(&["-c", "true"]),
                Some(v(&["/bin/sh"])),
                Some(v(&["/bin/sh", "-c", "true"])),
            ),
            // --entrypoint '' empties it: the arguments are the command.
            (
                ep.clone(),
                cmd.clone(),
                v(&["echo", "hi"]),
                Some(v(&[""])),
                Some(v(&["echo", "hi"])),
            ),
            (ep.clone(), cmd.clone(), vec![], Some(v(&[""])), None),
        ];
        for (i, (iep, icmd, args, override_ep, want)) in cases.into_iter().enumerate() {
            let image = RunConfig {
                entrypoint: iep,
                cmd: icmd,
                ..RunConfig::default()
            };
            let flags = Flags {
                command: args,
                entrypoint: override_ep,
                ..Flags::default()
            };
            match (combine(&image, &flags), want) {
                (Ok(c), Some(w)) => assert_eq!(c.args, w, "case {i}"),
                (Err(e), None) => assert!(e.to_string().contains("no command"), "case {i}: {e}"),
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn env_workdir_user_and_labels_override_the_image() {
        let image = RunConfig {
            cmd: v(&["sh"]),
            env: v(&["PATH=/usr/bin:/bin", "A=image", "B=image"]),
            working_dir: Some("srv".into()),
            user: Some("app".into()),
            stop_signal: Some("SIGQUIT".into()),
            labels: [
                ("l1".to_string(), "image".to_string()),
                ("l2".to_string(), "image".to_string()),
            ]
            .into_iter()
            .collect(),
            ..RunConfig::default()
        };
        let plain = combine(&image, &Flags::default()).unwrap();
        assert_eq!(plain.env, image.env);
        assert_eq!(plain.cwd.as_deref(), Some("/srv"));
        assert_eq!(plain.user.as_deref(), Some("app"));
        assert_eq!(plain.stop_signal.as_deref(), Some("SIGQUIT"));
        let flags = Flags {
            env: v(&["A=flag", "C=flag"]),
            workdir: Some("/tmp".into()),
            user: Some("1000:1000".into()),
            labels: [("l2".to_string(), "flag".to_string())]
                .into_iter()
                .collect(),
            ..Flags::default()
        };
        let c = combine(&image, &flags).unwrap();
        assert_eq!(
            c.env,
            v(&["PATH=/usr/bin:/bin", "A=flag", "B=image", "C=flag"])
        );
        assert_eq!(c.cwd.as_deref(), Some("/tmp"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.labels["l1"], "image");
        assert_eq!(c.labels["l2"], "flag");
        let bare = combine(
            &RunConfig {
                cmd: v(&["sh"]),
                ..RunConfig::default()
            },
            &Flags::default(),
        )
        .unwrap();
        assert_eq!((bare.cwd, bare.user), (None, None));
    }
}
