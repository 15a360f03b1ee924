//! `wide`: catch what bors would catch. Runs wide test suites (tests/run-make,
//! tests/codegen-llvm, tests/assembly-llvm, tests/ui, and the library tests of core and alloc)
//! with the unpatched compiler (`fixups`, in `work/orig`) and with the series (`work/tree`),
//! both built from the same config in the same chroot, compares the outcome of every test and
//! fails if a test fails with the series that did not fail on the base. Tests that fail on
//! both sides are the base's failures in this environment and are only counted. The base's
//! results are cached per suite in CACHE/wide, keyed by what they depend on (the base commit,
//! the chroot's LLVM package, the Enzyme library, the bootstrap config), so a rerun builds and
//! tests only the series. Prints the step table, every test whose outcome changed and a
//! table per suite, and writes both sides' results as JSON to CACHE/logs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cmd::{self, shell_quote, write_atomic};
use crate::compiletest::{self, Counts, Outcome};
use crate::env::{self, Chroot};
use crate::paths::*;
use crate::summary::{self, Row, fmt_counts, step};
use crate::{apply, apt, full, stack};

#[derive(clap::Args)]
pub struct Args {
    /// Prebuilt Enzyme built against LLVM 22; it is installed as libEnzyme-22.so
    #[arg(long, value_name = "PATH")]
    pub enzyme_lib: PathBuf,
    /// Run only this suite (repeatable): run-make, codegen-llvm, assembly-llvm, ui (or
    /// tests/NAME), library (`library/core library/alloc`) (default: all five)
    #[arg(long = "suite", value_name = "SUITE")]
    pub suites: Vec<String>,
    /// Which compilers to build and test; the base's results can come from the cache
    #[arg(long, value_enum, value_name = "SIDE", default_value_t = Side::Both)]
    pub side: Side,
    /// Build the series' work tree as it is instead of re-applying the series
    #[arg(long)]
    pub no_apply: bool,
    /// Rerun the base even where its cached results are valid (and replace them)
    #[arg(long)]
    pub rerun_base: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// Only the unpatched compiler: fill the cache (suites with valid results are skipped)
    Base,
    /// Only the series, compared with the cached base results where there are some
    Series,
    /// The series, and the base where its cache is missing or stale; then compare
    Both,
}

/// A test suite: what `x.py test` is given, and how its per-test lines read.
#[derive(Debug, PartialEq)]
pub struct Suite {
    /// The `--suite` name, also used in step and cache file names.
    pub name: &'static str,
    pub targets: &'static [&'static str],
    /// libtest binaries and doctests (`compiletest::libtest_outcomes`), not compiletest.
    pub library: bool,
}

/// The suites, in the order they run by default.
pub const SUITES: [Suite; 5] = [
    Suite { name: "run-make", targets: &["tests/run-make"], library: false },
    Suite { name: "codegen-llvm", targets: &["tests/codegen-llvm"], library: false },
    Suite { name: "assembly-llvm", targets: &["tests/assembly-llvm"], library: false },
    Suite { name: "library", targets: &["library/core", "library/alloc"], library: true },
    // The long one (about 21 minutes a side on 2 cores) last, so the others report first.
    Suite { name: "ui", targets: &["tests/ui"], library: false },
];

/// Passed to every `x.py test`: compiletest reports a test that passed before and whose
/// inputs did not change as "ignored, up-to-date" instead of running it, which would read as
/// a changed outcome.
const X_TEST_FLAGS: &[&str] = &["--force-rerun"];

