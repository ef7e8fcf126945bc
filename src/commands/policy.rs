//! `cairn policy explain PACKAGE…` and `cairn policy check --lockfile FILE…`: what the running
//! node's supply-chain policy decides on versions, asked of the node itself (it has the
//! policy in force and the publication times it recorded). `check` is for CI: it lists every
//! version a lockfile pins that the policy refuses, and fails when there is one.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::Common;
use crate::commands::local_node::LocalNode;
use crate::ecosystems::lockfiles::{self, Item};
use crate::settings::{self, FileSettings};

/// How long one explanation may take (the node may fetch a document first).
const EXPLAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// The running node, or an error saying there is none.
async fn node(common: &Common, file: &FileSettings) -> Result<LocalNode> {
    let listen = settings::listen(common.listen.as_deref(), file)?;
    let data_dir = settings::data_dir(common.data_dir.as_deref(), file);
    match LocalNode::find(listen, &data_dir, EXPLAIN_TIMEOUT).await? {
        Some(node) => Ok(node),
        None => bail!(
            "no node answers at {listen}: the policy is the running node's (start `cairn serve`, \
             or give --listen)"
        ),
    }
}

async fn explain_one(node: &LocalNode, package: &str) -> Result<serde_json::Value> {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("package", package)
        .finish();
    node.call(
        reqwest::Method::GET,
        &format!("api/v1/policy/explain?{query}"),
        &format!("the policy's decision on {package}"),
    )
    .await
}

/// One explanation as text.
fn show(explanation: &serde_json::Value) -> String {
    let mut out = format!(
        "{}: {}\n",
        explanation["package"].as_str().unwrap_or("?"),
        explanation["decision"].as_str().unwrap_or("?")
    );
    if let Some(reason) = explanation["reason"].as_str() {
        out.push_str(&format!("  {reason}\n"));
    }
    for file in explanation["files"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {}: published {}{}{}{}\n",
            file["key"].as_str().unwrap_or("?"),
            file["published"].as_str().unwrap_or("at an unknown time"),
            file["removed"]
                .as_str()
                .map_or(String::new(), |r| format!(", removed upstream {r}")),
            if file["yanked"] == true {
                ", yanked"
            } else {
                ""
            },
            file["refused_by"]
                .as_str()
                .map_or(String::new(), |r| format!(", refused by {r}"))
        ));
    }
    let policy = &explanation["policy"];
    out.push_str(&format!(
        "  policy: min-age {}, cutoff {}, unknown-age {}, on-removal {}, on-yanked {}, {} deny and {} allow rules\n",
        policy["min_age_seconds_here"]
            .as_i64()
            .map_or("none".to_owned(), |s| cairn_mirror::policy::duration_text(
                s.saturating_mul(1000)
            )),
        policy["cutoff"].as_str().unwrap_or("none"),
        policy["unknown_age"].as_str().unwrap_or("?"),
        policy["on_removal"].as_str().unwrap_or("?"),
        policy["on_yanked"].as_str().unwrap_or("?"),
        policy["deny"].as_array().map_or(0, Vec::len),
        policy["allow"].as_array().map_or(0, Vec::len),
    ));
    out
}

pub async fn explain(
    common: &Common,
    file: &FileSettings,
    packages: &[String],
    json: bool,
) -> Result<()> {
    let node = node(common, file).await?;
    let mut all = Vec::new();
    for package in packages {
        all.push(explain_one(&node, package).await?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for explanation in &all {
            print!("{}", show(explanation));
        }
    }
    Ok(())
}

/// `ECOSYSTEM:NAME@VERSION` of a lockfile entry (apt package lists are not judged: they name
/// packages, not versions a registry dates).
fn package_of(item: &Item) -> Option<String> {
    match item {
        Item::Npm(l) => Some(format!("npm:{}@{}", l.name, l.version)),
        Item::Cargo(l) => Some(format!("cargo:{}@{}", l.name, l.version)),
        Item::Pypi(l) => Some(format!("pypi:{}@{}", l.project, l.version)),
        Item::Apt(_) => None,
    }
}

pub async fn check(
    common: &Common,
    file: &FileSettings,
    lockfiles: &[String],
    json: bool,
) -> Result<()> {
    let node = node(common, file).await?;
    let mut packages: Vec<String> = Vec::new();
    for lockfile in lockfiles {
        for item in lockfiles::read(lockfile)? {
            if let Some(package) = package_of(&item)
                && !packages.contains(&package)
            {
                packages.push(package);
            }
        }
    }
    let mut refused = Vec::new();
    for package in &packages {
        let explanation = explain_one(&node, package).await?;
        if explanation["decision"] != "offered" {
            refused.push(explanation);
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "checked": packages.len(),
                "refused": refused,
            }))?
        );
    } else {
        for explanation in &refused {
            print!("{}", show(explanation));
        }
        println!(
            "{} of {} pinned versions refused by the node's policy",
            refused.len(),
            packages.len()
        );
    }
    if !refused.is_empty() {
        bail!(
            "{} pinned version{} refused",
            refused.len(),
            if refused.len() == 1 { " is" } else { "s are" }
        );
    }
    Ok(())
}
