//! The table of fuzz targets: each calls a parser the way Cairn calls it on outside input.

mod adapters;
mod formats;
mod peers;

use crate::Target;

/// Every target, by name. `fuzz/corpus/<name>/` holds its seeds.
pub static TARGETS: &[Target] = &[
    Target {
        name: "npm-packument",
        run: adapters::npm_packument,
    },
    Target {
        name: "cargo-index",
        run: adapters::cargo_index,
    },
    Target {
        name: "cargo-config",
        run: adapters::cargo_config,
    },
    Target {
        name: "pypi-page",
        run: adapters::pypi_page,
    },
    Target {
        name: "pypi-wheel",
        run: adapters::pypi_wheel,
    },
    Target {
        name: "apt-inrelease",
        run: adapters::apt_inrelease,
    },
    Target {
        name: "apt-release",
        run: adapters::apt_release,
    },
    Target {
        name: "apt-packages",
        run: adapters::apt_packages,
    },
    Target {
        name: "apt-sources",
        run: adapters::apt_sources,
    },
    Target {
        name: "route",
        run: adapters::route,
    },
    Target {
        name: "lockfile",
        run: adapters::lockfile,
    },
    Target {
        name: "car",
        run: formats::car,
    },
    Target {
        name: "dag-cbor",
        run: formats::dag_cbor,
    },
    Target {
        name: "snapshot",
        run: formats::snapshot,
    },
    Target {
        name: "bundle",
        run: formats::bundle,
    },
    Target {
        name: "dag-pb",
        run: formats::dag_pb,
    },
    Target {
        name: "bitswap",
        run: peers::bitswap,
    },
    Target {
        name: "resolve",
        run: peers::resolve,
    },
    Target {
        name: "metadata",
        run: peers::metadata,
    },
    Target {
        name: "holds",
        run: peers::holds,
    },
];
