//! `container-cni`: a CNI 1.1 plugin (spec versions 0.3.1 to 1.1.0), the reference
//! `bridge` plugin's configuration with host-local's IPAM layout, and GC.
//!
//! A thin main: the IPAM is `container-ipam` (host-local's files and locks, shared with
//! host-local and the network helper), the kernel work `container-netlink`, `ipMasq`
//! `container-firewall`. Exec'd once per call; no apiserver, no state of its own beyond
//! the IPAM directory and the links' aliases. Errors go to stdout as the spec's error
//! object, with a non-zero exit.

mod add;
mod check;
mod conf;
mod del;
mod env;
mod error;
mod gc;
mod links;
mod masq;
mod result;
mod sysctl;
mod version;

use std::io::{Read, Write};
use std::process::ExitCode;

use serde_json::{json, Value};

use env::Command;
use error::{CniError, DECODE, INCOMPATIBLE_VERSION, IO_FAILURE};
use version::{Version, SUPPORTED};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(del::UNLINK_ARG) {
        return del::unlink_child(&args[1..]);
    }
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    // The version errors are written in: the config's, when it names one we speak.
    let asked = serde_json::from_slice::<Value>(&stdin).ok().and_then(|v| {
        v.get("cniVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let reply_version = asked
        .as_deref()
        .and_then(Version::parse)
        .map_or("1.1.0", Version::as_str);
    let outcome = match read {
        Ok(_) => run(&stdin, asked.as_deref()),
        Err(e) => Err(CniError::new(IO_FAILURE, "cannot read stdin").details(e.to_string())),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(reply_version));
            ExitCode::FAILURE
        }
    }
}

fn run(stdin: &[u8], asked: Option<&str>) -> Result<Option<Value>, CniError> {
    let env = env::read(|k| std::env::var(k).ok())?;
    if env.command == Command::Version {
        return Ok(Some(json!({
            "cniVersion": asked.unwrap_or("1.1.0"),
            "supportedVersions": SUPPORTED,
        })));
    }
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(DECODE, "stdin is not a JSON network configuration").details(e.to_string())
    })?;
    let version = match asked {
        Some(v) => Version::parse(v).ok_or_else(|| {
            CniError::new(
                INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {v} is not supported; supported: {}",
                    SUPPORTED.join(", ")
                ),
            )
        })?,
        None => {
            return Err(CniError::new(
                INCOMPATIBLE_VERSION,
                "the configuration has no cniVersion",
            ))
        }
    };
    let conf = conf::NetConf::from_value(value, version)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(IO_FAILURE, "cannot start a runtime").details(e.to_string()))?;
    rt.block_on(async {
        match env.command {
            Command::Add => add::add(&env, &conf).await.map(Some),
            Command::Del => del::del(&env, &conf).await.map(|()| None),
            Command::Check => check::check(&env, &conf).await.map(|()| None),
            Command::Gc => gc::gc(&conf).await.map(|()| None),
            Command::Status => gc::status(&conf).map(|()| None),
            Command::Version => unreachable!("answered above"),
        }
    })
}
