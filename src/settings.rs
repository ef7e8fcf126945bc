//! Settings: every flag also has a `cairn.toml` key and a `CAIRN_*` environment variable.
//!
//! Precedence: command-line flag, then environment (both handled by clap), then `cairn.toml`,
//! then the built-in default. Each kind of setting is layered by one function here (`value`,
//! `switch`, `pick`, `duration`, `size`, `listen`, `data_dir`, and `from_env` for commands that
//! have no flag for a setting), and every command resolves its settings through them. The config file is `--config FILE` (or `CAIRN_CONFIG`), else
//! `$XDG_CONFIG_HOME/cairn/cairn.toml` when it exists. Keys are the flags' names:
//!
//! ```toml
//! listen = "127.0.0.1:7777"
//! data-dir = "/var/lib/cairn"
//! offline = false
//! public-url = "http://cache.internal:7777/"
//! metadata-ttl = "5m"
//! negative-ttl = "1m"
//! npm-upstream = "https://registry.internal/npm/"
//! cargo-upstream = "https://index.internal/crates/"   # a sparse index
//! pypi-upstream = "https://pypi.internal/simple/"      # a simple index
//! apt-upstream = ["debian=https://deb.internal/debian/"] # NAME=URL, served at /apt/NAME/
//! apt-keyring = ["debian=/usr/share/keyrings/debian-archive-keyring.gpg"]
//! upstream-concurrency = 64
//! tls-cert = "/etc/cairn/cert.pem" # with tls-key: serve HTTPS (HTTP/2 and HTTP/1.1)
//! tls-key = "/etc/cairn/key.pem"
//! auth = "required"          # every route but /healthz needs a token (`cairn token create`)
//! admin-metrics = true       # and /metrics an admin one
//! upstream-deadline = "2m"
//! max-document-size = "256M" # every ecosystem's metadata limit (default: npm 128M, PyPI 64M, others 32M)
//! memory-budget = "64M"      # the in-memory caches of rendered documents and hot small artifacts
//! max-artifact-size = "8G"
//! max-size = "50G"           # artifacts kept at most; least recently used evicted past it
//! max-size-npm = "20G"       # npm's artifacts kept at most (also -cargo, -pypi, -apt)
//! min-free = "5%"            # or a size: free space kept on the store's disk
//! max-connections = 4096     # default: what fits in the descriptor limit, at most 4096
//! header-timeout = "30s"
//! idle-timeout = "60s"
//! log-format = "text"        # or "json"
//! p2p-listen = ["/ip4/0.0.0.0/tcp/7778", "/ip4/0.0.0.0/udp/7778/quic-v1"]
//! bootstrap = ["/ip4/10.0.0.5/tcp/7778/p2p/12D3KooW…"]
//! swarm-key = "/etc/cairn/swarm.key"
//! allow-peer = ["12D3KooW…"]
//! no-mdns = false
//! no-p2p = false
//! trust-peer-metadata = false
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The `cairn.toml` file. Unknown keys are an error, so typos do not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSettings {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub offline: Option<bool>,
    pub public_url: Option<String>,
    pub metadata_ttl: Option<String>,
    pub negative_ttl: Option<String>,
    pub npm_upstream: Option<String>,
    /// `@SCOPE=URL` per npm scope routed to its own registry.
    pub npm_scope: Option<Vec<String>>,
    pub cargo_upstream: Option<String>,
    pub pypi_upstream: Option<String>,
    /// `NAME=URL` per cargo alternative registry.
    pub cargo_registry: Option<Vec<String>>,
    /// `NAME=URL` per PyPI index beside the main one.
    pub pypi_index: Option<Vec<String>>,
    /// `PATTERN=NAME` per route of PyPI projects to an index.
    pub pypi_route: Option<Vec<String>>,
    /// `NAME=URL` per apt archive.
    pub apt_upstream: Option<Vec<String>>,
    /// `NAME=FILE` per apt archive keyring.
    pub apt_keyring: Option<Vec<String>>,
    pub upstream_concurrency: Option<usize>,
    pub upstream_timeout: Option<String>,
    pub upstream_deadline: Option<String>,
    pub max_document_size: Option<String>,
    pub memory_budget: Option<String>,
    pub max_artifact_size: Option<String>,
    pub max_size: Option<String>,
    pub max_size_npm: Option<String>,
    pub max_size_cargo: Option<String>,
    pub max_size_pypi: Option<String>,
    pub max_size_apt: Option<String>,
    pub min_free: Option<String>,
    pub max_connections: Option<usize>,
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub auth: Option<String>,
    pub admin_metrics: Option<bool>,
    pub log_format: Option<String>,
    pub p2p_listen: Option<Vec<String>>,
    pub bootstrap: Option<Vec<String>>,
    pub swarm_key: Option<PathBuf>,
    pub allow_peer: Option<Vec<String>>,
    pub no_mdns: Option<bool>,
    pub no_p2p: Option<bool>,
    pub trust_peer_metadata: Option<bool>,
    /// `[policy]`: the supply-chain policy.
    pub policy: Option<crate::policy::PolicySettings>,
}