/// Bumped when the cache's layout or the way results are produced changes.
const CACHE_FORMAT: u64 = 1;

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    let suites = select_suites(&args.suites)?;
    if args.rerun_base && args.side == Side::Series {
        bail!("--rerun-base reruns the base, but --side series runs only the series");
    }
    cmd::require_root("cargo xtask wide")?;
    env::verify(paths)?;
    full::prepare_enzyme(paths, &args.enzyme_lib)?;
    let started = cmd::utc_stamp(SystemTime::now());
    let inputs = Inputs::measure(paths)?;
    println!(
        "wide: base {}, {}, Enzyme sha256 {}, bootstrap config sha256 {}",
        short(&inputs.base_commit),
        inputs.llvm,
        short(&inputs.enzyme_sha256),
        short(&inputs.bootstrap_config_sha256)
    );

    let mut rows = Vec::new();
    let mut results: Vec<SuiteResults> =
        suites.iter().map(|&suite| SuiteResults { suite, base: None, series: None }).collect();
    let mut base_to_run = Vec::new();
    for (i, r) in results.iter_mut().enumerate() {
        match cached_base(paths, &inputs, r.suite, args.rerun_base) {
            Some(base) => {
                rows.push(cached_row(paths, r.suite, &base.run));
                r.base = Some(base);
            }
            None if args.side != Side::Series => base_to_run.push(i),
            None => {}
        }
    }
    let result = run_sides(paths, args, &inputs, &mut results, &base_to_run, &mut rows);
    summary::print(&rows);
    result?;

    let json_file = paths.logs().join(format!("{started}-wide.json"));
    let report = json_report(&started, &inputs, &results);
    write_atomic(&json_file, (serde_json::to_string_pretty(&report)? + "\n").as_bytes())?;
    println!("{}", render_changes(&results));
    println!("{}", render_suites(&results));
    println!("wide: JSON report in {}", json_file.display());
    verdict(paths, args.side, &results)
}

/// The first 12 characters of a hash.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Resolve `--suite` values (repeats dropped); none means all.
fn select_suites(wanted: &[String]) -> Result<Vec<&'static Suite>> {
    if wanted.is_empty() {
        return Ok(SUITES.iter().collect());
    }
    let mut out: Vec<&'static Suite> = Vec::new();
    for w in wanted {
        let w = w.trim().trim_end_matches('/');
        let suite = SUITES
            .iter()
            .find(|s| s.name == w || (!s.library && w.strip_prefix("tests/") == Some(s.name)))
            .with_context(|| {
                let names: Vec<&str> = SUITES.iter().map(|s| s.name).collect();
                format!("unknown suite {w:?}; choose from {} (or tests/NAME)", names.join(", "))
            })?;
        if !out.contains(&suite) {
            out.push(suite);
        }
    }
    Ok(out)
}

/// Everything a base result depends on besides the suite, measured once per run.
#[derive(Debug, Clone, PartialEq)]
struct Inputs {
    /// The `fixups` commit the unpatched tree is built from.
    base_commit: String,
    /// The chroot's LLVM runtime package and its version (`libllvm22 1:22.1.8-3`).
    llvm: String,
    enzyme_sha256: String,
    /// SHA-256 of the unpatched slot's generated bootstrap.toml.
    bootstrap_config_sha256: String,
}

impl Inputs {
    fn measure(paths: &Paths) -> Result<Inputs> {
        let base_commit = apply::commit_series(paths, &[])?;
        let status_file = paths.chroot().join("var/lib/dpkg/status");
        let status = fs::read_to_string(&status_file)
            .with_context(|| format!("cannot read the chroot's {}", status_file.display()))?;
        let package = format!("libllvm{LLVM_MAJOR}");
        let version = apt::installed_version(&status, &package).with_context(|| {
            format!(
                "{package} is not installed in the chroot; rebuild it with \
                 `cargo xtask env --clean`"
            )
        })?;
        let config = env::bootstrap_toml(paths, Slot::Unpatched, &env::stage0_sysroot()?);
        Ok(Inputs {
            base_commit,
            llvm: format!("{package} {version}"),
            enzyme_sha256: cmd::sha256_file(&paths.enzyme_lib())?,
            bootstrap_config_sha256: cmd::sha256_hex(config.as_bytes()),
        })
    }

    /// The key of `suite`'s cached base result: a cached result is used only if its key is
    /// equal in every field.
    fn key(&self, suite: &Suite) -> Value {
        json!({
            "format": CACHE_FORMAT,
            "suite": suite.name,
            "targets": suite.targets,
            "x_test_flags": X_TEST_FLAGS,
            "base_commit": self.base_commit,
            "llvm": self.llvm,
            "enzyme_sha256": self.enzyme_sha256,
            "bootstrap_config_sha256": self.bootstrap_config_sha256,
        })
    }
}

