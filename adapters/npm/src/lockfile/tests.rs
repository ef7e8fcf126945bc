//! Lockfile readers on small, realistic fixtures of every format (hosts are `upstream.invalid`;
//! digests are made up from a seed per package so each entry's can be checked).

use base64::Engine as _;

use super::*;

/// A made-up tarball digest for `seed`.
fn digest(algorithm: Algorithm, seed: &str) -> Digest {
    Digest::of(algorithm, seed.as_bytes())
}

/// Its SRI form: `sha512-<base64>`.
fn sri(algorithm: Algorithm, seed: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest(algorithm, seed).bytes());
    format!("{}-{b64}", algorithm.name())
}

fn sha512(seed: &str) -> String {
    sri(Algorithm::Sha512, seed)
}

/// (name, version, line) of each result.
fn summary(locked: &[Locked]) -> Vec<(&str, &str, usize)> {
    locked
        .iter()
        .map(|l| (l.name.as_str(), l.version.as_str(), l.line))
        .collect()
}

fn err(result: Result<Vec<Locked>, LockfileError>) -> String {
    result.expect_err("should fail").to_string()
}

// ----- package-lock.json ---------------------------------------------------------------------

fn package_lock_v3() -> String {
    let (a, b, alias, omit) = (sha512("a"), sha512("b"), sha512("bar"), sha512("omit"));
    let url = sha512("url");
    format!(
        r#"{{
  "name": "app",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {{
    "": {{
      "name": "app",
      "version": "1.0.0",
      "workspaces": ["packages/w"],
      "dependencies": {{ "a": "^1.0.0", "foo": "npm:bar@^2.0.0" }}
    }},
    "node_modules/a": {{
      "version": "1.0.0",
      "resolved": "https://upstream.invalid/a/-/a-1.0.0.tgz",
      "integrity": "{a}",
      "dependencies": {{ "@s/b": "^2.0.0" }}
    }},
    "node_modules/a/node_modules/@s/b": {{
      "version": "2.1.0",
      "resolved": "https://upstream.invalid/@s/b/-/b-2.1.0.tgz",
      "integrity": "{b}"
    }},
    "node_modules/c/node_modules/@s/b": {{
      "version": "2.1.0",
      "resolved": "https://upstream.invalid/@s/b/-/b-2.1.0.tgz",
      "integrity": "{b}"
    }},
    "node_modules/foo": {{
      "name": "bar",
      "version": "2.0.1",
      "resolved": "https://upstream.invalid/bar/-/bar-2.0.1.tgz",
      "integrity": "{alias}"
    }},
    "node_modules/w": {{
      "resolved": "packages/w",
      "link": true
    }},
    "packages/w": {{
      "name": "w",
      "version": "0.1.0"
    }},
    "node_modules/a/node_modules/inner": {{
      "version": "0.0.1",
      "inBundle": true
    }},
    "node_modules/g": {{
      "version": "1.0.0",
      "resolved": "git+ssh://git@upstream.invalid/g.git#0123456789abcdef0123456789abcdef01234567"
    }},
    "node_modules/local": {{
      "version": "1.0.0",
      "resolved": "file:../local-1.0.0.tgz",
      "integrity": "{url}"
    }},
    "node_modules/remote": {{
      "version": "1.0.0",
      "resolved": "https://upstream.invalid/downloads/remote-latest.tgz",
      "integrity": "{url}"
    }},
    "node_modules/omitted": {{
      "version": "3.0.0",
      "integrity": "{omit}"
    }}
  }}
}}
"#
    )
}

#[test]
fn package_lock_v3_packages() {
    let locked = package_lock("package-lock.json", &package_lock_v3()).expect("read");
    assert_eq!(
        summary(&locked),
        [
            ("@s/b", "2.1.0", 19),
            ("a", "1.0.0", 13),
            ("bar", "2.0.1", 29),
            ("omitted", "3.0.0", 61),
        ]
    );
    assert_eq!(locked[0].integrity, digest(Algorithm::Sha512, "b"));
    assert_eq!(locked[2].integrity, digest(Algorithm::Sha512, "bar"));
}

