//! Every target over its seed corpus and every kept regression, then a short mutation run of
//! each; and the engine's own checks (a panic and a hang are findings, kept as files).

use std::time::Duration;

use cairn_fuzz::{Budget, Options, TARGETS, Target};

#[test]
fn every_target_has_a_seed_corpus() {
    for target in TARGETS {
        let seeds = cairn_fuzz::load_dir(&cairn_fuzz::corpus_dir(target.name)).expect("corpus");
        assert!(!seeds.is_empty(), "{} has no seeds", target.name);
    }
}

#[test]
fn seeds_and_regressions_pass() {
    let mut failures = Vec::new();
    for target in TARGETS {
        let mut accepted = 0;
        let mut files = cairn_fuzz::load_dir(&cairn_fuzz::corpus_dir(target.name)).expect("corpus");
        let seeds = files.len();
        files.extend(
            cairn_fuzz::load_dir(&cairn_fuzz::regressions_dir(target.name)).expect("regressions"),
        );
        for (i, (path, input)) in files.iter().enumerate() {
            match cairn_fuzz::check(target, input) {
                Ok(true) if i < seeds => accepted += 1,
                Ok(_) => {}
                Err(panic) => failures.push(format!("{}: {panic}", path.display())),
            }
        }
        // Seeds are real-shaped: the parser accepts most of them, or they test nothing deep.
        assert!(
            accepted * 2 >= seeds,
            "{}: only {accepted} of {seeds} seeds are accepted",
            target.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn short_mutation_run_of_every_target() {
    let mut options = Options::new(Budget::Inputs(1500));
    options.seed = 1;
    let mut failures = Vec::new();
    for target in TARGETS {
        let seeds = cairn_fuzz::seeds_of(target.name).expect("seeds");
        let report = cairn_fuzz::fuzz(target, seeds, &options);
        if let Some(f) = report.finding {
            failures.push(format!(
                "{}: {} (kept as {:?})",
                f.target, f.reason, f.saved
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn panics_on_long_input(input: &[u8]) -> bool {
    assert!(input.len() < 40, "input of {} bytes", input.len());
    true
}

static PANICS: Target = Target {
    name: "panics",
    run: panics_on_long_input,
};

#[test]
fn a_panic_is_a_finding_kept_under_regressions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = Options::new(Budget::Inputs(10_000));
    options.save_to = Some(dir.path().to_owned());
    let report = cairn_fuzz::fuzz(&PANICS, vec![vec![b'x'; 30]], &options);
    let finding = report.finding.expect("a mutant over 40 bytes is found");
    assert!(finding.reason.contains("input of"), "{}", finding.reason);
    let saved = finding.saved.expect("saved");
    assert_eq!(saved.parent(), Some(dir.path().join("panics").as_path()));
    assert_eq!(std::fs::read(&saved).expect("read"), finding.input);
    assert!(cairn_fuzz::check(&PANICS, &finding.input).is_err());
}

fn hangs_on_empty_input(input: &[u8]) -> bool {
    if input.is_empty() {
        std::thread::sleep(Duration::from_secs(2));
    }
    true
}

static HANGS: Target = Target {
    name: "hangs",
    run: hangs_on_empty_input,
};

#[test]
fn an_input_running_too_long_is_a_finding() {
    let mut options = Options::new(Budget::Inputs(10));
    options.save_to = None;
    options.per_input = Duration::from_millis(200);
    let report = cairn_fuzz::fuzz(&HANGS, vec![b"fine".to_vec(), Vec::new()], &options);
    let finding = report.finding.expect("the empty input hangs");
    assert!(
        finding.reason.contains("ran for over"),
        "{}",
        finding.reason
    );
    assert!(finding.input.is_empty());
}
