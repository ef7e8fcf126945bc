//! `cairn setup CLIENT [--url URL] [--apply]`: the client configuration that points a package
//! manager at this node, printed, or applied with the client's own config command.
//!
//! Applying first records the client's current upstream in `cairn.toml` (unless one is set
//! there), so Cairn keeps fronting the same registry after the client points at Cairn.

use std::path::Path;

use anyhow::{Context, Result, bail};
use url::Url;

use crate::discover;

/// The clients `setup` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    Npm,
    Yarn,
    Pnpm,
}

/// One command that configures a client.
struct Step {
    program: &'static str,
    args: Vec<String>,
}

impl Step {
    fn shown(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                if a.contains([' ', '"', '[']) {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect();
        format!("{} {}", self.program, args.join(" "))
    }
}

async fn steps(client: Client, url: &Url) -> Vec<Step> {
    let url = url.to_string();
    match client {
        Client::Npm => vec![Step {
            program: "npm",
            args: vec!["config".into(), "set".into(), "registry".into(), url],
        }],
        Client::Pnpm => vec![Step {
            program: "pnpm",
            args: vec!["config".into(), "set".into(), "registry".into(), url],
        }],
        Client::Yarn => {
            let berry = discover::client_setting("yarn", &["--version"])
                .await
                .is_ok_and(|v| !v.starts_with("1."));
            if berry {
                let host = Url::parse(&url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_else(|| "localhost".into());
                vec![
                    Step {
                        program: "yarn",
                        args: vec![
                            "config".into(),
                            "set".into(),
                            "-H".into(),
                            "npmRegistryServer".into(),
                            url,
                        ],
                    },
                    Step {
                        program: "yarn",
                        args: vec![
                            "config".into(),
                            "set".into(),
                            "-H".into(),
                            "unsafeHttpWhitelist".into(),
                            "--json".into(),
                            format!("[\"{host}\"]"),
                        ],
                    },
                ]
            } else {
                vec![Step {
                    program: "yarn",
                    args: vec!["config".into(), "set".into(), "registry".into(), url],
                }]
            }
        }
    }
}

/// Print or apply the configuration of `client` for the node at `url`.
pub async fn run(
    client: Client,
    url: &Url,
    apply: bool,
    config: Option<&Path>,
    recorded_upstream: Option<&str>,
    listen: &std::net::SocketAddr,
) -> Result<()> {
    let steps = steps(client, url).await;
    if !apply {
        println!("# Point {client:?} at Cairn (or run this command with --apply):");
        for step in &steps {
            println!("{}", step.shown());
        }
        if client == Client::Npm {
            println!("# or, in .npmrc: registry={url}");
        }
        return Ok(());
    }
    if recorded_upstream.is_none() {
        match discover::npm(None, listen, Some(url)).await {
            Ok(found) => {
                let path = crate::settings::record(config, "npm-upstream", found.url().as_str())?;
                println!(
                    "recorded npm-upstream = {} in {}",
                    found.url(),
                    path.display()
                );
            }
            Err(e) => println!("no upstream recorded: {e}"),
        }
    }
    for step in &steps {
        let status = tokio::process::Command::new(step.program)
            .args(&step.args)
            .status()
            .await
            .with_context(|| format!("cannot run {}", step.shown()))?;
        if !status.success() {
            bail!("{} failed with {status}", step.shown());
        }
        println!("ran: {}", step.shown());
    }
    Ok(())
}