/// One suite's results with one compiler.
#[derive(Debug, Clone, PartialEq)]
struct SuiteRun {
    /// When the run started (`YYYYMMDD-HHMMSS`, UTC).
    measured: String,
    /// Wall time of `x.py test` (to the millisecond).
    wall: Duration,
    /// The sums of the `test result:` lines.
    counts: Counts,
    /// Every test's outcome (a name seen twice keeps the worse one; see `fold`).
    outcomes: BTreeMap<String, Outcome>,
}

impl SuiteRun {
    fn to_json(&self) -> Value {
        let outcomes: serde_json::Map<String, Value> =
            self.outcomes.iter().map(|(n, o)| (n.clone(), json!(o.to_string()))).collect();
        json!({
            "measured": self.measured,
            "seconds": self.wall.as_millis() as f64 / 1000.0,
            "counts": {
                "passed": self.counts.passed,
                "failed": self.counts.failed,
                "ignored": self.counts.ignored,
            },
            "outcomes": outcomes,
        })
    }

    fn from_json(v: &Value) -> Result<SuiteRun> {
        let measured = v.get("measured").and_then(Value::as_str).context("no `measured` date")?;
        let seconds = v
            .get("seconds")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .context("no wall time `seconds`")?;
        let counts = v.get("counts").context("no `counts`")?;
        let count = |kind: &str| {
            counts.get(kind).and_then(Value::as_u64).with_context(|| format!("no count `{kind}`"))
        };
        let outcomes = v
            .get("outcomes")
            .and_then(Value::as_object)
            .context("no `outcomes` object")?
            .iter()
            .map(|(name, o)| {
                let outcome = o
                    .as_str()
                    .and_then(compiletest::parse_outcome)
                    .with_context(|| format!("test {name}: unknown outcome {o}"))?;
                Ok((name.clone(), outcome))
            })
            .collect::<Result<_>>()?;
        Ok(SuiteRun {
            measured: measured.to_string(),
            wall: Duration::from_millis((seconds * 1000.0).round() as u64),
            counts: Counts {
                passed: count("passed")?,
                failed: count("failed")?,
                ignored: count("ignored")?,
            },
            outcomes,
        })
    }
}

/// The base's results, run now or read from `cached` (the cache file).
struct Base {
    run: SuiteRun,
    cached: Option<PathBuf>,
}

struct SuiteResults {
    suite: &'static Suite,
    base: Option<Base>,
    series: Option<SuiteRun>,
}

fn cache_file(paths: &Paths, suite: &Suite) -> PathBuf {
    paths.wide().join(format!("base-{}.json", suite.name))
}

/// What the cache holds for a key.
#[derive(Debug, PartialEq)]
enum Cached {
    Valid(SuiteRun),
    Missing,
    /// A result for another key: the fields that differ.
    Stale(Vec<String>),
}

fn read_cache(file: &Path, key: &Value) -> Result<Cached> {
    let text = match fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cached::Missing),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let parse = || -> Result<Cached> {
        let v: Value = serde_json::from_str(&text)?;
        let cached_key = v.get("key").context("no `key`")?;
        let stale = stale_fields(cached_key, key);
        if !stale.is_empty() {
            return Ok(Cached::Stale(stale));
        }
        Ok(Cached::Valid(SuiteRun::from_json(v.get("run").context("no `run`")?)?))
    };
    parse().with_context(|| format!("{} is not a wide cache file", file.display()))
}

fn write_cache(file: &Path, key: &Value, run: &SuiteRun) -> Result<()> {
    let v = json!({"key": key, "run": run.to_json()});
    write_atomic(file, (serde_json::to_string_pretty(&v)? + "\n").as_bytes())
}

/// The fields of `key` whose value in `cached` differs (or is missing).
fn stale_fields(cached: &Value, key: &Value) -> Vec<String> {
    let Some(key) = key.as_object() else { return vec!["key".into()] };
    key.iter().filter(|(k, v)| cached.get(k.as_str()) != Some(*v)).map(|(k, _)| k.clone()).collect()
}