#[test]
fn package_lock_v2_prefers_packages_and_shrinkwrap_reads_the_same() {
    let a = sha512("a");
    let text = format!(
        r#"{{
  "name": "app",
  "lockfileVersion": 2,
  "packages": {{
    "": {{ "name": "app" }},
    "node_modules/a": {{
      "version": "1.0.0",
      "resolved": "https://upstream.invalid/a/-/a-1.0.0.tgz",
      "integrity": "{a}"
    }}
  }},
  "dependencies": {{
    "a": {{
      "version": "1.0.0",
      "resolved": "https://upstream.invalid/a/-/a-1.0.0.tgz",
      "integrity": "{a}"
    }}
  }}
}}"#
    );
    let want = [("a", "1.0.0", 6)];
    assert_eq!(
        summary(&read("app/package-lock.json", &text).expect("read")),
        want
    );
    assert_eq!(
        summary(&read("app/npm-shrinkwrap.json", &text).expect("read")),
        want
    );
}

#[test]
fn package_lock_v1_tree() {
    let (sha1_only, b, bar) = (sri(Algorithm::Sha1, "old"), sha512("b"), sha512("bar"));
    let both = format!("{} {}", sri(Algorithm::Sha1, "a"), sha512("a"));
    let text = format!(
        r#"{{
  "name": "app",
  "version": "1.0.0",
  "lockfileVersion": 1,
  "requires": true,
  "dependencies": {{
    "@s/b": {{
      "version": "2.1.0",
      "resolved": "https://upstream.invalid/@s/b/-/b-2.1.0.tgz",
      "integrity": "{b}"
    }},
    "a": {{
      "version": "1.0.0",
      "resolved": "https://upstream.invalid/a/-/a-1.0.0.tgz",
      "integrity": "{both}",
      "requires": {{ "@s/b": "^2.0.0" }},
      "dependencies": {{
        "@s/b": {{
          "version": "2.1.0",
          "resolved": "https://upstream.invalid/@s/b/-/b-2.1.0.tgz",
          "integrity": "{b}"
        }},
        "old": {{
          "version": "0.1.0",
          "resolved": "https://upstream.invalid/old/-/old-0.1.0.tgz",
          "integrity": "{sha1_only}"
        }},
        "inner": {{ "version": "1.0.0", "bundled": true }}
      }}
    }},
    "foo": {{
      "version": "npm:bar@2.0.1",
      "resolved": "https://upstream.invalid/bar/-/bar-2.0.1.tgz",
      "integrity": "{bar}"
    }},
    "g": {{
      "version": "git+ssh://git@upstream.invalid/g.git#0123456789abcdef0123456789abcdef01234567",
      "from": "git+ssh://git@upstream.invalid/g.git"
    }},
    "local": {{ "version": "file:../local" }}
  }}
}}"#
    );
    let locked = package_lock("package-lock.json", &text).expect("read");
    assert_eq!(
        summary(&locked),
        [
            ("@s/b", "2.1.0", 7),
            ("a", "1.0.0", 12),
            ("bar", "2.0.1", 31),
            ("old", "0.1.0", 23),
        ]
    );
    assert_eq!(locked[1].integrity, digest(Algorithm::Sha512, "a"));
    assert_eq!(locked[3].integrity, digest(Algorithm::Sha1, "old"));
}

#[test]
fn package_lock_errors_name_the_line() {
    assert_eq!(
        err(package_lock(
            "package-lock.json",
            "{\n  \"lockfileVersion\": 3,\n  \"packages\": {\n    \"\": {}\n    \"x\": {}\n  }\n}\n"
        )),
        "package-lock.json:5: not valid JSON: expected `,` or `}` at line 5 column 5"
    );
    let no_digest = "{\n  \"lockfileVersion\": 3,\n  \"packages\": {\n    \"node_modules/a\": {\n      \"version\": \"1.0.0\",\n      \"resolved\": \"https://upstream.invalid/a/-/a-1.0.0.tgz\",\n      \"integrity\": \"sha512-!!\"\n    }\n  }\n}\n";
    assert_eq!(
        err(package_lock("package-lock.json", no_digest)),
        "package-lock.json:4: a@1.0.0: integrity \"sha512-!!\" has no usable digest"
    );
    let missing = no_digest.replace(",\n      \"integrity\": \"sha512-!!\"", "");
    assert_eq!(
        err(package_lock("package-lock.json", &missing)),
        "package-lock.json:4: a@1.0.0 has no integrity"
    );
    let bad_name = no_digest.replace("node_modules/a\"", "node_modules/_a\"");
    assert!(
        err(package_lock("package-lock.json", &bad_name))
            .starts_with("package-lock.json:4: package name \"_a\" may not start"),
    );
    let wrong_type = no_digest.replace("\"1.0.0\"", "1");
    assert!(
        err(package_lock("package-lock.json", &wrong_type))
            .starts_with("package-lock.json:4: packages[\"node_modules/a\"]: invalid type"),
    );
    assert_eq!(
        err(package_lock(
            "package-lock.json",
            "{\n  \"lockfileVersion\": 4\n}"
        )),
        "package-lock.json:2: lockfileVersion 4 is not supported (1, 2 and 3 are)"
    );
}