/// The HTTP address when no flag, variable or key gives one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7777";

/// The ecosystems that may have a size limit of their own, each with its setting
/// (`max-size-npm`: the flag, the `cairn.toml` key, and `CAIRN_MAX_SIZE_NPM`). `apt` covers
/// every apt archive.
pub const ECOSYSTEM_LIMITS: [(&str, &str); 4] = [
    ("npm", "max-size-npm"),
    ("cargo", "max-size-cargo"),
    ("pypi", "max-size-pypi"),
    ("apt", "max-size-apt"),
];

impl FileSettings {
    /// The `cairn.toml` value of an ecosystem's size limit (`max-size-npm`, …).
    pub fn max_size_of(&self, ecosystem: &str) -> Option<&str> {
        match ecosystem {
            "npm" => self.max_size_npm.as_deref(),
            "cargo" => self.max_size_cargo.as_deref(),
            "pypi" => self.max_size_pypi.as_deref(),
            "apt" => self.max_size_apt.as_deref(),
            _ => None,
        }
    }

    /// The `cairn.toml` value of an ecosystem's upstream key (`npm-upstream`, …).
    pub fn upstream(&self, key: &str) -> Option<&str> {
        match key {
            "npm-upstream" => self.npm_upstream.as_deref(),
            "cargo-upstream" => self.cargo_upstream.as_deref(),
            "pypi-upstream" => self.pypi_upstream.as_deref(),
            _ => None,
        }
    }
}

/// The environment variable of a setting: `npm-upstream` is `CAIRN_NPM_UPSTREAM`.
pub fn env_name(key: &str) -> String {
    format!("CAIRN_{}", key.to_ascii_uppercase().replace('-', "_"))
}

/// A single value: the flag (clap reads the environment variable into it), else `cairn.toml`;
/// `None` leaves the built-in default to the caller.
pub fn value<T>(given: Option<T>, file: Option<T>) -> Option<T> {
    given.or(file)
}

/// A switch: on when the flag (or its variable) or `cairn.toml` turns it on.
pub fn switch(given: bool, file: Option<bool>) -> bool {
    given || file.unwrap_or(false)
}

/// A duration setting named `key`, parsed; `None` when neither layer gives one.
pub fn duration(key: &str, given: Option<&str>, file: Option<&str>) -> Result<Option<Duration>> {
    value(given, file)
        .map(|text| parse_duration(text).context(key.to_owned()))
        .transpose()
}

/// Whether access tokens are required (`--auth`, `auth`): `off` (the default) or `required`.
pub fn auth(given: Option<&str>, file: Option<&str>) -> Result<bool> {
    match value(given, file) {
        None | Some("off") => Ok(false),
        Some("required") => Ok(true),
        Some(other) => bail!(
            "invalid auth {:?}: off or required",
            other.chars().take(40).collect::<String>()
        ),
    }
}

/// A size setting named `key`, parsed; `None` when neither layer gives one.
pub fn size(key: &str, given: Option<&str>, file: Option<&str>) -> Result<Option<u64>> {
    value(given, file)
        .map(|text| parse_size(text).context(key.to_owned()))
        .transpose()
}

/// The HTTP address: `--listen` (or `CAIRN_LISTEN`), else `listen` in `cairn.toml`, else
/// [`DEFAULT_LISTEN`]. A bare port is on 127.0.0.1.
pub fn listen(given: Option<&str>, file: &FileSettings) -> Result<SocketAddr> {
    let text = value(given, file.listen.as_deref()).unwrap_or(DEFAULT_LISTEN);
    parse_listen(text, [127, 0, 0, 1].into())
}

