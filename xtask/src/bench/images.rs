//! `images`: a generated image of five layers (busybox, then four of mixed random and
//! text files, about 62 MiB uncompressed) in a loopback registry (Debian's
//! docker-registry on 127.0.0.1 in the bench's network namespace, pushed with skopeo):
//!
//! * pull and unpack: `container image pull` (the store emptied before each) against
//!   `podman pull` (`podman rmi` before each) and `skopeo copy` to an OCI directory
//!   (no unpack: the floor of fetching alone);
//! * unpack alone: our confined unpacker (`container-unpack`, digest included) against
//!   `tar -xzf` of the same layer blobs, each into an empty directory;
//! * `run --rm IMAGE true` with the image present, against `podman run --rm` of the
//!   same image.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::podman::Podman;
use super::report::{Row, Section, Table, Target, Unit};
use super::run::container_cmd;
use super::sys;
use super::{bins, Ctx};

const PORT: u16 = 5999;
const NAME: &str = "bench/image:1";

/// Files of mixed content: half pseudo-random (incompressible), half text.
fn fill(dir: &Path, seed: u64, bytes: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut x = seed | 1;
    let mut written = 0;
    let mut i = 0;
    while written < bytes {
        let size = 16 * 1024 + (i % 17) * 8 * 1024;
        let mut data = Vec::with_capacity(size);
        if i % 2 == 0 {
            while data.len() < size {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.extend_from_slice(&x.to_le_bytes());
            }
            data.truncate(size);
        } else {
            while data.len() < size {
                writeln!(data, "line {i} of a text file that compresses, {written}")?;
            }
        }
        let sub = dir.join(format!("d{}", i % 20));
        std::fs::create_dir_all(&sub)?;
        std::fs::write(sub.join(format!("f{i}")), &data)?;
        written += data.len();
        i += 1;
    }
    Ok(())
}

/// The image as an OCI layout; returns the layout, the gzip layer blobs, and the
/// uncompressed size.
fn generate(ctx: &Ctx) -> Result<(PathBuf, Vec<PathBuf>, u64)> {
    let dir = ctx.state.join("images");
    let mut sources = vec![sys::rootfs(&ctx.state)?];
    for l in 0..4 {
        let d = dir.join(format!("src{l}"));
        fill(&d, 0x5eed + l as u64, 15 << 20)?;
        sources.push(d);
    }
    let layout = dir.join("layout");
    let (blobs, total) = crate::oci::layout(
        &layout,
        &sources,
        serde_json::json!({"Cmd": ["/bin/true"]}),
        "1",
    )?;
    Ok((layout, blobs, total))
}

struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn registry(ctx: &Ctx) -> Result<Registry> {
    let dir = ctx.state.join("images/registry");
    std::fs::create_dir_all(dir.join("storage"))?;
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{PORT}\n",
            dir.join("storage").display()
        ),
    )?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start docker-registry")?;
    let r = Registry(child);
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", PORT)).is_err() {
        if Instant::now() > deadline {
            bail!("the registry did not come up");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(r)
}

fn timed(
    n: usize,
    mut before: impl FnMut() -> Result<()>,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    let mut samples = Vec::new();
    for _ in 0..n {
        before()?;
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed().as_nanos() as f64);
    }
    Ok(samples)
}

fn fresh(dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    Ok(())
}