#[test]
fn conflicting_digests_of_one_version_are_refused() {
    let (x, y) = (sha512("x"), sha512("y"));
    let text = format!(
        "{{\n\"lockfileVersion\": 3,\n\"packages\": {{\n\
         \"node_modules/a\": {{\"version\": \"1.0.0\", \"integrity\": \"{x}\"}},\n\
         \"node_modules/b/node_modules/a\": {{\"version\": \"1.0.0\", \"integrity\": \"{y}\"}}\n}}}}"
    );
    let message = err(package_lock("package-lock.json", &text));
    assert!(
        message.starts_with("package-lock.json:5: a@1.0.0: integrity sha512:")
            && message.ends_with("on line 4"),
        "{message}"
    );
}

// ----- yarn.lock -----------------------------------------------------------------------------

#[test]
fn yarn_v1() {
    let (b, bar, a) = (sha512("b"), sha512("bar"), sha512("a"));
    let old = hex::encode(digest(Algorithm::Sha1, "old").bytes());
    let text = format!(
        r#"# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.
# yarn lockfile v1


"@s/b@^2.0.0", "@s/b@^2.1.0":
  version "2.1.0"
  resolved "https://upstream.invalid/@s/b/-/b-2.1.0.tgz#{old}"
  integrity {b}

a@^1.0.0:
  version "1.0.0"
  resolved "https://upstream.invalid/a/-/a-1.0.0.tgz"
  integrity {a}
  dependencies:
    "@s/b" "^2.0.0"
    foo "npm:bar@^2.0.0"

bar@^2.0.0:
  version "2.0.1"
  resolved "https://upstream.invalid/bar/-/bar-2.0.1.tgz"
  integrity {bar}

"foo@npm:bar@^2.0.0":
  version "2.0.1"
  resolved "https://upstream.invalid/bar/-/bar-2.0.1.tgz"
  integrity {bar}

old@~0.1.0:
  version "0.1.0"
  resolved "https://upstream.invalid/old/-/old-0.1.0.tgz#{old}"

"g@git+https://upstream.invalid/g.git":
  version "1.0.0"
  resolved "git+https://upstream.invalid/g.git#{old}"

"local@file:../local":
  version "1.0.0"
"#
    );
    let locked = yarn_lock("yarn.lock", &text).expect("read");
    assert_eq!(
        summary(&locked),
        [
            ("@s/b", "2.1.0", 5),
            ("a", "1.0.0", 10),
            ("bar", "2.0.1", 18),
            ("old", "0.1.0", 28),
        ]
    );
    assert_eq!(locked[0].integrity, digest(Algorithm::Sha512, "b"));
    assert_eq!(locked[3].integrity, digest(Algorithm::Sha1, "old"));
    assert_eq!(
        summary(&read("web/yarn.lock", &text).expect("read")).len(),
        4
    );
}

#[test]
fn yarn_berry_is_refused() {
    let text = "# This file is generated by running \"yarn install\" inside your project.\n\
                # Manual changes might be lost - proceed with caution!\n\n\
                __metadata:\n  version: 8\n  cacheKey: 10c0\n\n\
                \"a@npm:^1.0.0\":\n  version: 1.0.0\n  resolution: \"a@npm:1.0.0\"\n  \
                checksum: 10c0/0123abcd\n  languageName: node\n  linkType: hard\n";
    let message = err(yarn_lock("yarn.lock", text));
    assert!(
        message.starts_with("yarn.lock:4: a yarn berry (v2+) lockfile")
            && message.contains("not registry digests"),
        "{message}"
    );
    assert!(err(read("x.lock", text)).starts_with("x.lock:4: a yarn berry"));
}