/// The URL of the node listening at `listen`, as a client on this machine reaches it:
/// `127.0.0.1` when it listens on every address, `https` when `cairn.toml` or `CAIRN_TLS_CERT`
/// gives a certificate.
pub fn local_url(listen: SocketAddr, file: &FileSettings) -> Result<url::Url> {
    let host = if listen.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), listen.port())
    } else {
        listen
    };
    let tls = file.tls_cert.is_some() || std::env::var_os("CAIRN_TLS_CERT").is_some();
    let scheme = if tls { "https" } else { "http" };
    url::Url::parse(&format!("{scheme}://{host}/")).context("node URL")
}

/// The data directory: `--data-dir` (or `CAIRN_DATA_DIR`), else `data-dir` in `cairn.toml`,
/// else [`default_data_dir`].
pub fn data_dir(given: Option<&Path>, file: &FileSettings) -> PathBuf {
    value(given, file.data_dir.as_deref())
        .map(Path::to_path_buf)
        .unwrap_or_else(default_data_dir)
}

/// A setting read by a command that has no flag for it (`status` and `setup` report the
/// upstreams `serve` would take): its environment variable, else `cairn.toml`.
pub fn from_env(key: &str, file: Option<&str>) -> Option<String> {
    from_env_in(&|var| std::env::var(var).ok(), key, file)
}

fn from_env_in(
    env: &dyn Fn(&str) -> Option<String>,
    key: &str,
    file: Option<&str>,
) -> Option<String> {
    value(env(&env_name(key)), file.map(str::to_owned))
}

/// True when a setting's environment variable is set to something (`setup` counts on `serve`
/// taking it).
pub fn in_env(key: &str) -> bool {
    std::env::var(env_name(key)).is_ok_and(|v| !v.is_empty())
}

/// A list read by a command that has no flag for it: its environment variable
/// (comma-separated, as clap splits the flag's), else the `cairn.toml` list.
pub fn list_from_env(key: &str, file: &Option<Vec<String>>) -> Vec<String> {
    list_from_env_in(&|var| std::env::var(var).ok(), key, file)
}

fn list_from_env_in(
    env: &dyn Fn(&str) -> Option<String>,
    key: &str,
    file: &Option<Vec<String>>,
) -> Vec<String> {
    let given: Vec<String> = env(&env_name(key))
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    pick(&given, file)
}

/// A repeatable flag's values, else the `cairn.toml` list: flags replace the file's list, they
/// do not add to it.
pub fn pick(flag: &[String], key: &Option<Vec<String>>) -> Vec<String> {
    if flag.is_empty() {
        key.clone().unwrap_or_default()
    } else {
        flag.to_vec()
    }
}

/// Where the config file is, and whether the user named it.
pub fn config_path(flag: Option<&Path>) -> (PathBuf, bool) {
    match flag {
        Some(path) => (path.to_path_buf(), true),
        None => (config_home().join("cairn").join("cairn.toml"), false),
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn config_home() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home().join(".config"))
}

/// `$XDG_DATA_HOME/cairn`, else `~/.local/share/cairn`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home().join(".local").join("share"))
        .join("cairn")
}

/// Read the config file. A missing default file is no error; a missing named one is, unless
/// `may_be_missing` (for `setup`, which creates it).
pub fn load(flag: Option<&Path>, may_be_missing: bool) -> Result<FileSettings> {
    let (path, named) = config_path(flag);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && (!named || may_be_missing) => {
            return Ok(FileSettings::default());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read config {}", path.display())),
    };
    toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
}

/// Set `key = value` in the config file, keeping everything else. Used by `cairn setup`.
pub fn record(flag: Option<&Path>, key: &str, value: &str) -> Result<PathBuf> {
    let (path, _) = config_path(flag);
    edit_toml(&path, |table| {
        table.insert(key.to_owned(), toml::Value::String(value.to_owned()));
    })?;
    Ok(path)
}

/// Record a list under `key` in the config file `cairn.toml` (`flag`, else the default path).
pub fn record_list(flag: Option<&Path>, key: &str, values: &[String]) -> Result<PathBuf> {
    let (path, _) = config_path(flag);
    edit_toml(&path, |table| {
        let list = values.iter().cloned().map(toml::Value::String).collect();
        table.insert(key.to_owned(), toml::Value::Array(list));
    })?;
    Ok(path)
}

/// Read a TOML file (none is an empty table), change it with `edit`, and write it back through
/// a temp file and a rename, so an interrupted write never leaves half a file.
pub fn edit_toml(path: &Path, edit: impl FnOnce(&mut toml::Table)) -> Result<()> {
    edit_toml_with_mode(path, 0o644, edit)
}

