//! Unit tests of the settings layer: parsing of durations, sizes, listen addresses and
//! limits, and the flag > environment > file > default order.

use super::*;

#[test]
fn sizes() {
    assert_eq!(parse_size("1024").expect("plain"), 1024);
    assert_eq!(parse_size("64M").expect("M"), 64 << 20);
    assert_eq!(parse_size("8GiB").expect("GiB"), 8 << 30);
    assert_eq!(parse_size("512 MB").expect("MB"), 512 << 20);
    assert!(parse_size("0").is_err());
    assert!(parse_size("8 gigs").is_err());
    assert!(parse_size("").is_err());
    let long = parse_size(&"9".repeat(100_000)).expect_err("too big");
    assert!(long.to_string().len() < 100, "{long}");
    assert!(parse_size("-5G").is_err());
    assert!(parse_size("1G\nmax-size = 1").is_err());
}

#[test]
fn durations() {
    assert_eq!(parse_duration("300s").expect("s"), Duration::from_secs(300));
    assert_eq!(parse_duration("0").expect("zero"), Duration::ZERO);
    let bare = parse_duration("300").expect_err("a bare number has no unit");
    assert!(bare.to_string().contains("300s"), "{bare}");
    assert!(parse_duration("99999999999999999d").is_err());
    assert_eq!(parse_duration("5m").expect("m"), Duration::from_secs(300));
    assert_eq!(parse_duration("2h").expect("h"), Duration::from_secs(7200));
    assert!(parse_duration("5 minutes").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn listen_addresses() {
    let local = std::net::IpAddr::from([127, 0, 0, 1]);
    let parse = |text| parse_listen(text, local).map(|a| a.to_string());
    assert_eq!(parse("7777").expect("port"), "127.0.0.1:7777");
    assert_eq!(parse("0.0.0.0:80").expect("ip"), "0.0.0.0:80");
    assert_eq!(parse("[::1]:7777").expect("v6"), "[::1]:7777");
    let named = parse("localhost:7777").expect("localhost");
    assert!(
        named == "127.0.0.1:7777" || named == "[::1]:7777",
        "{named}"
    );
    for bad in [
        "",
        "localhost",
        "localhost:http",
        "host:99999",
        "a b:1",
        "/tmp/sock:1",
    ] {
        let e = parse(bad).expect_err(bad);
        assert!(e.to_string().contains("listen address"), "{bad}: {e}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    assert!(toml::from_str::<FileSettings>("lisen = \"x\"").is_err());
    let ok: FileSettings =
        toml::from_str("listen = \"0.0.0.0:7777\"\nmetadata-ttl = \"1m\"").expect("valid");
    assert_eq!(ok.listen.as_deref(), Some("0.0.0.0:7777"));
}

#[test]
fn record_keeps_other_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cairn.toml");
    std::fs::write(&path, "listen = \"0.0.0.0:1\"\n").expect("write");
    record(Some(&path), "npm-upstream", "http://up.invalid/").expect("record");
    let loaded = load(Some(&path), false).expect("load");
    assert!(load(Some(&dir.path().join("missing.toml")), false).is_err());
    assert!(load(Some(&dir.path().join("missing.toml")), true).is_ok());
    assert_eq!(loaded.listen.as_deref(), Some("0.0.0.0:1"));
    assert_eq!(loaded.npm_upstream.as_deref(), Some("http://up.invalid/"));
}

#[test]
fn a_given_value_beats_the_file_which_beats_the_default() {
    assert_eq!(value(Some(1), Some(2)), Some(1));
    assert_eq!(value(None, Some(2)), Some(2));
    assert_eq!(value::<u8>(None, None), None);
    assert!(switch(true, Some(false)));
    assert!(switch(false, Some(true)));
    assert!(!switch(false, None));
    let file = Some(vec!["a=1".to_owned(), "b=2".to_owned()]);
    assert_eq!(
        pick(&["c=3".to_owned()], &file),
        ["c=3"],
        "flags replace the list"
    );
    assert_eq!(pick(&[], &file), ["a=1", "b=2"]);
    assert!(pick(&[], &None).is_empty());
}

#[test]
fn min_free_is_a_size_or_a_share_of_the_disk() {
    use cairn_mirror::MinFree;
    assert_eq!(parse_min_free("5%").expect("share"), MinFree::Percent(5.0));
    assert_eq!(
        parse_min_free(" 2.5 %").expect("share"),
        MinFree::Percent(2.5)
    );
    assert_eq!(
        parse_min_free("10G").expect("size"),
        MinFree::Bytes(10 << 30)
    );
    for bad in ["0%", "100%", "-1%", "x%", "0", "5 percent"] {
        assert!(parse_min_free(bad).is_err(), "{bad:?} accepted");
    }
    // A share of an unknown disk keeps the 1 MiB floor; so does a tiny size.
    assert_eq!(MinFree::Percent(5.0).bytes(None), 1 << 20);
    assert_eq!(MinFree::Bytes(10).bytes(Some(1 << 40)), 1 << 20);
    assert_eq!(MinFree::Percent(5.0).bytes(Some(100 << 30)), 5 << 30);
}

#[test]
fn durations_and_sizes_layer_and_name_their_key() {
    let ttl = duration("metadata-ttl", Some("10s"), Some("5m")).expect("flag");
    assert_eq!(ttl, Some(Duration::from_secs(10)));
    let ttl = duration("metadata-ttl", None, Some("5m")).expect("file");
    assert_eq!(ttl, Some(Duration::from_secs(300)));
    assert_eq!(duration("metadata-ttl", None, None).expect("none"), None);
    // A bad value is an error naming the setting, even when a lower layer is fine.
    let e = duration("negative-ttl", Some("5 minutes"), Some("1m")).expect_err("bad");
    assert_eq!(e.to_string(), "negative-ttl");
    assert_eq!(
        size("max-artifact-size", Some("1G"), Some("2G")).expect("flag"),
        Some(1 << 30)
    );
    assert_eq!(
        size("max-artifact-size", None, Some("2G")).expect("file"),
        Some(2 << 30)
    );
    let e = size("max-document-size", None, Some("0")).expect_err("zero");
    assert_eq!(e.to_string(), "max-document-size");
}

#[test]
fn listen_and_data_dir_take_the_flag_then_the_file_then_the_default() {
    let file: FileSettings =
        toml::from_str("listen = \"0.0.0.0:1\"\ndata-dir = \"/from/file\"").expect("toml");
    let none = FileSettings::default();
    assert_eq!(
        listen(Some("2"), &file).expect("flag").to_string(),
        "127.0.0.1:2"
    );
    assert_eq!(listen(None, &file).expect("file").to_string(), "0.0.0.0:1");
    assert_eq!(
        listen(None, &none).expect("default").to_string(),
        DEFAULT_LISTEN
    );
    assert!(listen(Some("nowhere"), &file).is_err());
    assert_eq!(
        data_dir(Some(Path::new("/flag")), &file),
        Path::new("/flag")
    );
    assert_eq!(data_dir(None, &file), Path::new("/from/file"));
    assert_eq!(data_dir(None, &none), default_data_dir());
}

#[test]
fn commands_without_the_flag_take_the_variable_then_the_file() {
    assert_eq!(env_name("npm-upstream"), "CAIRN_NPM_UPSTREAM");
    let env = |var: &str| {
        (var == "CAIRN_NPM_UPSTREAM" || var == "CAIRN_APT_UPSTREAM")
            .then(|| "a=http://env.invalid/,b=http://env2.invalid/".to_owned())
    };
    assert_eq!(
        from_env_in(&env, "npm-upstream", Some("http://file.invalid/")).as_deref(),
        Some("a=http://env.invalid/,b=http://env2.invalid/")
    );
    assert_eq!(
        from_env_in(&env, "cargo-upstream", Some("http://file.invalid/")).as_deref(),
        Some("http://file.invalid/")
    );
    assert_eq!(from_env_in(&env, "pypi-upstream", None), None);
    let file = Some(vec!["c=http://file.invalid/".to_owned()]);
    assert_eq!(
        list_from_env_in(&env, "apt-upstream", &file),
        ["a=http://env.invalid/", "b=http://env2.invalid/"]
    );
    assert_eq!(
        list_from_env_in(&env, "apt-keyring", &file),
        ["c=http://file.invalid/"]
    );
}

#[test]
fn upstream_keys_read_their_own_field() {
    let file: FileSettings = toml::from_str(
        "npm-upstream = \"http://n.invalid/\"\ncargo-upstream = \"http://c.invalid/\"\n\
         pypi-upstream = \"http://p.invalid/\"",
    )
    .expect("toml");
    assert_eq!(file.upstream("npm-upstream"), Some("http://n.invalid/"));
    assert_eq!(file.upstream("cargo-upstream"), Some("http://c.invalid/"));
    assert_eq!(file.upstream("pypi-upstream"), Some("http://p.invalid/"));
    assert_eq!(file.upstream("apt-upstream"), None);
}

#[test]
fn auth_is_off_or_required_and_nothing_else() {
    assert!(!auth(None, None).expect("default"));
    assert!(auth(None, Some("required")).expect("file"));
    assert!(!auth(Some("off"), Some("required")).expect("the flag wins"));
    for bad in ["on", "Required", "", "required\n"] {
        let e = auth(Some(bad), None).expect_err(bad).to_string();
        assert!(e.contains("invalid auth"), "{e}");
    }
}