#[test]
fn yarn_errors_name_the_line() {
    assert_eq!(
        err(yarn_lock(
            "yarn.lock",
            "# yarn lockfile v1\n\na@^1:\n  resolved \"https://upstream.invalid/a/-/a-1.0.0.tgz\"\n\nb@^1:\n  version \"1.0.0\"\n"
        )),
        "yarn.lock:3: a has no version"
    );
    assert_eq!(
        err(yarn_lock("yarn.lock", "# yarn lockfile v1\n\njunk\n")),
        "yarn.lock:3: expected an entry header `name@range:`, got \"junk\""
    );
    assert_eq!(
        err(yarn_lock("yarn.lock", "\n  version \"1.0.0\"\n")),
        "yarn.lock:2: indented line outside an entry"
    );
    assert_eq!(
        err(yarn_lock(
            "yarn.lock",
            "a@^1:\n  version \"1.0.0\"\n  resolved \"https://upstream.invalid/a/-/a-1.0.0.tgz\"\n"
        )),
        "yarn.lock:1: a@1.0.0 has no integrity"
    );
}

// ----- pnpm-lock.yaml ------------------------------------------------------------------------

#[test]
fn pnpm_v6() {
    let (b, react, dom, a) = (sha512("b"), sha512("react"), sha512("dom"), sha512("a"));
    let text = format!(
        r#"lockfileVersion: '6.0'

settings:
  autoInstallPeers: true
  excludeLinksFromLockfile: false

dependencies:
  react-dom:
    specifier: ^18.2.0
    version: 18.2.0(react@18.2.0)

packages:

  /@s/b@2.1.0:
    resolution: {{integrity: {b}}}
    engines: {{node: '>=14'}}
    dev: false

  /a@1.0.0:
    resolution: {{integrity: {a}, tarball: https://upstream.invalid/a/-/a-1.0.0.tgz}}
    dependencies:
      '@s/b': 2.1.0
    dev: false

  /react-dom@18.2.0(react@18.2.0):
    resolution: {{integrity: {dom}}}
    peerDependencies:
      react: ^18.2.0
    dependencies:
      react: 18.2.0
    dev: false

  /react-dom@18.2.0(react@18.3.0):
    resolution: {{integrity: {dom}}}
    dev: false

  /react@18.2.0:
    resolution: {{integrity: {react}}}
    dev: false

  github.com/upstream/g/0123456789abcdef:
    resolution: {{tarball: https://upstream.invalid/g/tar.gz/0123456789abcdef}}
    name: g
    version: 1.0.0
    dev: false

  file:packages/local:
    resolution: {{directory: packages/local, type: directory}}
    name: local
    dev: false
"#
    );
    let locked = pnpm_lock("pnpm-lock.yaml", &text).expect("read");
    assert_eq!(
        summary(&locked),
        [
            ("@s/b", "2.1.0", 14),
            ("a", "1.0.0", 19),
            ("react", "18.2.0", 37),
            ("react-dom", "18.2.0", 25),
        ]
    );
    assert_eq!(locked[3].integrity, digest(Algorithm::Sha512, "dom"));
    assert_eq!(
        summary(&read("pnpm-lock.yaml", &text).expect("read")).len(),
        4
    );
}

#[test]
fn pnpm_v9() {
    let (b, react, dom) = (sha512("b"), sha512("react"), sha512("dom"));
    let text = format!(
        r#"lockfileVersion: '9.0'

settings:
  autoInstallPeers: true
  excludeLinksFromLockfile: false

importers:

  .:
    dependencies:
      react-dom:
        specifier: ^18.2.0
        version: 18.2.0(react@18.2.0)
      string-width-cjs:
        specifier: npm:string-width@^4.2.0
        version: string-width@4.2.3

packages:

  '@s/b@2.1.0':
    resolution: {{integrity: {b}}}
    engines: {{node: '>=14'}}

  react-dom@18.2.0:
    resolution: {{integrity: {dom}}}
    peerDependencies:
      react: ^18.2.0

  react@18.2.0:
    resolution:
      integrity: {react}

  string-width@4.2.3:
    resolution: {{integrity: '{react}'}}

  remote@https://upstream.invalid/downloads/remote-latest.tgz:
    resolution: {{tarball: https://upstream.invalid/downloads/remote-latest.tgz}}
    version: 1.0.0

  g@git+https://upstream.invalid/g.git#0123456789abcdef:
    resolution: {{commit: 0123456789abcdef, repo: https://upstream.invalid/g.git, type: git}}
    version: 1.0.0

snapshots:

  '@s/b@2.1.0': {{}}

  react-dom@18.2.0(react@18.2.0):
    dependencies:
      react: 18.2.0
"#
    );
    let locked = pnpm_lock("pnpm-lock.yaml", &text).expect("read");
    assert_eq!(
        summary(&locked),
        [
            ("@s/b", "2.1.0", 20),
            ("react", "18.2.0", 29),
            ("react-dom", "18.2.0", 24),
            ("string-width", "4.2.3", 33),
        ]
    );
    assert_eq!(locked[1].integrity, digest(Algorithm::Sha512, "react"));
    assert_eq!(locked[3].integrity, digest(Algorithm::Sha512, "react"));
}

#[test]
fn pnpm_v5_slash_keys() {
    let (b, dom) = (sha512("b"), sha512("dom"));
    let text = format!(
        "lockfileVersion: 5.4\n\nspecifiers:\n  react-dom: ^18.2.0\n\npackages:\n\n  \
         /@s/b/2.1.0:\n    resolution: {{integrity: {b}}}\n    dev: false\n\n  \
         /react-dom/18.2.0_react@18.2.0:\n    resolution: {{integrity: {dom}}}\n    dev: false\n"
    );
    assert_eq!(
        summary(&read("lock.yaml", &text).expect("sniffed as pnpm")),
        [("@s/b", "2.1.0", 8), ("react-dom", "18.2.0", 12)]
    );
}

#[test]
fn pnpm_errors_name_the_line() {
    let head = "lockfileVersion: '9.0'\n\npackages:\n\n";
    assert_eq!(
        err(pnpm_lock(
            "pnpm-lock.yaml",
            &format!("{head}  a@1.0.0:\n    engines: {{node: '>=14'}}\n\n  b@1.0.0: {{}}\n")
        )),
        "pnpm-lock.yaml:5: a@1.0.0 has no resolution"
    );
    assert_eq!(
        err(pnpm_lock(
            "pnpm-lock.yaml",
            &format!("{head}  a@1.0.0:\n    resolution: {{integrity: 'sha512-x}}\n")
        )),
        "pnpm-lock.yaml:6: malformed resolution \"resolution: {integrity: 'sha512-x}\""
    );
    assert_eq!(
        err(pnpm_lock(
            "pnpm-lock.yaml",
            &format!(
                "{head}  a@1.0.0:\n    resolution: {{tarball: https://upstream.invalid/a/-/a-1.0.0.tgz}}\n"
            )
        )),
        "pnpm-lock.yaml:5: a@1.0.0 has no integrity"
    );
    assert_eq!(
        err(pnpm_lock("pnpm-lock.yaml", "lockfileVersion: '3.0'\n")),
        "pnpm-lock.yaml:1: lockfileVersion '3.0' is not supported (5.x to 9.0 are)"
    );
    assert_eq!(
        err(pnpm_lock(
            "pnpm-lock.yaml",
            &format!(
                "{head}  '@bad@1.0.0':\n    resolution: {{integrity: {}}}\n",
                sha512("x")
            )
        )),
        "pnpm-lock.yaml:5: package name \"@bad\" contains '@', which npm does not allow"
    );
}

// ----- format selection ----------------------------------------------------------------------

#[test]
fn format_by_name_then_content() {
    assert_eq!(
        summary(&read("lock.json", &package_lock_v3()).expect("sniffed as JSON")).len(),
        4
    );
    let yarn = format!(
        "# yarn lockfile v1\n\na@^1.0.0:\n  version \"1.0.0\"\n  resolved \"https://upstream.invalid/a/-/a-1.0.0.tgz\"\n  integrity {}\n",
        sha512("a")
    );
    assert_eq!(
        summary(&read("deps.lock", &yarn).expect("sniffed as yarn")),
        [("a", "1.0.0", 3)]
    );
    // The name wins over the content.
    assert!(err(read("pnpm-lock.yaml", &yarn)).starts_with("pnpm-lock.yaml:"));
    assert_eq!(
        err(read(
            "Gemfile.lock",
            "GEM\n  remote: https://upstream.invalid/\n"
        )),
        "Gemfile.lock:0: unknown lockfile format: expected a package-lock.json, \
         npm-shrinkwrap.json, yarn.lock (v1) or pnpm-lock.yaml"
    );
}

#[test]
fn empty_lockfiles_pin_nothing() {
    assert_eq!(
        read(
            "package-lock.json",
            "{\"lockfileVersion\": 3, \"packages\": {\"\": {}}}"
        ),
        Ok(vec![])
    );
    assert_eq!(read("yarn.lock", "# yarn lockfile v1\n"), Ok(vec![]));
    assert_eq!(
        read("pnpm-lock.yaml", "lockfileVersion: '9.0'\n"),
        Ok(vec![])
    );
}
