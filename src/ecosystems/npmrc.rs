//! npm's configuration files (`.npmrc`), read for what `npm config` will not print: the
//! credentials of each registry. npm itself says which files it reads and what its scoped
//! registries are (`npm config list --json`); this module reads those files' lines.
//!
//! A file is `key = value` lines; `;` and `#` start comments; a value may be quoted and may
//! name environment variables as `${NAME}` (a token is usually kept that way). Credentials are
//! keyed by a registry URL without its scheme (`//host[:port]/path/:_authToken`):
//! - `:_authToken`: a token, sent as `Authorization: Bearer`;
//! - `:_auth`: base64 of `user:password`, sent as Basic;
//! - `:username` with `:_password` (the password base64-encoded), sent as Basic.
//!
//! A registry gets the credentials of the longest such key its URL starts with. The files
//! are read in npm's order of precedence (the project's, the user's, the global one): the
//! first that sets a key wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_mirror::upstream::Credentials;
use url::Url;

/// Largest `.npmrc` read: a config file, not a data file.
const MAX_NPMRC: u64 = 1 << 20;

/// The keys of some `.npmrc` files, the first file's value winning.
#[derive(Debug, Default)]
pub struct Npmrc {
    keys: BTreeMap<String, Value>,
}

/// One value, or why it cannot be used.
#[derive(Clone, Debug)]
enum Value {
    Text(String),
    /// It names an environment variable that is not set.
    Unset(String),
}

impl Npmrc {
    /// `files` in order of precedence; a missing file is skipped, an unreadable one is a
    /// warning. `var` reads an environment variable.
    pub fn read(files: &[PathBuf], var: &dyn Fn(&str) -> Option<String>) -> Npmrc {
        let mut npmrc = Npmrc::default();
        for file in files {
            match read_bounded(file) {
                Ok(Some(text)) => npmrc.add(&text, var),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(target: crate::logging::TARGET, file = %file.display(), "npm configuration not read: {e}")
                }
            }
        }
        npmrc
    }

    /// The lines of one file, below those read before it in precedence.
    pub fn add(&mut self, text: &str, var: &dyn Fn(&str) -> Option<String>) {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with([';', '#']) {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), unquote(value.trim()));
            if key.is_empty() || self.keys.contains_key(key) {
                continue;
            }
            self.keys.insert(key.to_owned(), expand(value, var));
        }
    }

    /// The credentials for requests to `url`, from the longest key it lies under; `Err` says
    /// why credentials that are there cannot be used (never what they are).
    pub fn credentials(&self, url: &Url) -> Result<Option<Credentials>, String> {
        let Some(nerfed) = nerf(url) else {
            return Ok(None);
        };
        let best = self
            .keys
            .keys()
            .filter_map(|key| {
                let (prefix, field) = key.rsplit_once(':')?;
                let is_credential =
                    matches!(field, "_authToken" | "_auth" | "username" | "_password");
                (is_credential && prefix.starts_with("//") && nerfed.starts_with(prefix))
                    .then_some(prefix)
            })
            .max_by_key(|prefix| prefix.len());
        let Some(prefix) = best else {
            return Ok(None);
        };
        let get = |field: &str| -> Result<Option<&str>, String> {
            match self.keys.get(&format!("{prefix}:{field}")) {
                None => Ok(None),
                Some(Value::Text(text)) if text.is_empty() => Ok(None),
                Some(Value::Text(text)) => Ok(Some(text)),
                Some(Value::Unset(var)) => Err(format!(
                    "{prefix}:{field} names the environment variable {var}, which is not set"
                )),
            }
        };
        if let Some(token) = get("_authToken")? {
            return Ok(Some(Credentials::Bearer(token.to_owned())));
        }
        if let Some(auth) = get("_auth")? {
            let decoded = decode_base64(auth)
                .ok_or_else(|| format!("{prefix}:_auth is not base64 of user:password"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| format!("{prefix}:_auth is not base64 of user:password"))?;
            return Ok(Some(Credentials::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            }));
        }
        match (get("username")?, get("_password")?) {
            (Some(user), Some(password)) => {
                let password = decode_base64(password)
                    .ok_or_else(|| format!("{prefix}:_password is not base64"))?;
                Ok(Some(Credentials::Basic {
                    user: user.to_owned(),
                    password,
                }))
            }
            (Some(_), None) | (None, Some(_)) => Err(format!(
                "{prefix} has one of username and _password but not the other"
            )),
            (None, None) => Ok(None),
        }
    }
}

