//! Mutation fuzzing of every Cairn parser that reads outside input, on stable Rust.
//!
//! [`TARGETS`] names each parser entry point as Cairn calls it on bytes from upstreams, peers,
//! bundles or clients. [`fuzz`] replays a target's seed corpus (`fuzz/corpus/<target>/`) and
//! every input that ever failed (`fuzz/regressions/<target>/`), then mutates them for a budget.
//! A panic is a finding, and so is an input that runs longer than a generous time bound: the
//! input is written under `fuzz/regressions/<target>/` and the run fails.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use sha2::Digest as _;

pub mod mutate;
pub mod seeds;
mod targets;

pub use targets::TARGETS;

/// One parser under test: `run` feeds it the input and says whether the parser accepted it
/// (accepted mutants join the pool that later mutants are made from).
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]) -> bool,
}

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The crate's own directory, where `corpus/`, `regressions/` and `known/` live.
pub fn home() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The seed corpus of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    home().join("corpus").join(target)
}

/// Every input of `target` that ever failed.
pub fn regressions_dir(target: &str) -> PathBuf {
    home().join("regressions").join(target)
}

/// The files of `dir`, sorted by name (none when it does not exist). Names starting with a
/// dot are skipped (editor and git leftovers).
pub fn load_dir(dir: &Path) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if entry.file_type()?.is_file() && !hidden {
            paths.push(entry.path());
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| std::fs::read(&path).map(|bytes| (path, bytes)))
        .collect()
}

/// A seed corpus and regressions, in that order.
pub fn seeds_of(target: &str) -> std::io::Result<Vec<Vec<u8>>> {
    let mut inputs: Vec<Vec<u8>> = load_dir(&corpus_dir(target))?
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    inputs.extend(
        load_dir(&regressions_dir(target))?
            .into_iter()
            .map(|(_, bytes)| bytes),
    );
    Ok(inputs)
}

/// The file name an input is kept under: its sha2-256, 16 bytes in hex.
pub fn input_name(input: &[u8]) -> String {
    hex::encode(&sha2::Sha256::digest(input)[..16])
}

thread_local! {
    /// Set while a target runs on this thread: its panics are captured here, not printed.
    static CAPTURE: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Install (once) a panic hook that keeps a fuzzed target's panic message for the report and
/// leaves every other panic to the previous hook.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let captured = CAPTURE.with(|c| {
                let mut c = c.borrow_mut();
                match c.as_mut() {
                    Some(slot) => {
                        *slot = Some(info.to_string());
                        true
                    }
                    None => false,
                }
            });
            if !captured {
                previous(info);
            }
        }));
    });
}

/// Run `target` on `input`: `Ok(accepted)`, or the panic message.
pub fn check(target: &Target, input: &[u8]) -> Result<bool, String> {
    install_hook();
    CAPTURE.with(|c| *c.borrow_mut() = Some(None));
    let result = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    let message = CAPTURE.with(|c| c.borrow_mut().take().flatten());
    result.map_err(|_| message.unwrap_or_else(|| "panicked".into()))
}

/// How long a run goes on.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// This many mutants after the seeds.
    Inputs(u64),
    /// Mutants until this much time has passed (seeds are always all replayed).
    Time(Duration),
}

/// A failing input.
#[derive(Clone, Debug)]
pub struct Finding {
    pub target: &'static str,
    /// The panic message, or how long the input ran.
    pub reason: String,
    pub input: Vec<u8>,
    /// Where the input was written, when it was.
    pub saved: Option<PathBuf>,
}

/// What one run of one target did.
#[derive(Clone, Debug)]
pub struct Report {
    pub target: &'static str,
    /// Inputs run: seeds plus mutants.
    pub inputs: u64,
    pub elapsed: Duration,
    /// The longest any one input ran (work out of proportion to the input shows here first).
    pub slowest: Duration,
    /// The first failing input, if any (a run stops at its first finding).
    pub finding: Option<Finding>,
}

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seed of the mutation PRNG (mixed with the target's name).
    pub seed: u64,
    pub budget: Budget,
    /// An input running longer than this is a finding (a hang, or work out of proportion).
    pub per_input: Duration,
    /// Where findings are written (`<dir>/<target>/<hash>`); `None` keeps them in memory.
    pub save_to: Option<PathBuf>,
    /// Stack of the thread that runs the target: as small as the runtime's threads, so that
    /// unbounded recursion is found here rather than in production.
    pub stack: usize,
}

impl Options {
    pub fn new(budget: Budget) -> Self {
        Options {
            seed: 0x00ca_1e5e_ed00_0001,
            budget,
            per_input: Duration::from_secs(10),
            save_to: Some(home().join("regressions")),
            // Tokio's worker and blocking threads have 2 MiB; a debug build's frames are larger.
            stack: if cfg!(debug_assertions) {
                8 << 20
            } else {
                2 << 20
            },
        }
    }
}

/// Largest mutant: a few times the largest seed, within 1 MiB.
fn max_len(seeds: &[Vec<u8>]) -> usize {
    let largest = seeds.iter().map(Vec::len).max().unwrap_or(0);
    (largest * 2).clamp(64 << 10, 1 << 20)
}

/// Most accepted mutants kept as parents of further mutants.
const POOL: usize = 512;

