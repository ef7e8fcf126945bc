//! `cairn token create|list|revoke`: the access tokens a node serving with `--auth required`
//! accepts. They live in the data directory's index (beside a running node too, which reads
//! them again every half second), each as the SHA-256 of its secret; the secret is printed once,
//! at creation.

use anyhow::{Context, Result, bail};
use cairn_mirror::index::TokenRecord;
use cairn_mirror::store::Store;
use cairn_mirror::{new_secret, now_ms, secret_hash};

use crate::cli::{Common, TokenCommand};
use crate::settings::{self, FileSettings};

/// Longest token name.
const MAX_NAME: usize = 64;

pub async fn run(common: &Common, file: &FileSettings, command: TokenCommand) -> Result<()> {
    let dir = settings::data_dir(common.data_dir.as_deref(), file);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let store = Store::attach(&dir)
        .with_context(|| format!("cannot open the store in {}", dir.display()))?;
    match command {
        TokenCommand::Create {
            name,
            expires,
            admin,
        } => create(&store, &name, expires.as_deref(), admin),
        TokenCommand::List { json } => list(&store, json),
        TokenCommand::Revoke { name } => {
            check_name(&name)?;
            if !store.revoke_token(&name)? {
                bail!("no token is named {name:?} (see `cairn token list`)");
            }
            eprintln!("revoked {name}: a running node refuses it within half a second");
            Ok(())
        }
    }
}

/// A name is what logs and `list` show: short, and nothing a terminal would act on.
fn check_name(name: &str) -> Result<()> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(fine) {
        bail!(
            "invalid token name {:?}: 1 to {MAX_NAME} letters, digits, '.', '_' or '-'",
            name.chars().take(80).collect::<String>()
        );
    }
    Ok(())
}

fn create(store: &Store, name: &str, expires: Option<&str>, admin: bool) -> Result<()> {
    check_name(name)?;
    let created_at = now_ms();
    let expires_at = match settings::duration("--expires", expires, None)? {
        Some(d) if d.is_zero() => bail!("--expires must be longer than 0s"),
        Some(d) => Some(
            i64::try_from(d.as_millis())
                .ok()
                .and_then(|ms| created_at.checked_add(ms))
                .context("--expires: too long")?,
        ),
        None => None,
    };
    let secret = new_secret()?;
    let token = TokenRecord {
        name: name.to_owned(),
        hash: secret_hash(&secret),
        admin,
        created_at,
        expires_at,
    };
    if !store.create_token(&token)? {
        bail!("a token named {name:?} exists already (revoke it first, or pick another name)");
    }
    // The secret alone on standard output, for scripts; what to do with it on standard error.
    println!("{secret}");
    eprintln!(
        "created {}token {name}{}; its secret is shown only this once. Give it to a client \
         with `cairn setup CLIENT --token SECRET`.",
        if admin { "admin " } else { "" },
        match expires {
            Some(d) => format!(", valid for {d}"),
            None => String::new(),
        }
    );
    Ok(())
}

fn list(store: &Store, json: bool) -> Result<()> {
    let tokens = store.index().tokens()?;
    let now = now_ms();
    if json {
        let rows: Vec<serde_json::Value> = tokens
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "admin": t.admin,
                    "created_at_ms": t.created_at,
                    "expires_at_ms": t.expires_at,
                    "expired": !t.live_at(now),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if tokens.is_empty() {
        println!("no tokens (create one with `cairn token create NAME`)");
    }
    for t in &tokens {
        let expiry = match t.expires_at {
            None => "never expires".to_owned(),
            Some(_) if !t.live_at(now) => "expired".to_owned(),
            Some(at) => format!("expires in {}", human_ms(at - now)),
        };
        let role = if t.admin { "admin" } else { "read" };
        println!("{:<24} {role:<5} {expiry}", t.name);
    }
    Ok(())
}

/// A span of time as the largest whole unit.
fn human_ms(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        for good in ["ci", "laptop-7", "team.build_2"] {
            check_name(good).expect(good);
        }
        let long = "x".repeat(MAX_NAME + 1);
        for bad in ["", "a b", "x\u{1b}[2J", "../etc", "名前", long.as_str()] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn spans_read_as_their_largest_unit() {
        assert_eq!(human_ms(90 * 86_400_000), "90d");
        assert_eq!(human_ms(5_400_000), "1h");
        assert_eq!(human_ms(59_000), "59s");
        assert_eq!(human_ms(-5), "0s");
    }
}