/// [`edit_toml`] for a file that holds secrets: written readable by its owner only (mode 0600),
/// from its first byte.
pub fn edit_private_toml(path: &Path, edit: impl FnOnce(&mut toml::Table)) -> Result<()> {
    edit_toml_with_mode(path, 0o600, edit)
}

fn edit_toml_with_mode(path: &Path, mode: u32, edit: impl FnOnce(&mut toml::Table)) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid TOML in {}", path.display()))?;
    edit(&mut table);
    let text =
        toml::to_string(&table).with_context(|| format!("cannot write {}", path.display()))?;
    write_whole(path, &text, mode)
}

/// Write `text` to `path` whole: a temporary file created with `mode` (so a secret is never
/// readable by others, not even for a moment), then renamed into place, so an interrupted
/// write never leaves half a file. The directory is created when missing.
pub fn write_whole(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let temp = path.with_extension("cairn-tmp");
    let _ = std::fs::remove_file(&temp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Parse a duration with its unit: `300s`, `5m`, `2h` or `1d` (`0` alone is allowed: it needs no
/// unit). A bare number is refused: `--metadata-ttl 300` could mean seconds or minutes.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .with_context(|| format!("invalid duration {text:?}: expected e.g. 300s, 5m, 2h"))?;
    let scale = match unit {
        "" if n == 0 => 0,
        "" => bail!("invalid duration {text:?}: give a unit (s, m, h or d), e.g. {n}s"),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("invalid duration {text:?}: unit must be s, m, h or d"),
    };
    let secs = n
        .checked_mul(scale)
        .with_context(|| format!("invalid duration {text:?}: too long"))?;
    Ok(Duration::from_secs(secs))
}

/// Parse an HTTP listen address: `HOST:PORT` (an IP address or a host name such as
/// `localhost`, resolved here), or a bare `PORT` on the default host.
pub fn parse_listen(text: &str, default_host: std::net::IpAddr) -> Result<std::net::SocketAddr> {
    use std::net::{SocketAddr, ToSocketAddrs};
    let text = text.trim();
    let expected =
        "expected HOST:PORT (e.g. 127.0.0.1:7777, 0.0.0.0:7777, localhost:7777) or a port";
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(default_host, port));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("invalid listen address {text:?}: {expected}"))?;
    port.parse::<u16>().with_context(|| {
        format!("invalid listen address {text:?}: bad port {port:?}; {expected}")
    })?;
    if host.is_empty() || host.contains(['/', '[', ']', ' ']) {
        bail!("invalid listen address {text:?}: {expected}");
    }
    let mut found = text
        .to_socket_addrs()
        .with_context(|| format!("invalid listen address {text:?}: cannot resolve {host:?}"))?;
    found
        .next()
        .with_context(|| format!("invalid listen address {text:?}: {host:?} has no address"))
}

/// Parse `min-free`: a size ([`parse_size`]) or a share of the disk such as `5%` (above 0,
/// below 100).
pub fn parse_min_free(text: &str) -> Result<cairn_mirror::MinFree> {
    let Some(share) = text.trim().strip_suffix('%') else {
        return Ok(cairn_mirror::MinFree::Bytes(parse_size(text)?));
    };
    let share: f64 = share
        .trim()
        .parse()
        .with_context(|| format!("invalid share {text:?}: expected e.g. 5%"))?;
    if !(share > 0.0 && share < 100.0) {
        bail!("invalid share {text:?}: must be above 0% and below 100%");
    }
    Ok(cairn_mirror::MinFree::Percent(share))
}

/// A value quoted in an error, cut to its first 32 characters: a value from outside may be
/// anything, of any length.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(32) {
        Some((at, _)) => format!("{:?}…", &text[..at]),
        None => format!("{text:?}"),
    }
}

/// Parse a size: bytes, or a number with `K`, `M` or `G` (binary: `64M` is 64 MiB; a
/// trailing `iB` or `B` is allowed). Errors quote at most 32 characters of the value.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let quoted = excerpt(text);
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .with_context(|| format!("invalid size {quoted}: expected e.g. 512M, 8G"))?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("iB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(unit);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => bail!("invalid size {quoted}: unit must be K, M, G or T"),
    };
    n.checked_mul(1 << shift)
        .filter(|&bytes| bytes > 0)
        .with_context(|| format!("invalid size {quoted}: must be above 0 and below 16 EiB"))
}

#[cfg(test)]
mod tests;