/// Shared between the thread running a target and the watchdog.
struct Progress {
    /// Inputs started.
    started: AtomicU64,
    /// Longest run of one input, in microseconds.
    slowest_us: AtomicU64,
    /// The input running now (kept so that a hang can be saved).
    current: Mutex<Vec<u8>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Replay `seeds` through `target`, then mutate them within `options.budget`. Stops at the first
/// finding, which is saved under `options.save_to`. A hung input leaves its thread running
/// (Rust cannot stop a thread): the caller should exit soon after such a report.
pub fn fuzz(target: &'static Target, seeds: Vec<Vec<u8>>, options: &Options) -> Report {
    let started_at = Instant::now();
    let progress = Arc::new(Progress {
        started: AtomicU64::new(0),
        slowest_us: AtomicU64::new(0),
        current: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let worker_progress = progress.clone();
    let budget = options.budget;
    let mut seed = options.seed;
    for b in target.name.bytes() {
        seed = seed.rotate_left(8) ^ u64::from(b);
    }
    let spawned = std::thread::Builder::new()
        .name(format!("fuzz-{}", target.name))
        .stack_size(options.stack)
        .spawn(move || run_loop(target, seeds, seed, budget, &worker_progress));
    let handle = match spawned {
        Ok(handle) => handle,
        Err(e) => {
            return Report {
                target: target.name,
                inputs: 0,
                elapsed: started_at.elapsed(),
                slowest: Duration::ZERO,
                finding: Some(Finding {
                    target: target.name,
                    reason: format!("cannot start the fuzzing thread: {e}"),
                    input: Vec::new(),
                    saved: None,
                }),
            };
        }
    };
    // Watchdog: the same input running for longer than `per_input` is a finding.
    let mut last = (progress.started.load(Ordering::Relaxed), Instant::now());
    let finding = loop {
        if handle.is_finished() {
            break match handle.join() {
                Ok(finding) => finding,
                Err(_) => Some(Finding {
                    target: target.name,
                    reason: "the fuzzing thread itself panicked".into(),
                    input: Vec::new(),
                    saved: None,
                }),
            };
        }
        std::thread::sleep(Duration::from_millis(20));
        let now = progress.started.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > options.per_input {
            progress.stop.store(true, Ordering::Relaxed);
            break Some(Finding {
                target: target.name,
                reason: format!("an input ran for over {:?}", options.per_input),
                input: lock(&progress.current).clone(),
                saved: None,
            });
        }
    };
    let finding = finding.map(|mut f| {
        if let Some(dir) = &options.save_to {
            let dir = dir.join(target.name);
            let path = dir.join(input_name(&f.input));
            match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &f.input)) {
                Ok(()) => f.saved = Some(path),
                Err(e) => f
                    .reason
                    .push_str(&format!(" (not saved to {}: {e})", dir.display())),
            }
        }
        f
    });
    Report {
        target: target.name,
        inputs: progress.started.load(Ordering::Relaxed),
        elapsed: started_at.elapsed(),
        slowest: Duration::from_micros(progress.slowest_us.load(Ordering::Relaxed)),
        finding,
    }
}

fn run_loop(
    target: &'static Target,
    seeds: Vec<Vec<u8>>,
    seed: u64,
    budget: Budget,
    progress: &Progress,
) -> Option<Finding> {
    let started = Instant::now();
    let one = |input: &[u8]| -> Result<bool, Finding> {
        {
            let mut current = lock(&progress.current);
            current.clear();
            current.extend_from_slice(input);
        }
        progress.started.fetch_add(1, Ordering::Relaxed);
        let began = Instant::now();
        let result = check(target, input);
        let took = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        progress.slowest_us.fetch_max(took, Ordering::Relaxed);
        result.map_err(|reason| Finding {
            target: target.name,
            reason,
            input: input.to_vec(),
            saved: None,
        })
    };
    for input in &seeds {
        if let Err(finding) = one(input) {
            return Some(finding);
        }
    }
    let mut pool = if seeds.is_empty() {
        vec![Vec::new()]
    } else {
        seeds
    };
    let fixed = pool.len();
    let limit = max_len(&pool);
    let mut rng = mutate::Rng::new(seed);
    let mut mutants = 0u64;
    let mut input = Vec::new();
    loop {
        let done = match budget {
            Budget::Inputs(n) => mutants >= n,
            // Reading the clock every input costs little next to a parse.
            Budget::Time(limit) => started.elapsed() >= limit,
        };
        if done || progress.stop.load(Ordering::Relaxed) {
            return None;
        }
        let parent = rng.below(pool.len());
        input.clear();
        input.extend_from_slice(&pool[parent]);
        let other = rng.below(pool.len());
        mutate::mutate(&mut rng, &mut input, &pool[other], limit);
        mutants += 1;
        match one(&input) {
            Err(finding) => return Some(finding),
            Ok(true) if rng.one_in(4) => {
                // An accepted mutant goes deeper than most: keep it as a parent.
                if pool.len() < fixed + POOL {
                    pool.push(input.clone());
                } else {
                    let at = fixed + rng.below(POOL);
                    pool[at].clone_from(&input);
                }
            }
            Ok(_) => {}
        }
    }
}