/// The valid cached base result of `suite`, saying why there is none.
fn cached_base(paths: &Paths, inputs: &Inputs, suite: &Suite, rerun: bool) -> Option<Base> {
    let file = cache_file(paths, suite);
    if rerun {
        return None;
    }
    match read_cache(&file, &inputs.key(suite)) {
        Ok(Cached::Valid(run)) => Some(Base { run, cached: Some(file) }),
        Ok(Cached::Missing) => {
            println!("wide: no cached base results for {}", suite.name);
            None
        }
        Ok(Cached::Stale(fields)) => {
            println!(
                "wide: cached base results for {} are stale: {}",
                suite.name,
                fields.join(", ")
            );
            None
        }
        Err(e) => {
            println!("wide: ignoring the cached base results for {}: {e:#}", suite.name);
            None
        }
    }
}

/// The summary row of a cached base result, with its wall time when it was measured.
fn cached_row(paths: &Paths, suite: &Suite, run: &SuiteRun) -> Row {
    Row {
        step: format!("base-test-{}", suite.name),
        result: format!("cached (measured {})", run.measured),
        counts: Some(run.counts),
        duration: run.wall,
        log: Some(cache_file(paths, suite)),
    }
}

/// Apply, build and test the series (unless `--side base`), then build and test the base for
/// the suites in `base_to_run`, caching each suite's results as soon as they are in.
fn run_sides(
    paths: &Paths,
    args: &Args,
    inputs: &Inputs,
    results: &mut [SuiteResults],
    base_to_run: &[usize],
    rows: &mut Vec<Row>,
) -> Result<()> {
    let run_series = args.side != Side::Base;
    if run_series && !args.no_apply {
        let patches = stack::flatten(&stack::load(&paths.patches)?);
        step(rows, "apply-series", || apply::apply_patches(paths, Slot::Series, &patches))?;
    }
    if !base_to_run.is_empty() {
        step(rows, "apply-base", || apply::apply_patches(paths, Slot::Unpatched, &[]))?;
        full::write_shim(paths, Slot::Unpatched)?;
    }
    if run_series {
        full::write_shim(paths, Slot::Series)?;
        // What bors runs: not the extended check an earlier `full --extended` left in the tree.
        crate::extended::clear(&paths.tree(Slot::Series))?;
    } else if base_to_run.is_empty() {
        println!("wide: every base result is cached; nothing to build");
        return Ok(());
    }
    let chroot = Chroot::enter(paths)?;
    let build = |slot: Slot, name: &str, rows: &mut Vec<Row>| {
        step(rows, name, || chroot.x(slot, &["build", "--stage", "1", "library"], name).run())
    };
    let result = (|| {
        if run_series {
            build(Slot::Series, "series-build-stage1", rows)?;
            for r in results.iter_mut() {
                let name = format!("series-test-{}", r.suite.name);
                r.series = Some(run_suite(&chroot, Slot::Series, r.suite, &name, rows)?);
            }
        }
        if !base_to_run.is_empty() {
            build(Slot::Unpatched, "base-build-stage1", rows)?;
            for &i in base_to_run {
                let suite = results[i].suite;
                let name = format!("base-test-{}", suite.name);
                let run = run_suite(&chroot, Slot::Unpatched, suite, &name, rows)?;
                write_cache(&cache_file(paths, suite), &inputs.key(suite), &run)?;
                results[i].base = Some(Base { run, cached: None });
            }
        }
        Ok(())
    })();
    chroot.leave()?;
    result
}

/// `x.py test` one suite with `slot`'s stage 1 compiler and read every test's outcome.
fn run_suite(
    chroot: &Chroot,
    slot: Slot,
    suite: &Suite,
    step: &str,
    rows: &mut Vec<Row>,
) -> Result<SuiteRun> {
    let measured = cmd::utc_stamp(SystemTime::now());
    let out = full::x_test(chroot, slot, suite.targets, X_TEST_FLAGS, step, rows)?;
    let outcomes = if suite.library {
        compiletest::libtest_outcomes(&out.text)
    } else {
        compiletest::outcomes(&out.text)
    };
    Ok(SuiteRun {
        measured,
        wall: out.elapsed,
        counts: compiletest::summary(&out.text).unwrap_or_default(),
        outcomes: fold(outcomes),
    })
}

