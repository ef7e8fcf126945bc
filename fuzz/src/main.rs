//! `cairn-fuzz`: run the fuzz targets for a while each, print inputs per second and findings.
//!
//! ```text
//! cargo run -p cairn-fuzz --release -- [--seconds N] [--seed S] [TARGET…]
//! cargo run -p cairn-fuzz -- --list
//! cargo run -p cairn-fuzz -- --write-seeds
//! ```

use std::process::ExitCode;
use std::time::Duration;

use cairn_fuzz::{Budget, Options, TARGETS, Target};

const USAGE: &str =
    "usage: cairn-fuzz [--seconds N | --inputs N] [--seed S] [--per-input-seconds N] [TARGET…]
       cairn-fuzz --list | --write-seeds";

struct Args {
    options: Options,
    targets: Vec<&'static Target>,
    list: bool,
    write_seeds: bool,
}

fn number(flag: &str, value: Option<String>) -> Result<u64, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
    value
        .parse()
        .map_err(|e| format!("{flag} {value:?}: {e}\n{USAGE}"))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        options: Options::new(Budget::Time(Duration::from_secs(10))),
        targets: Vec::new(),
        list: false,
        write_seeds: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                let n = number(&arg, it.next())?;
                args.options.budget = Budget::Time(Duration::from_secs(n));
            }
            "--inputs" => args.options.budget = Budget::Inputs(number(&arg, it.next())?),
            "--seed" => args.options.seed = number(&arg, it.next())?,
            "--per-input-seconds" => {
                args.options.per_input = Duration::from_secs(number(&arg, it.next())?);
            }
            "--list" => args.list = true,
            "--write-seeds" => args.write_seeds = true,
            "-h" | "--help" => return Err(USAGE.into()),
            name if !name.starts_with('-') => {
                let target = cairn_fuzz::target(name).ok_or_else(|| {
                    let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
                    format!("no target {name:?}; targets: {}", names.join(" "))
                })?;
                args.targets.push(target);
            }
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if args.targets.is_empty() {
        args.targets = TARGETS.iter().collect();
    }
    Ok(args)
}

fn write_seeds() -> Result<(), String> {
    for (target, name, bytes) in cairn_fuzz::seeds::generated() {
        let dir = cairn_fuzz::corpus_dir(target);
        let path = dir.join(&name);
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, &bytes))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if args.list {
        for target in TARGETS {
            println!("{}", target.name);
        }
        return ExitCode::SUCCESS;
    }
    if args.write_seeds {
        return match write_seeds() {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("{message}");
                ExitCode::FAILURE
            }
        };
    }
    println!(
        "fuzz: {} targets, seed {}, {:?} each",
        args.targets.len(),
        args.options.seed,
        args.options.budget
    );
    let (mut passed, mut failed, mut total) = (0, 0, 0u64);
    for target in &args.targets {
        let seeds = match cairn_fuzz::seeds_of(target.name) {
            Ok(seeds) => seeds,
            Err(e) => {
                eprintln!("{}: cannot read its corpus: {e}", target.name);
                failed += 1;
                continue;
            }
        };
        let count = seeds.len();
        let report = cairn_fuzz::fuzz(target, seeds, &args.options);
        total += report.inputs;
        let secs = report.elapsed.as_secs_f64().max(1e-3);
        println!(
            "{:<14} {:>10} inputs in {:>5.1} s ({:>8.0}/s) from {} seeds, slowest {:.1} ms",
            report.target,
            report.inputs,
            secs,
            report.inputs as f64 / secs,
            count,
            report.slowest.as_secs_f64() * 1000.0
        );
        match report.finding {
            None => passed += 1,
            Some(finding) => {
                failed += 1;
                println!("FINDING in {}: {}", finding.target, finding.reason);
                match &finding.saved {
                    Some(path) => println!("  input kept as {}", path.display()),
                    None => println!("  input ({} bytes) not saved", finding.input.len()),
                }
                if finding.reason.starts_with("an input ran for over") {
                    // Its thread cannot be stopped: end here.
                    println!("fuzz: {passed} passed, {failed} failed ({total} inputs)");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    println!("fuzz: {passed} passed, {failed} failed ({total} inputs)");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