pub fn measure(ctx: &Ctx, podman: Option<&Result<Podman, String>>) -> Section {
    let mut notes = ctx.notes.of("images");
    let mut pull_rows = Vec::new();
    let mut unpack_rows = Vec::new();
    let mut run_rows = Vec::new();
    let reference = format!("127.0.0.1:{PORT}/{NAME}");
    let n = ctx.opts.iterations(5);
    let setup = (|| -> Result<(PathBuf, Vec<PathBuf>, u64, Registry)> {
        let (layout, blobs, total) = generate(ctx)?;
        let reg = registry(ctx)?;
        sys::output(
            Command::new("skopeo")
                .args(["copy", "--quiet", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:1", layout.display()))
                .arg(format!("docker://{reference}")),
        )?;
        Ok((layout, blobs, total, reg))
    })();
    let (blobs, total, _reg) = match setup {
        Ok((_, b, t, r)) => (b, t, r),
        Err(e) => {
            notes.push(format!("not measured: {e:#}"));
            return section(vec![], vec![], vec![], 0, notes);
        }
    };
    let ours = "container image pull";
    let ours_result = (|| -> Result<Vec<f64>> {
        sys::output(container_cmd(ctx, "images").args(["system", "start"]))?;
        timed(
            n,
            || {
                let _ = sys::output(
                    container_cmd(ctx, "images").args(["image", "rm", "-f", &reference]),
                );
                sys::output(container_cmd(ctx, "images").args(["image", "prune", "-a"])).map(|_| ())
            },
            || {
                sys::output(container_cmd(ctx, "images").args(["image", "pull", "-q", &reference]))
                    .map(|_| ())
            },
        )
    })();
    match ours_result {
        Ok(s) => pull_rows.push(
            Row::from_samples(ours, Unit::Nanos, &s)
                .extra("fetch, verify, unpack (confined child per layer)"),
        ),
        Err(e) => notes.push(format!("container pull: not measured: {e:#}")),
    }
    let theirs = "podman pull";
    if let Some(Ok(p)) = podman {
        let r = timed(
            n,
            || {
                let _ = sys::output(p.cmd().args(["rmi", "-f", &reference]));
                Ok(())
            },
            || {
                sys::output(
                    p.cmd()
                        .args(["pull", "-q", "--tls-verify=false", &reference]),
                )
                .map(|_| ())
            },
        );
        match r {
            Ok(s) => pull_rows.push(Row::from_samples(theirs, Unit::Nanos, &s)),
            Err(e) => notes.push(format!("podman pull: not measured: {e:#}")),
        }
    } else if let Some(Err(e)) = podman {
        notes.push(format!("podman: not measured: {e}"));
    }
    let oci = ctx.state.join("images/skopeo-dest");
    match timed(
        n,
        || fresh(&oci),
        || {
            sys::output(
                Command::new("skopeo")
                    .args(["copy", "--quiet", "--src-tls-verify=false"])
                    .arg(format!("docker://{reference}"))
                    .arg(format!("oci:{}:1", oci.display())),
            )
            .map(|_| ())
        },
    ) {
        Ok(s) => pull_rows.push(
            Row::from_samples("skopeo copy to an OCI directory", Unit::Nanos, &s)
                .extra("no unpack"),
        ),
        Err(e) => notes.push(format!("skopeo: not measured: {e:#}")),
    }

    // Unpack alone, every layer.
    let scratch = ctx.state.join("images/unpack");
    let limits =
        r#"{"layer_bytes":17179869184,"image_bytes":68719476736,"ratio":250,"entries":2000000}"#;
    let ours_unpack = "container-unpack (all layers)";
    match timed(
        n,
        || Ok(()),
        || {
            for (i, blob) in blobs.iter().enumerate() {
                let d = scratch.join(format!("ours{i}"));
                fresh(&d)?;
                // Not sys::output: it gives the command /dev/null for stdin.
                let out = Command::new(bins().join("container-unpack"))
                    .arg("--dir")
                    .arg(&d)
                    .arg("--limits")
                    .arg(limits)
                    .stdin(std::fs::File::open(blob)?)
                    .output()?;
                if !out.status.success() {
                    bail!("container-unpack: {}", String::from_utf8_lossy(&out.stderr));
                }
                // An empty report would mean it read no input.
                let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                if report["tar_bytes"].as_u64().unwrap_or(0) == 0 {
                    bail!("container-unpack read nothing from {}", blob.display());
                }
            }
            Ok(())
        },
    ) {
        Ok(s) => unpack_rows.push(
            Row::from_samples(ours_unpack, Unit::Nanos, &s)
                .extra("confined, diff ID hashed, in-root lookups"),
        ),
        Err(e) => notes.push(format!("container-unpack: not measured: {e:#}")),
    }
    let tar = "tar -xzf (all layers)";
    match timed(
        n,
        || Ok(()),
        || {
            for (i, blob) in blobs.iter().enumerate() {
                let d = scratch.join(format!("tar{i}"));
                fresh(&d)?;
                sys::output(Command::new("tar").arg("-xzf").arg(blob).arg("-C").arg(&d))?;
            }
            Ok(())
        },
    ) {
        Ok(s) => unpack_rows.push(Row::from_samples(tar, Unit::Nanos, &s)),
        Err(e) => notes.push(format!("tar: not measured: {e:#}")),
    }
    let _ = std::fs::remove_dir_all(&scratch);

    // run --rm IMAGE true, the image present.
    let nr = ctx.opts.iterations(30);
    let ours_run = "container run --rm IMAGE true";
    match sys::output(container_cmd(ctx, "images").args(["image", "pull", "-q", &reference]))
        .and_then(|_| {
            sys::time_loop(2, nr, |_| {
                sys::output(container_cmd(ctx, "images").args([
                    "run",
                    "--rm",
                    "--network",
                    "default",
                    &reference,
                    "true",
                ]))
                .map(|_| ())
            })
        }) {
        Ok(s) => run_rows.push(
            Row::from_samples(ours_run, Unit::Nanos, &s)
                .extra("--network default; overlayfs of the image's 5 layers"),
        ),
        Err(e) => notes.push(format!("container run: not measured: {e:#}")),
    }
    let theirs_run = "podman run --rm IMAGE true";
    if let Some(Ok(p)) = podman {
        let r = sys::output(
            p.cmd()
                .args(["pull", "-q", "--tls-verify=false", &reference]),
        )
        .and_then(|_| {
            sys::time_loop(2, nr, |_| {
                sys::output(p.cmd().args([
                    "run",
                    "--rm",
                    "--network",
                    "podman",
                    &reference,
                    "true",
                ]))
                .map(|_| ())
            })
        });
        match r {
            Ok(s) => run_rows
                .push(Row::from_samples(theirs_run, Unit::Nanos, &s).extra("--network podman")),
            Err(e) => notes.push(format!("podman run: not measured: {e:#}")),
        }
        let _ = sys::output(p.cmd().args(["rmi", "-f", &reference]));
    }
    let _ = sys::output(container_cmd(ctx, "images").args(["system", "stop"]));
    section(pull_rows, unpack_rows, run_rows, total, notes)
}

fn section(
    pull: Vec<Row>,
    unpack: Vec<Row>,
    run: Vec<Row>,
    total: u64,
    notes: Vec<String>,
) -> Section {
    let median = |rows: &[Row], name: &str| rows.iter().find(|r| r.name == name).map(|r| r.median);
    let targets = vec![
        Target::ratio_at_most(
            "pull + unpack at most 0.5× podman pull",
            median(&pull, "container image pull"),
            median(&pull, "podman pull"),
            0.5,
            "podman",
        ),
        Target::ratio_at_most(
            "unpack within 1.3× of tar -xzf",
            median(&unpack, "container-unpack (all layers)"),
            median(&unpack, "tar -xzf (all layers)"),
            1.3,
            "tar",
        ),
        Target::ratio_at_most(
            "run --rm IMAGE true at most 1/10 of podman run --rm",
            median(&run, "container run --rm IMAGE true"),
            median(&run, "podman run --rm IMAGE true"),
            0.1,
            "podman",
        ),
    ];
    Section {
        title: "Images: pull, unpack, run".into(),
        method: format!(
            "A generated image of 5 gzip layers ({:.1} MiB uncompressed: busybox, then four of \
             half random, half text files) pushed with skopeo to Debian's docker-registry on \
             127.0.0.1 inside the bench's network namespace. Pulls start from an empty store each \
             time (`image rm -f` and `image prune -a`; `podman rmi -f`), untimed. Unpack: every \
             layer blob into an empty directory, our confined `container-unpack` against \
             `tar -xzf`. Run: the image present, `true` as the command, default networks.",
            total as f64 / (1024.0 * 1024.0)
        ),
        tables: vec![
            Table {
                title: "Pull of the whole image from the loopback registry:".into(),
                rows: pull,
                baseline: Some("podman pull".into()),
            },
            Table {
                title: "Unpacking the same layers:".into(),
                rows: unpack,
                baseline: Some("tar -xzf (all layers)".into()),
            },
            Table {
                title: "`run --rm IMAGE true`, the image present:".into(),
                rows: run,
                baseline: Some("podman run --rm IMAGE true".into()),
            },
        ],
        targets,
        notes,
    }
}