/// Outcomes by name; a name seen more than once keeps a failure over a pass over an ignore.
fn fold(outcomes: Vec<(String, Outcome)>) -> BTreeMap<String, Outcome> {
    let rank = |o: Outcome| match o {
        Outcome::Ignored => 0,
        Outcome::Passed => 1,
        Outcome::Failed => 2,
    };
    let mut out = BTreeMap::new();
    for (name, o) in outcomes {
        let kept = out.entry(name).or_insert(o);
        if rank(o) > rank(*kept) {
            *kept = o;
        }
    }
    out
}

/// A test whose outcome differs between the sides; `None`: it did not run on that side.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    test: String,
    base: Option<Outcome>,
    series: Option<Outcome>,
}

impl Change {
    /// It fails with the series and did not fail on the base (it passed, was ignored or did
    /// not exist): a failure that is the series', which bors would reject.
    fn is_new_failure(&self) -> bool {
        self.series == Some(Outcome::Failed) && self.base != Some(Outcome::Failed)
    }
}

/// Every test whose outcome differs between `base` and `series`, by name, including the
/// tests that ran on one side only.
fn diff(base: &BTreeMap<String, Outcome>, series: &BTreeMap<String, Outcome>) -> Vec<Change> {
    let mut names: Vec<&String> = base.keys().chain(series.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|n| Change {
            test: n.clone(),
            base: base.get(n).copied(),
            series: series.get(n).copied(),
        })
        .filter(|c| c.base != c.series)
        .collect()
}

/// How many tests fail on both sides (the base's failures in this environment).
fn failing_on_both(base: &BTreeMap<String, Outcome>, series: &BTreeMap<String, Outcome>) -> usize {
    base.iter()
        .filter(|(n, o)| **o == Outcome::Failed && series.get(*n) == Some(&Outcome::Failed))
        .count()
}

impl SuiteResults {
    /// The changes and the count of tests failing on both sides, if both sides have results.
    fn compare(&self) -> Option<(Vec<Change>, usize)> {
        let (base, series) = (&self.base.as_ref()?.run.outcomes, &self.series.as_ref()?.outcomes);
        Some((diff(base, series), failing_on_both(base, series)))
    }
}

fn show(o: Option<Outcome>) -> String {
    o.map_or("did not run".into(), |o| o.to_string())
}

/// The table of every test whose outcome changed.
fn render_changes(results: &[SuiteResults]) -> String {
    let mut cells = vec![["suite", "test", "base", "series", ""].map(String::from).to_vec()];
    for r in results {
        for c in r.compare().map(|(changes, _)| changes).unwrap_or_default() {
            let note = if c.is_new_failure() { "NEW FAILURE" } else { "" };
            cells.push(vec![
                r.suite.name.into(),
                c.test.clone(),
                show(c.base),
                show(c.series),
                note.into(),
            ]);
        }
    }
    if cells.len() == 1 {
        return "\nwide: no test changed its outcome".into();
    }
    format!("\nwide: {} test(s) changed their outcome\n{}", cells.len() - 1, summary::table(&cells))
}

/// One line per suite: both sides' counts and wall times, and what the comparison found.
fn render_suites(results: &[SuiteResults]) -> String {
    let header =
        ["suite", "base", "time", "series", "time", "changed", "fail on both", "new failures"];
    let mut cells = vec![header.map(String::from).to_vec()];
    for r in results {
        let side = |run: Option<&SuiteRun>| match run {
            Some(run) => [fmt_counts(run.counts), cmd::fmt_duration(run.wall)],
            None => ["-".into(), "-".into()],
        };
        let [base, base_time] = side(r.base.as_ref().map(|b| &b.run));
        let base_time = match r.base.as_ref().filter(|b| b.cached.is_some()) {
            Some(b) => format!("{base_time} (cached, measured {})", b.run.measured),
            None => base_time,
        };
        let [series, series_time] = side(r.series.as_ref());
        let compared = match r.compare() {
            Some((changes, both)) => [
                changes.len().to_string(),
                both.to_string(),
                changes.iter().filter(|c| c.is_new_failure()).count().to_string(),
            ],
            None => ["not compared".into(), "-".into(), "-".into()],
        };
        let mut row = vec![r.suite.name.to_string(), base, base_time, series, series_time];
        row.extend(compared);
        cells.push(row);
    }
    format!("\nwide: pass/fail/ign per suite\n{}", summary::table(&cells))
}

