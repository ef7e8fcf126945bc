//! `.netrc` files, where pip (through its HTTP library) and many other tools keep the
//! credentials of hosts: `machine HOST login USER password PASS` entries, and a `default`
//! entry for every other host. Read for the PyPI indexes whose URL carries no credentials.
//! `macdef` blocks (macros, up to an empty line) are skipped.

use std::path::Path;

use cairn_mirror::upstream::Credentials;

/// Largest `.netrc` read.
const MAX_NETRC: u64 = 1 << 20;

/// The entries of one `.netrc`.
#[derive(Debug, Default)]
pub struct Netrc {
    /// `(machine, login, password)`; `None` for the `default` entry.
    entries: Vec<(Option<String>, String, String)>,
}

impl Netrc {
    /// The file at `path`: empty when there is none; a warning when it cannot be read.
    pub fn read(path: &Path) -> Netrc {
        use std::io::Read as _;
        let mut text = String::new();
        match std::fs::File::open(path) {
            Ok(file) => {
                if let Err(e) = file.take(MAX_NETRC).read_to_string(&mut text) {
                    tracing::warn!(target: crate::logging::TARGET, file = %path.display(), "netrc not read: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(target: crate::logging::TARGET, file = %path.display(), "netrc not read: {e}")
            }
        }
        Netrc::parse(&text)
    }

    pub fn parse(text: &str) -> Netrc {
        let mut entries = Vec::new();
        let mut current: Option<(Option<String>, String, String)> = None;
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let mut tokens = line.split_whitespace();
            while let Some(token) = tokens.next() {
                match token {
                    "machine" | "default" => {
                        entries.extend(current.take());
                        let machine = if token == "machine" {
                            tokens.next().map(str::to_owned)
                        } else {
                            None
                        };
                        current = Some((machine, String::new(), String::new()));
                    }
                    "login" | "password" | "account" => {
                        let value = tokens.next().unwrap_or_default().to_owned();
                        if let Some((_, login, password)) = &mut current {
                            match token {
                                "login" => *login = value,
                                "password" => *password = value,
                                _ => {}
                            }
                        }
                    }
                    "macdef" => {
                        // The macro runs to the next empty line.
                        for body in lines.by_ref() {
                            if body.trim().is_empty() {
                                break;
                            }
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        entries.extend(current);
        Netrc { entries }
    }

    /// The credentials of the first `machine` entry `matches` takes (the `default` entry is
    /// not one).
    pub fn credentials_where(&self, matches: impl Fn(&str) -> bool) -> Option<Credentials> {
        self.entries
            .iter()
            .find(|(machine, ..)| machine.as_deref().is_some_and(&matches))
            .map(|(_, user, password)| Credentials::Basic {
                user: user.clone(),
                password: password.clone(),
            })
    }

    /// The credentials for `host`: its `machine` entry, else the `default` one.
    pub fn credentials(&self, host: &str) -> Option<Credentials> {
        let entry = self
            .entries
            .iter()
            .find(|(machine, ..)| {
                machine
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(host))
            })
            .or_else(|| self.entries.iter().find(|(machine, ..)| machine.is_none()))?;
        let (_, user, password) = entry;
        (!user.is_empty() || !password.is_empty()).then(|| Credentials::Basic {
            user: user.clone(),
            password: password.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_then_the_default_and_macros_are_skipped() {
        let netrc = Netrc::parse(
            "machine pypi.corp.invalid\n  login alice\n  password s3cret\n\
             macdef init\n machine evil.invalid login x password y\n\n\
             machine other.invalid login bob password hunter2 account ignored\n\
             default login anon password anon-pass\n",
        );
        assert_eq!(
            netrc.credentials("PYPI.corp.invalid"),
            Some(Credentials::Basic {
                user: "alice".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(
            netrc.credentials("other.invalid"),
            Some(Credentials::Basic {
                user: "bob".into(),
                password: "hunter2".into()
            })
        );
        // Inside a macro: not an entry; the default answers for it.
        assert_eq!(
            netrc.credentials("evil.invalid"),
            Some(Credentials::Basic {
                user: "anon".into(),
                password: "anon-pass".into()
            })
        );
        assert_eq!(
            Netrc::parse("machine a.invalid login u password p\n").credentials("b.invalid"),
            None
        );
        assert_eq!(Netrc::parse("").credentials("a.invalid"), None);
    }
}
