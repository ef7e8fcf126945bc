//! The credentials apt itself would send to an archive: `ETC/auth.conf`, then
//! `ETC/auth.conf.d/*.conf` in name order, in netrc form (`machine M login L password P`). A
//! machine is `[SCHEME://]HOST[:PORT][/PATH]`: it names an archive when its host (and its
//! scheme, port and path prefix, where it gives them) match the archive's URL. The first entry
//! that matches wins, as in apt.

use std::path::Path;

use cairn_mirror::upstream::Credentials;
use url::Url;

use crate::ecosystems::netrc::Netrc;

/// The credentials for `url` from apt's auth files under `etc`, if any.
pub fn credentials(etc: &Path, url: &Url) -> Option<Credentials> {
    let mut files = vec![etc.join("auth.conf")];
    if let Ok(dir) = std::fs::read_dir(etc.join("auth.conf.d")) {
        let mut more: Vec<_> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .find_map(|file| Netrc::read(file).credentials_where(|machine| names(machine, url)))
}

/// True when the auth-file machine `machine` names `url`.
fn names(machine: &str, url: &Url) -> bool {
    let (scheme, rest) = match machine.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, machine),
    };
    if scheme.is_some_and(|s| !s.eq_ignore_ascii_case(url.scheme())) {
        return false;
    }
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, path),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) => (host, Some(port)),
            Err(_) => return false,
        },
        None => (authority, None),
    };
    let host_matches = url.host_str().is_some_and(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']'))
    });
    let port_matches = port.is_none_or(|p| Some(p) == url.port_or_known_default());
    host_matches
        && port_matches
        && url
            .path()
            .trim_start_matches('/')
            .starts_with(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_name_an_archive_by_host_then_scheme_port_and_path() {
        let url = Url::parse("https://apt.corp.invalid:8443/debian/").expect("url");
        for (machine, expect) in [
            ("apt.corp.invalid", true),
            ("APT.corp.invalid:8443", true),
            ("https://apt.corp.invalid/debian", true),
            ("apt.corp.invalid/debian/", true),
            ("http://apt.corp.invalid", false),
            ("apt.corp.invalid:443", false),
            ("apt.corp.invalid/ubuntu", false),
            ("corp.invalid", false),
            ("apt.corp.invalid:port", false),
        ] {
            assert_eq!(names(machine, &url), expect, "{machine}");
        }
    }

    #[test]
    fn auth_conf_then_the_directory_in_name_order() {
        let etc = tempfile::tempdir().expect("tempdir");
        let dir = etc.path().join("auth.conf.d");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("20-corp.conf"),
            "machine apt.corp.invalid/debian login second password two\n",
        )
        .expect("conf");
        std::fs::write(
            dir.join("10-corp.conf"),
            "machine apt.corp.invalid login first password one\n",
        )
        .expect("conf");
        std::fs::write(
            dir.join("ignored.txt"),
            "machine other.invalid login x password y\n",
        )
        .expect("txt");
        let url = Url::parse("https://apt.corp.invalid/debian/").expect("url");
        assert_eq!(
            credentials(etc.path(), &url),
            Some(Credentials::Basic {
                user: "first".into(),
                password: "one".into()
            })
        );
        std::fs::write(
            etc.path().join("auth.conf"),
            "machine apt.corp.invalid/debian/ login top password zero\n",
        )
        .expect("auth.conf");
        assert_eq!(
            credentials(etc.path(), &url),
            Some(Credentials::Basic {
                user: "top".into(),
                password: "zero".into()
            })
        );
        let other = Url::parse("https://other.invalid/").expect("url");
        assert_eq!(credentials(etc.path(), &other), None);
    }
}