/// Both sides' results, the comparison and what they were measured with, for later reading.
fn json_report(started: &str, inputs: &Inputs, results: &[SuiteResults]) -> Value {
    let command: Vec<String> = std::env::args().skip(1).map(|a| shell_quote(&a)).collect();
    let suites: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut v = json!({
                "suite": r.suite.name,
                "targets": r.suite.targets,
                "base": r.base.as_ref().map(|b| {
                    let mut run = b.run.to_json();
                    run["cached_in"] = json!(b.cached.as_ref().map(|f| f.display().to_string()));
                    run
                }),
                "series": r.series.as_ref().map(SuiteRun::to_json),
            });
            if let Some((changes, both)) = r.compare() {
                let changes: Vec<Value> = changes
                    .iter()
                    .map(|c| {
                        json!({"test": c.test, "base": c.base.map(|o| o.to_string()),
                               "series": c.series.map(|o| o.to_string()),
                               "new_failure": c.is_new_failure()})
                    })
                    .collect();
                v["changes"] = json!(changes);
                v["failing_on_both"] = json!(both);
            }
            v
        })
        .collect();
    json!({
        "date": started,
        "command": format!("cargo xtask {}", command.join(" ")),
        "base_commit": inputs.base_commit,
        "llvm": inputs.llvm,
        "enzyme_sha256": inputs.enzyme_sha256,
        "bootstrap_config_sha256": inputs.bootstrap_config_sha256,
        "suites": suites,
    })
}