/// `url` as npm keys credentials: `//host[:port]/path/`, the path up to its last `/`.
fn nerf(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = url.path();
    let dir = &path[..path.rfind('/').map_or(0, |at| at + 1)];
    Some(format!("//{host}{port}{dir}"))
}

/// A value without the double or single quotes around it.
fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// `${NAME}` replaced by the variable's value; an unset one makes the value unusable.
fn expand(value: &str, var: &dyn Fn(&str) -> Option<String>) -> Value {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        let Some(end) = rest[at..].find('}') else {
            break;
        };
        let name = &rest[at + 2..at + end];
        out.push_str(&rest[..at]);
        match var(name) {
            Some(found) => out.push_str(&found),
            None => return Value::Unset(name.to_owned()),
        }
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    Value::Text(out)
}

fn decode_base64(text: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The file's text, `None` when it does not exist; at most 1 MiB.
fn read_bounded(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    file.take(MAX_NPMRC).read_to_string(&mut text)?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        (name == "CORP_TOKEN").then(|| "t0ken".to_owned())
    }

    fn npmrc(files: &[&str]) -> Npmrc {
        let mut npmrc = Npmrc::default();
        for text in files {
            npmrc.add(text, &vars);
        }
        npmrc
    }

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    #[test]
    fn tokens_basic_auth_and_variables_are_read_for_the_longest_matching_key() {
        let rc = npmrc(&["; a comment\n\
             # another\n\
             //npm.corp.invalid/:_authToken=wide\n\
             //npm.corp.invalid/api/npm/private/:_authToken=\"${CORP_TOKEN}\"\n\
             //other.invalid:8443/:_auth=dXNlcjpwYXNz\n\
             //third.invalid/:username=bob\n\
             //third.invalid/:_password=c2VjcmV0\n"]);
        assert_eq!(
            rc.credentials(&url("https://npm.corp.invalid/api/npm/private/"))
                .expect("ok"),
            Some(Credentials::Bearer("t0ken".into()))
        );
        assert_eq!(
            rc.credentials(&url("https://npm.corp.invalid/other/"))
                .expect("ok"),
            Some(Credentials::Bearer("wide".into()))
        );
        assert_eq!(
            rc.credentials(&url("https://other.invalid:8443/x/"))
                .expect("ok"),
            Some(Credentials::Basic {
                user: "user".into(),
                password: "pass".into()
            })
        );
        // The port is part of the key.
        assert_eq!(
            rc.credentials(&url("https://other.invalid/x/"))
                .expect("ok"),
            None
        );
        assert_eq!(
            rc.credentials(&url("http://third.invalid/")).expect("ok"),
            Some(Credentials::Basic {
                user: "bob".into(),
                password: "secret".into()
            })
        );
        assert_eq!(
            rc.credentials(&url("https://public.invalid/")).expect("ok"),
            None
        );
    }

    #[test]
    fn the_first_file_wins_and_unusable_credentials_say_why_without_the_secret() {
        let rc = npmrc(&[
            "//h.invalid/:_authToken=project\n",
            "//h.invalid/:_authToken=user\n//u.invalid/:_authToken=${MISSING}\n\
             //b.invalid/:_auth=not-base64!\n//p.invalid/:username=only\n",
        ]);
        assert_eq!(
            rc.credentials(&url("https://h.invalid/")).expect("ok"),
            Some(Credentials::Bearer("project".into()))
        );
        let unset = rc
            .credentials(&url("https://u.invalid/"))
            .expect_err("unset");
        assert!(unset.contains("MISSING"), "{unset}");
        let bad = rc.credentials(&url("https://b.invalid/")).expect_err("bad");
        assert!(
            bad.contains("_auth is not base64") && !bad.contains("not-base64!"),
            "{bad}"
        );
        let half = rc
            .credentials(&url("https://p.invalid/"))
            .expect_err("half");
        assert!(half.contains("username"), "{half}");
    }
}