/// The final line; an error naming every test that fails with the series but not on the base.
fn verdict(paths: &Paths, side: Side, results: &[SuiteResults]) -> Result<()> {
    let (mut compared, mut changed, mut both, mut new) = (0, 0, 0, Vec::new());
    let mut not_compared = Vec::new();
    for r in results {
        let Some((changes, b)) = r.compare() else {
            not_compared.push(r.suite.name);
            continue;
        };
        compared += 1;
        changed += changes.len();
        both += b;
        new.extend(
            changes
                .into_iter()
                .filter(Change::is_new_failure)
                .map(|c| format!("{}: {} (base: {})", r.suite.name, c.test, show(c.base))),
        );
    }
    if !new.is_empty() {
        bail!(
            "{} test(s) fail with the series but not on the base:\n  {}",
            new.len(),
            new.join("\n  ")
        );
    }
    if side == Side::Base {
        println!(
            "wide: base results of {} suite(s) are in {} (--side base compares nothing)",
            results.len(),
            paths.wide().display()
        );
        return Ok(());
    }
    let mut line = format!(
        "wide: no test fails with the series that does not fail on the base: {compared} suite(s) \
         compared, {changed} outcome(s) changed, {both} test(s) fail on both sides"
    );
    if !not_compared.is_empty() {
        line.push_str(&format!(
            "; NOT compared (no valid cached base results; run --side both): {}",
            not_compared.join(", ")
        ));
    }
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    fn outcomes(list: &[(&str, Outcome)]) -> BTreeMap<String, Outcome> {
        list.iter().map(|(n, o)| (n.to_string(), *o)).collect()
    }

    fn suite_run(list: &[(&str, Outcome)]) -> SuiteRun {
        SuiteRun {
            measured: "20261125-211532".into(),
            wall: Duration::from_millis(12_345),
            counts: Counts { passed: 3, failed: 1, ignored: 2 },
            outcomes: outcomes(list),
        }
    }

    fn inputs() -> Inputs {
        Inputs {
            base_commit: "0123456789abcdef0123456789abcdef01234567".into(),
            llvm: "libllvm22 1:22.1.8-3".into(),
            enzyme_sha256: "e".repeat(64),
            bootstrap_config_sha256: "c".repeat(64),
        }
    }

    #[test]
    fn suite_selection() {
        assert_eq!(select_suites(&[]).unwrap().len(), 5);
        let got =
            select_suites(&["ui", "tests/run-make/", "library", "run-make"].map(String::from))
                .unwrap();
        let names: Vec<&str> = got.iter().map(|s| s.name).collect();
        assert_eq!(names, ["ui", "run-make", "library"], "repeats are dropped");
        assert_eq!(got[2].targets, ["library/core", "library/alloc"]);
        let err = select_suites(&["mir-opt".into()]).unwrap_err().to_string();
        assert!(
            err.contains("choose from run-make, codegen-llvm, assembly-llvm, library, ui"),
            "{err}"
        );
        assert!(select_suites(&["tests/library".into()]).is_err());
    }

    #[test]
    fn bad_arguments_fail_before_anything_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path().join("cache"), tmp.path().join("patches"));
        let args = |suites: &[&str], side, rerun_base| Args {
            enzyme_lib: tmp.path().join("libEnzyme-22.so"),
            suites: suites.iter().map(|s| s.to_string()).collect(),
            side,
            no_apply: false,
            rerun_base,
        };
        let err = run(&paths, &args(&["nope"], Side::Both, false)).unwrap_err().to_string();
        assert!(err.contains("unknown suite \"nope\""), "{err}");
        let err = run(&paths, &args(&[], Side::Series, true)).unwrap_err().to_string();
        assert!(err.contains("--rerun-base"), "{err}");
        assert!(!paths.cache.exists(), "nothing was written");
    }

    #[test]
    fn diffs_outcomes() {
        let base = outcomes(&[
            ("a", Passed),
            ("b", Failed),
            ("c", Passed),
            ("d", Ignored),
            ("e", Passed),
            ("g", Failed),
        ]);
        let series = outcomes(&[
            ("a", Passed),
            ("b", Failed),
            ("c", Failed),
            ("d", Failed),
            ("f", Failed),
            ("g", Passed),
            ("h", Passed),
        ]);
        let changes = diff(&base, &series);
        let c = |test: &str, base, series| Change { test: test.into(), base, series };
        assert_eq!(
            changes,
            [
                c("c", Some(Passed), Some(Failed)),
                c("d", Some(Ignored), Some(Failed)),
                c("e", Some(Passed), None),
                c("f", None, Some(Failed)),
                c("g", Some(Failed), Some(Passed)),
                c("h", None, Some(Passed)),
            ]
        );
        let new: Vec<&str> =
            changes.iter().filter(|c| c.is_new_failure()).map(|c| c.test.as_str()).collect();
        assert_eq!(new, ["c", "d", "f"]);
        assert_eq!(failing_on_both(&base, &series), 1, "b fails on both sides");
        assert!(diff(&base, &base).is_empty());
    }

    #[test]
    fn folds_repeated_names() {
        let list = [("x", Passed), ("x", Failed), ("x", Passed), ("y", Ignored), ("y", Passed)];
        let folded = fold(list.iter().map(|(n, o)| (n.to_string(), *o)).collect());
        assert_eq!(folded, outcomes(&[("x", Failed), ("y", Passed)]));
    }

    #[test]
    fn suite_runs_round_trip_through_json() {
        let run = suite_run(&[
            ("[ui] tests/ui/a.rs#rev", Passed),
            ("[core doctests] library/core/src/lib.rs - x (line 3)", Failed),
            ("[alloctests tests/lib.rs] \"quoted\" \u{e9}", Ignored),
        ]);
        let text = serde_json::to_string_pretty(&run.to_json()).unwrap();
        let back = SuiteRun::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, run);
        assert!(text.contains("\"seconds\": 12.345"), "{text}");

        let mut bad = run.to_json();
        bad["outcomes"]["[ui] tests/ui/a.rs#rev"] = json!("maybe");
        let err = format!("{:#}", SuiteRun::from_json(&bad).unwrap_err());
        assert!(err.contains("test [ui] tests/ui/a.rs#rev: unknown outcome \"maybe\""), "{err}");
        let mut bad = run.to_json();
        bad["seconds"] = json!(-1.0);
        assert!(SuiteRun::from_json(&bad).is_err());
        bad = run.to_json();
        bad["counts"].as_object_mut().unwrap().remove("ignored");
        assert!(format!("{:#}", SuiteRun::from_json(&bad).unwrap_err()).contains("`ignored`"));
    }

    #[test]
    fn cache_keys_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path().to_path_buf(), tmp.path().join("patches"));
        let ui = &SUITES[4];
        let file = cache_file(&paths, ui);
        assert_eq!(file, tmp.path().join("wide/base-ui.json"));
        let key = inputs().key(ui);
        assert_eq!(read_cache(&file, &key).unwrap(), Cached::Missing);

        let run = suite_run(&[("[ui] tests/ui/a.rs", Passed)]);
        write_cache(&file, &key, &run).unwrap();
        assert_eq!(read_cache(&file, &key).unwrap(), Cached::Valid(run.clone()));
        assert_eq!(
            cached_base(&paths, &inputs(), ui, false).map(|b| (b.run, b.cached)),
            Some((run.clone(), Some(file.clone())))
        );
        assert!(cached_base(&paths, &inputs(), ui, true).is_none(), "--rerun-base");
        let row = cached_row(&paths, ui, &run);
        assert_eq!(row.result, "cached (measured 20261125-211532)");
        assert_eq!((row.duration, row.counts), (run.wall, Some(run.counts)));

        // Any other input makes the entry stale, and says which.
        let mut other = inputs();
        other.enzyme_sha256 = "f".repeat(64);
        other.llvm = "libllvm22 1:22.1.8-4".into();
        let stale = read_cache(&file, &other.key(ui)).unwrap();
        assert_eq!(stale, Cached::Stale(vec!["enzyme_sha256".into(), "llvm".into()]));
        assert_eq!(
            read_cache(&file, &inputs().key(&SUITES[3])).unwrap(),
            Cached::Stale(vec!["suite".into(), "targets".into()])
        );
        assert!(cached_base(&paths, &other, ui, false).is_none());

        fs::write(&file, "{\"key\": ").unwrap();
        let err = format!("{:#}", read_cache(&file, &key).unwrap_err());
        assert!(err.contains("base-ui.json is not a wide cache file"), "{err}");
        assert!(cached_base(&paths, &inputs(), ui, false).is_none(), "a broken file reruns");
    }

    #[test]
    fn report_tables_and_verdict() {
        let paths = Paths::new("/c".into(), "/p".into());
        let base = suite_run(&[("a", Passed), ("b", Failed), ("c", Passed)]);
        let series = suite_run(&[("a", Passed), ("b", Failed), ("c", Failed), ("d", Passed)]);
        let mut results = vec![
            SuiteResults {
                suite: &SUITES[4],
                base: Some(Base { run: base.clone(), cached: Some("/c/wide/base-ui.json".into()) }),
                series: Some(series.clone()),
            },
            SuiteResults { suite: &SUITES[3], base: None, series: Some(series.clone()) },
        ];
        let changes = render_changes(&results);
        let lines: Vec<&str> = changes.lines().collect();
        assert_eq!(lines[1], "wide: 2 test(s) changed their outcome", "{changes}");
        assert_eq!(lines[4], "ui     c     ok           FAILED  NEW FAILURE", "{changes}");
        assert_eq!(lines[5], "ui     d     did not run  ok", "{changes}");
        let suites = render_suites(&results);
        let rows: Vec<String> =
            suites.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        assert_eq!(
            rows[4], "ui 3/1/2 12.3s (cached, measured 20261125-211532) 3/1/2 12.3s 2 1 1",
            "{suites}"
        );
        assert_eq!(rows[5], "library - - 3/1/2 12.3s not compared - -", "{suites}");

        let json = json_report("20261125-211532", &inputs(), &results);
        assert_eq!(json["suites"][0]["changes"][0]["test"], "c");
        assert_eq!(json["suites"][0]["changes"][0]["new_failure"], true);
        assert_eq!(json["suites"][0]["failing_on_both"], 1);
        assert_eq!(json["suites"][0]["base"]["cached_in"], "/c/wide/base-ui.json");
        assert_eq!(SuiteRun::from_json(&json["suites"][1]["series"]).unwrap(), series);
        assert!(json["suites"][1]["base"].is_null());

        let err = verdict(&paths, Side::Both, &results).unwrap_err().to_string();
        assert!(err.contains("1 test(s) fail with the series but not on the base"), "{err}");
        assert!(err.contains("ui: c (base: ok)"), "{err}");
        // A test failing on both sides is not the series' failure.
        results[0].series = Some(suite_run(&[("a", Passed), ("b", Failed), ("c", Passed)]));
        verdict(&paths, Side::Both, &results).unwrap();
        assert_eq!(render_changes(&results), "\nwide: no test changed its outcome");
    }
}
