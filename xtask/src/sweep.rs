//! `sweep`: a generated sweep of `#[autodiff]` programs (see `sweep_gen`), each checking its
//! derivative against finite differences of its primal. Every program is compiled with
//! `-Zautodiff=Enable -Clto=fat` at opt-level 0 (with `-Cdebuginfo=2`) and 3, by the stack's
//! stage 1 compiler, the unpatched base's, or any `--rustc`, all inside the chroot, and run.
//! Each result is PASS, WRONG (a mismatch, or a `Const` argument changed), CRASH (an ICE, an
//! LLVM or Enzyme error, a signal, a timeout, a crashing program) or ERROR (an ordinary rustc
//! diagnostic; for the programs with an invalid activity that is the expected outcome and
//! counts as PASS). Sources, build scripts and logs stay in CACHE/sweep/RUN-ID, with a JSON
//! summary. Prints tables per class and per feature and, for the stack against the base, the
//! programs whose class got worse; fails if a program passes on the base but not on the stack.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cmd::{self, fmt_duration, shell_quote, write_atomic};
use crate::env::{self, Chroot};
use crate::paths::*;
use crate::summary::table;
use crate::sweep_gen::{self, Program};

/// The default `--seed`.
const DEFAULT_SEED: u64 = 20261205;
/// Status the generated programs exit with on a mismatch.
const MISMATCH_STATUS: i32 = 3;
/// Status of `timeout` when it killed the command.
const TIMEOUT_STATUS: i32 = 124;

#[derive(clap::Args)]
pub struct Args {
    /// How many programs to generate
    #[arg(long, value_name = "N", default_value_t = 40)]
    pub count: usize,
    /// Seed of the generator: the same seed gives the same programs (a smaller count a prefix)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Optimization levels: 0 (with -Cdebuginfo=2), 3, or both
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = Opt::Both)]
    pub opt: Opt,
    /// Compilers: the stack's stage 1 (work/build), the base's (work/build-orig), or both,
    /// compared [default: both]
    #[arg(long, value_enum, value_name = "SIDE")]
    pub side: Option<Side>,
    /// Use this rustc instead, also in the chroot: a toolchain's bin/rustc (not a rustup
    /// proxy) with Enzyme installed; its toolchain directory is bound into the chroot
    #[arg(long, value_name = "PATH", conflicts_with = "side")]
    pub rustc: Option<PathBuf>,
    /// Compilations (each followed by its program's run) at a time
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub jobs: usize,
    /// Seconds before a compilation is killed (a CRASH)
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub compile_timeout: u64,
    /// Seconds before a program is killed (a CRASH)
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub run_timeout: u64,
    /// Only write the programs and print where; compile nothing (needs no root)
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Opt {
    #[value(name = "0")]
    O0,
    #[value(name = "3")]
    O3,
    Both,
}

impl Opt {
    fn levels(self) -> Vec<u8> {
        match self {
            Opt::O0 => vec![0],
            Opt::O3 => vec![3],
            Opt::Both => vec![0, 3],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// The unpatched base's stage 1 compiler
    Base,
    /// The stack's stage 1 compiler
    Stack,
    /// Both, and compare
    Both,
}

/// A compiler of the sweep: `base`, `stack` or `rustc` (from `--rustc`).
#[derive(Debug, Clone)]
struct Compiler {
    side: &'static str,
    rustc: PathBuf,
    /// The directory to bind into the chroot so that `rustc` and its sysroot are there.
    bind: PathBuf,
}

/// What a compilation and its run came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Pass,
    /// rustc rejected a valid program with an ordinary diagnostic.
    Error,
    /// rustc or the program crashed or timed out.
    Crash,
    /// The program ran and computed a wrong derivative or changed a `Const` argument (or rustc
    /// accepted an invalid program). The worst: nothing tells the user.
    Wrong,
}

impl Class {
    const ALL: [Class; 4] = [Class::Pass, Class::Wrong, Class::Crash, Class::Error];

    fn name(self) -> &'static str {
        match self {
            Class::Pass => "PASS",
            Class::Error => "ERROR",
            Class::Crash => "CRASH",
            Class::Wrong => "WRONG",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub class: Class,
    /// A PASS that is the rustc error an invalid program should get.
    pub expected_error: bool,
    /// The first relevant line: the error, the crash, the first mismatch.
    pub line: String,
}

impl Outcome {
    fn new(class: Class, line: impl Into<String>) -> Outcome {
        Outcome { class, expected_error: false, line: line.into() }
    }

    fn label(&self) -> &'static str {
        if self.expected_error { "PASS (expected error)" } else { self.class.name() }
    }
}

/// One compilation (and run) of a program.
#[derive(Debug, Clone)]
struct Task {
    program: usize,
    compiler: usize,
    opt: u8,
}

#[derive(Debug, Clone)]
struct TaskResult {
    outcome: Outcome,
    compile_ms: u64,
    dir: PathBuf,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    if args.count == 0 || args.jobs == 0 {
        bail!("--count and --jobs must be at least 1");
    }
    let programs = sweep_gen::generate(args.seed, args.count);
    let run_id = cmd::utc_stamp(SystemTime::now());
    let dir = paths.sweep().join(&run_id);
    if args.dry_run {
        write_programs(&dir, &programs)?;
        println!("sweep: {} programs (seed {}) in {}", programs.len(), args.seed, dir.display());
        return Ok(());
    }
    cmd::require_root("cargo xtask sweep")?;
    env::verify(paths)?;
    let compilers = compilers(paths, args)?;
    write_programs(&dir, &programs)?;
    println!("sweep: {} programs (seed {}) in {}", programs.len(), args.seed, dir.display());

    let mut binds = vec![paths.sweep()];
    for c in &compilers {
        if !binds.iter().any(|b| c.bind.starts_with(b)) {
            binds.push(c.bind.clone());
        }
    }
    let chroot = Chroot::enter_with(paths, &binds)?;
    let mut versions = Vec::new();
    for c in &compilers {
        let v = chroot.sh(&format!("{} -vV", shell_quote(&c.rustc.display().to_string()))).read();
        let v = v.with_context(|| format!("{} does not run in the chroot", c.rustc.display()))?;
        println!("sweep: {}: {}", c.side, v.lines().next().unwrap_or(""));
        versions.push(v);
    }
    let levels = args.opt.levels();
    let mut tasks = Vec::new();
    for program in 0..programs.len() {
        for &opt in &levels {
            for compiler in 0..compilers.len() {
                tasks.push(Task { program, compiler, opt });
            }
        }
    }
    let started = Instant::now();
    let results = run_tasks(&chroot, args, &dir, &programs, &compilers, &tasks, started);
    chroot.leave()?;
    let results = results?;
    println!("sweep: {} compilations in {}", tasks.len(), fmt_duration(started.elapsed()));

    // (program, side, opt) -> result
    let mut by_key: BTreeMap<(usize, &str, u8), &TaskResult> = BTreeMap::new();
    for (t, r) in tasks.iter().zip(&results) {
        by_key.insert((t.program, compilers[t.compiler].side, t.opt), r);
    }
    let sides: Vec<&str> = compilers.iter().map(|c| c.side).collect();
    let outcomes: BTreeMap<(usize, &str, u8), &Outcome> =
        by_key.iter().map(|(k, r)| (*k, &r.outcome)).collect();
    println!("\n{}", render_classes(&outcomes, &sides, &levels));
    for side in &sides {
        println!("{side}, per feature (pass/wrong/crash/error):");
        println!("{}", render_features(&programs, &outcomes, side, &levels));
    }
    let failures = render_failures(&programs, &outcomes);
    if !failures.is_empty() {
        println!("Not passing (sources and logs in {}):\n{failures}", dir.display());
    }
    let changes = if sides.contains(&"base") && sides.contains(&"stack") {
        let changes = worse_with_stack(&outcomes, programs.len(), &levels);
        if changes.is_empty() {
            println!("No program got worse with the stack.\n");
        } else {
            println!("Worse with the stack:\n{}", render_changes(&programs, &changes));
        }
        Some(changes)
    } else {
        None
    };
    let report = json_report(
        &run_id,
        args,
        &dir,
        &programs,
        &compilers,
        &versions,
        &by_key,
        changes.as_deref(),
    );
    let json_file = dir.join("sweep.json");
    write_atomic(&json_file, (serde_json::to_string_pretty(&report)? + "\n").as_bytes())?;
    let rejected = outcomes.values().filter(|o| o.class == Class::Error).count();
    if rejected > 0 {
        println!(
            "sweep: rustc rejected {rejected} valid program(s) (ERROR): a generator bug unless \
             the compiler is wrong; see the compile.log files"
        );
    }
    println!("sweep: programs, logs and sweep.json in {}", dir.display());
    match changes {
        Some(changes) => verdict(&programs, &changes),
        None => Ok(()),
    }
}

/// The compilers `--side` or `--rustc` select, checked to exist.
fn compilers(paths: &Paths, args: &Args) -> Result<Vec<Compiler>> {
    if let Some(given) = &args.rustc {
        let rustc = fs::canonicalize(given)
            .with_context(|| format!("--rustc {}: cannot resolve the path", given.display()))?;
        let toolchain = rustc.parent().and_then(Path::parent).map(Path::to_path_buf);
        let toolchain = toolchain.filter(|t| t.join("lib").is_dir()).with_context(|| {
            format!(
                "--rustc {} ({}): expected a toolchain's bin/rustc, next to its lib/ (not a \
                 rustup proxy)",
                given.display(),
                rustc.display()
            )
        })?;
        return Ok(vec![Compiler { side: "rustc", rustc, bind: toolchain }]);
    }
    let mut out = Vec::new();
    let side = args.side.unwrap_or(Side::Both);
    for (name, slot, wanted, builder) in [
        ("base", Slot::Unpatched, side != Side::Stack, "`cargo xtask bench` or `cargo xtask wide`"),
        ("stack", Slot::Series, side != Side::Base, "`cargo xtask full`"),
    ] {
        if !wanted {
            continue;
        }
        let rustc = paths.stage1(slot).join("bin/rustc");
        if !rustc.exists() {
            bail!(
                "no {name} compiler at {}; {builder} builds it (or pass --rustc PATH)",
                rustc.display()
            );
        }
        out.push(Compiler { side: name, rustc, bind: paths.work() });
    }
    Ok(out)
}

fn write_programs(dir: &Path, programs: &[Program]) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for p in programs {
        write_atomic(&dir.join(format!("{}.rs", p.id)), p.source.as_bytes())?;
    }
    Ok(())
}

/// rustc's flags at `opt`.
fn rustc_flags(opt: u8) -> Vec<String> {
    let mut flags: Vec<String> =
        ["--edition", "2024", "-Zautodiff=Enable", "-Clto=fat"].map(String::from).to_vec();
    flags.push(format!("-Copt-level={opt}"));
    if opt == 0 {
        flags.push("-Cdebuginfo=2".into());
    }
    flags
}

/// The script that compiles (and runs) one program in its task directory, kept there so that
/// `bash DIR/build.sh` in the chroot reproduces the result. Writes compile.{log,rc,ms} and
/// run.{log,rc}; deletes the binary of a program that ran fine.
fn build_script(
    program: &Program,
    compiler: &Compiler,
    opt: u8,
    args: &Args,
    source: &Path,
) -> String {
    let flags: Vec<String> = rustc_flags(opt).iter().map(|f| shell_quote(f)).collect();
    let mut s = format!(
        "#!/bin/bash\n# {}: {}\n# {} rustc, opt-level {opt}; run in the chroot: bash {{this file}}\n\
         cd \"$(dirname \"$0\")\" || exit 99\nrm -f compile.rc run.rc run.log prog\n\
         t0=$(date +%s%N)\n\
         timeout {} {} {} -o prog {} >compile.log 2>&1\necho $? >compile.rc\n\
         t1=$(date +%s%N)\necho $(( (t1 - t0) / 1000000 )) >compile.ms\n",
        program.id,
        program.summary(),
        compiler.side,
        args.compile_timeout,
        shell_quote(&compiler.rustc.display().to_string()),
        flags.join(" "),
        shell_quote(&source.display().to_string()),
    );
    if program.invalid.is_none() {
        s.push_str(&format!(
            "if [ \"$(cat compile.rc)\" = 0 ]; then\n  timeout {} ./prog >run.log 2>&1\n  \
             echo $? >run.rc\n  [ \"$(cat run.rc)\" = 0 ] && rm -f prog\nfi\n",
            args.run_timeout
        ));
    }
    s.push_str("exit 0\n");
    s
}

/// Run `tasks` on `args.jobs` threads, printing a line as each finishes.
fn run_tasks(
    chroot: &Chroot,
    args: &Args,
    dir: &Path,
    programs: &[Program],
    compilers: &[Compiler],
    tasks: &[Task],
    started: Instant,
) -> Result<Vec<TaskResult>> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<TaskResult>>>> =
        Mutex::new(tasks.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.min(tasks.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= tasks.len() || stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let t = &tasks[i];
                    let (p, c) = (&programs[t.program], &compilers[t.compiler]);
                    let r = run_task(chroot, args, dir, p, c, t.opt);
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    match &r {
                        Ok(r) => println!(
                            "[{n:>3}/{}] {} {} O{}: {} ({}, {} in all){}",
                            tasks.len(),
                            p.id,
                            c.side,
                            t.opt,
                            r.outcome.label(),
                            fmt_duration(std::time::Duration::from_millis(r.compile_ms)),
                            fmt_duration(started.elapsed()),
                            if r.outcome.class == Class::Pass && !r.outcome.expected_error {
                                String::new()
                            } else {
                                format!("\n        {}", clip(gist(&r.outcome.line), 150))
                            }
                        ),
                        Err(_) => stop.store(true, Ordering::SeqCst),
                    }
                    results.lock().expect("no thread panicked holding it")[i] = Some(r);
                }
            });
        }
    });
    let mut out = Vec::new();
    for r in results.into_inner().expect("no thread panicked holding it") {
        match r {
            Some(r) => out.push(r?),
            None => bail!("stopped before every program was compiled"),
        }
    }
    Ok(out)
}

fn run_task(
    chroot: &Chroot,
    args: &Args,
    dir: &Path,
    program: &Program,
    compiler: &Compiler,
    opt: u8,
) -> Result<TaskResult> {
    cmd::check_interrupted()?;
    let task_dir = dir.join(format!("{}.{}-O{opt}", program.id, compiler.side));
    let source = dir.join(format!("{}.rs", program.id));
    fs::create_dir_all(&task_dir)
        .with_context(|| format!("cannot create {}", task_dir.display()))?;
    let script = task_dir.join("build.sh");
    write_atomic(&script, build_script(program, compiler, opt, args, &source).as_bytes())?;
    chroot
        .sh(&format!("bash {}", shell_quote(&script.display().to_string())))
        .step("sweep")
        .quiet()
        .run()?;
    let read = |name: &str| fs::read_to_string(task_dir.join(name)).unwrap_or_default();
    let status = |name: &str| -> Result<Option<i32>> {
        let text = read(name);
        if text.trim().is_empty() {
            return Ok(None);
        }
        let rc = text.trim().parse().with_context(|| {
            format!("{}: not an exit status: {text:?}", task_dir.join(name).display())
        })?;
        Ok(Some(rc))
    };
    let compile_rc = status("compile.rc")?
        .with_context(|| format!("{} did not record rustc's exit status", script.display()))?;
    let run_rc = status("run.rc")?;
    let run_log = read("run.log");
    let outcome = classify(
        program.invalid.is_none(),
        compile_rc,
        &read("compile.log"),
        run_rc.map(|rc| (rc, run_log.as_str())),
    );
    let compile_ms = read("compile.ms").trim().parse().unwrap_or(0);
    Ok(TaskResult { outcome, compile_ms, dir: task_dir })
}

/// Lines of rustc's output that mean it (or LLVM, or Enzyme) crashed rather than rejected the
/// program.
const CRASH_MARKERS: &[&str] = &[
    "internal compiler error",
    "unexpectedly panicked",
    "panicked at",
    "LLVM ERROR",
    "Illegal updateAnalysis",
    "<unknown>:0:0",
    "Enzyme",
    "enzyme",
    "Assertion",
    "assertion failed",
    "Segmentation fault",
    "rustc interrupted by",
    "stack overflow",
];

fn signal_name(n: i32) -> String {
    let name = match n {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => "",
    };
    if name.is_empty() { format!("signal {n}") } else { format!("signal {n} ({name})") }
}

/// Classify one compilation from rustc's exit status and output, and the program's run (exit
/// status and output) if it ran. `valid`: whether the program's activities are valid (an
/// invalid one should get an ordinary rustc error).
pub fn classify(
    valid: bool,
    compile_rc: i32,
    compile_log: &str,
    run: Option<(i32, &str)>,
) -> Outcome {
    let lines = || compile_log.lines().map(str::trim).filter(|l| !l.is_empty());
    let crash_line = lines().find(|l| CRASH_MARKERS.iter().any(|m| l.contains(m)));
    let compiled = compile_rc == 0;
    let rustc = if compiled {
        None
    } else if compile_rc == TIMEOUT_STATUS {
        Some(Outcome::new(Class::Crash, "rustc timed out"))
    } else if let Some(l) = crash_line {
        Some(Outcome::new(Class::Crash, l))
    } else if compile_rc > 128 {
        Some(Outcome::new(
            Class::Crash,
            format!("rustc killed by {}", signal_name(compile_rc - 128)),
        ))
    } else {
        let error = lines().find(|l| l.starts_with("error") && !l.starts_with("error: aborting"));
        let line = error.or_else(|| lines().next()).unwrap_or("(no output)");
        if compile_rc == 101 {
            Some(Outcome::new(Class::Crash, line))
        } else {
            Some(Outcome::new(Class::Error, line))
        }
    };
    if !valid {
        return match rustc {
            Some(o) if o.class == Class::Error => {
                Outcome { class: Class::Pass, expected_error: true, line: o.line }
            }
            Some(o) => o,
            None => Outcome::new(Class::Wrong, "rustc accepted the invalid activity"),
        };
    }
    if let Some(o) = rustc {
        return o;
    }
    let Some((rc, log)) = run else {
        return Outcome::new(Class::Crash, "compiled, but the program did not run");
    };
    let first = || log.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("(no output)");
    match rc {
        0 if log.lines().any(|l| l.trim() == "ok") => Outcome::new(Class::Pass, ""),
        0 => Outcome::new(Class::Wrong, format!("exited 0 without printing ok: {}", first())),
        MISMATCH_STATUS => Outcome::new(Class::Wrong, first()),
        TIMEOUT_STATUS => Outcome::new(Class::Crash, "the program timed out"),
        101 => {
            let panic = log.lines().map(str::trim).find(|l| l.contains("panicked"));
            Outcome::new(
                Class::Crash,
                format!("the program panicked: {}", panic.unwrap_or(first())),
            )
        }
        rc if rc > 128 => Outcome::new(
            Class::Crash,
            format!("the program was killed by {}", signal_name(rc - 128)),
        ),
        rc => {
            Outcome::new(Class::Crash, format!("the program exited with status {rc}: {}", first()))
        }
    }
}

/// The informative part of a first line for the tables: an Enzyme message without the
/// location and mangled function before it (the JSON keeps the whole line).
fn gist(line: &str) -> &str {
    line.find("Enzyme: ").map_or(line, |i| &line[i..])
}

/// At most `n` characters of `s`.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

type Outcomes<'a> = BTreeMap<(usize, &'a str, u8), &'a Outcome>;

/// Per side and opt-level: how many programs fell in each class.
fn render_classes(outcomes: &Outcomes, sides: &[&str], levels: &[u8]) -> String {
    let mut cells = vec![
        ["side", "opt", "PASS", "of which expected errors", "WRONG", "CRASH", "ERROR", "total"]
            .map(String::from)
            .to_vec(),
    ];
    for side in sides {
        for &opt in levels {
            let of_side: Vec<&&Outcome> = outcomes
                .iter()
                .filter(|((_, s, o), _)| s == side && *o == opt)
                .map(|(_, o)| o)
                .collect();
            let count = |c: Class| of_side.iter().filter(|o| o.class == c).count().to_string();
            let expected = of_side.iter().filter(|o| o.expected_error).count();
            let mut row = vec![side.to_string(), format!("O{opt}"), count(Class::Pass)];
            row.push(expected.to_string());
            row.extend([Class::Wrong, Class::Crash, Class::Error].map(count));
            row.push(of_side.len().to_string());
            cells.push(row);
        }
    }
    table(&cells)
}

/// Per feature value (a program counts once per value it has): the classes at each opt-level,
/// as `pass/wrong/crash/error`.
fn render_features(programs: &[Program], outcomes: &Outcomes, side: &str, levels: &[u8]) -> String {
    let mut header = vec!["feature".to_string(), "value".into(), "programs".into()];
    header.extend(levels.iter().map(|o| format!("O{o}")));
    // (feature, value) -> (programs, per opt-level the counts in `Class::ALL` order)
    type Counts = (usize, Vec<[usize; 4]>);
    let mut rows: BTreeMap<(&str, String), Counts> = BTreeMap::new();
    for (i, p) in programs.iter().enumerate() {
        for (feature, value) in p.features() {
            let entry = rows.entry((feature, value)).or_insert((0, vec![[0; 4]; levels.len()]));
            entry.0 += 1;
            for (l, &opt) in levels.iter().enumerate() {
                if let Some(o) = outcomes.get(&(i, side, opt)) {
                    let col = Class::ALL.iter().position(|c| *c == o.class).unwrap_or(0);
                    entry.1[l][col] += 1;
                }
            }
        }
    }
    let order = ["mode", "return", "seed", "type", "activity", "validity"];
    let mut keys: Vec<&(&str, String)> = rows.keys().collect();
    keys.sort_by_key(|(f, v)| (order.iter().position(|o| o == f), v.clone()));
    let mut cells = vec![header];
    for key in keys {
        let (n, counts) = &rows[key];
        let mut row = vec![key.0.to_string(), key.1.clone(), n.to_string()];
        row.extend(counts.iter().map(|c| format!("{}/{}/{}/{}", c[0], c[1], c[2], c[3])));
        cells.push(row);
    }
    table(&cells)
}

/// Every result that is not a plain PASS.
fn render_failures(programs: &[Program], outcomes: &Outcomes) -> String {
    let mut cells = vec![
        ["program", "compiler", "class", "first line", "program is"].map(String::from).to_vec(),
    ];
    for ((i, side, opt), o) in outcomes {
        if o.class != Class::Pass {
            cells.push(vec![
                programs[*i].id.clone(),
                format!("{side} O{opt}"),
                o.class.name().to_string(),
                clip(gist(&o.line), 100),
                clip(&programs[*i].summary(), 90),
            ]);
        }
    }
    if cells.len() == 1 { String::new() } else { table(&cells) }
}

/// A program whose class at an opt-level is worse with the stack than on the base.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub program: usize,
    pub opt: u8,
    pub base: Outcome,
    pub stack: Outcome,
}

impl Change {
    /// The regression gate: it passed on the base and does not with the stack.
    pub fn is_regression(&self) -> bool {
        self.base.class == Class::Pass && self.stack.class != Class::Pass
    }
}

fn worse_with_stack(outcomes: &Outcomes, programs: usize, levels: &[u8]) -> Vec<Change> {
    let mut out = Vec::new();
    for program in 0..programs {
        for &opt in levels {
            let (Some(b), Some(s)) =
                (outcomes.get(&(program, "base", opt)), outcomes.get(&(program, "stack", opt)))
            else {
                continue;
            };
            if s.class > b.class {
                out.push(Change { program, opt, base: (*b).clone(), stack: (*s).clone() });
            }
        }
    }
    out
}

fn render_changes(programs: &[Program], changes: &[Change]) -> String {
    let mut cells =
        vec![["program", "opt", "base", "stack", "stack's first line"].map(String::from).to_vec()];
    for c in changes {
        cells.push(vec![
            programs[c.program].id.clone(),
            format!("O{}", c.opt),
            c.base.label().to_string(),
            c.stack.label().to_string(),
            clip(gist(&c.stack.line), 100),
        ]);
    }
    table(&cells)
}

fn verdict(programs: &[Program], changes: &[Change]) -> Result<()> {
    let regressions: Vec<String> = changes
        .iter()
        .filter(|c| c.is_regression())
        .map(|c| format!("{} O{} ({})", programs[c.program].id, c.opt, c.stack.class.name()))
        .collect();
    if !regressions.is_empty() {
        bail!(
            "{} program(s) pass on the base but not with the stack: {}",
            regressions.len(),
            regressions.join(", ")
        );
    }
    Ok(())
}

fn outcome_json(o: &Outcome) -> Value {
    json!({ "class": o.class.name(), "expected_error": o.expected_error, "line": o.line })
}

#[allow(clippy::too_many_arguments)]
fn json_report(
    run_id: &str,
    args: &Args,
    dir: &Path,
    programs: &[Program],
    compilers: &[Compiler],
    versions: &[String],
    results: &BTreeMap<(usize, &str, u8), &TaskResult>,
    changes: Option<&[Change]>,
) -> Value {
    let compilers: Vec<Value> = compilers
        .iter()
        .zip(versions)
        .map(|(c, v)| json!({ "side": c.side, "rustc": c.rustc, "version": v }))
        .collect();
    let programs_json: Vec<Value> = programs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let results: Vec<Value> = results
                .iter()
                .filter(|((pi, _, _), _)| *pi == i)
                .map(|((_, side, opt), r)| {
                    let mut v = outcome_json(&r.outcome);
                    v["side"] = json!(side);
                    v["opt"] = json!(opt);
                    v["compile_ms"] = json!(r.compile_ms);
                    v["dir"] = json!(r.dir);
                    v
                })
                .collect();
            let params: Vec<Value> = p
                .params
                .iter()
                .map(|q| json!({ "type": q.ty.sig(), "activity": q.act.name() }))
                .collect();
            json!({
                "id": p.id,
                "source": dir.join(format!("{}.rs", p.id)),
                "summary": p.summary(),
                "mode": p.mode.name(),
                "return": p.ret.name(),
                "seed": p.seed,
                "params": params,
                "invalid": p.invalid.as_ref().map(|(kind, detail)| json!({ "kind": kind, "detail": detail })),
                "results": results,
            })
        })
        .collect();
    let mut counts = serde_json::Map::new();
    for ((_, side, opt), r) in results {
        let key = format!("{side} O{opt}");
        let entry = counts.entry(key).or_insert_with(|| json!({}));
        let class = r.outcome.class.name();
        entry[class] = json!(entry.get(class).and_then(Value::as_u64).unwrap_or(0) + 1);
    }
    json!({
        "run": run_id,
        "dir": dir,
        "seed": args.seed,
        "count": args.count,
        "opt_levels": args.opt.levels(),
        "flags": { "0": rustc_flags(0), "3": rustc_flags(3) },
        "finite_differences": {
            "step_f64": sweep_gen::STEP_F64,
            "step_f32": sweep_gen::STEP_F32,
            "tolerance": sweep_gen::TOLERANCE,
        },
        "compilers": compilers,
        "counts": counts,
        "worse_with_stack": changes.map(|cs| cs.iter().map(|c| json!({
            "program": programs[c.program].id,
            "opt": c.opt,
            "base": outcome_json(&c.base),
            "stack": outcome_json(&c.stack),
            "regression": c.is_regression(),
        })).collect::<Vec<_>>()),
        "programs": programs_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_rustc_output() {
        let ice = "error: internal compiler error: compiler/rustc_codegen_llvm/src/builder/autodiff.rs:231:18: \
                   unsupported\n\nthread 'rustc' panicked at compiler/rustc_codegen_llvm/src/lib.rs:1:1:\n";
        let o = classify(true, 101, ice, None);
        assert_eq!(o.class, Class::Crash);
        assert!(o.line.starts_with("error: internal compiler error"), "{o:?}");

        let llvm = "LLVM ERROR: Broken module found, compilation aborted!\n";
        assert_eq!(
            classify(true, 1, llvm, None).line,
            "LLVM ERROR: Broken module found, compilation aborted!"
        );
        let upd = "warning: unused variable\nIllegal updateAnalysis prev:{[-1]:Pointer} new: {[-1]:Float@double}\n";
        assert_eq!(classify(true, 134, upd, None).class, Class::Crash);
        let enzyme = "error: <unknown>:0:0: in function preprocess_f double (ptr): Enzyme: cannot handle unknown binary operator\n";
        let o = classify(true, 1, enzyme, None);
        assert_eq!((o.class, o.line.as_str()), (Class::Crash, enzyme.trim()));
        assert_eq!(
            classify(true, 139, "", None),
            Outcome::new(Class::Crash, "rustc killed by signal 11 (SIGSEGV)")
        );
        assert_eq!(classify(true, TIMEOUT_STATUS, "", None).line, "rustc timed out");
        assert_eq!(gist(enzyme.trim()), "Enzyme: cannot handle unknown binary operator");
        assert_eq!(gist("LLVM ERROR: x"), "LLVM ERROR: x");

        let typeck = "error[E0308]: mismatched types\n --> p001.rs:3:5\n\nerror: aborting due to 1 previous error\n";
        assert_eq!(
            classify(true, 1, typeck, None),
            Outcome::new(Class::Error, "error[E0308]: mismatched types")
        );
        // For an invalid program, the ordinary error is the expected outcome.
        let invalid = "error: Duplicated can not be used for this type\n --> p002.rs:9:12\n";
        let o = classify(false, 1, invalid, None);
        assert_eq!((o.class, o.expected_error), (Class::Pass, true));
        assert_eq!(o.label(), "PASS (expected error)");
        assert_eq!(classify(false, 0, "", None).class, Class::Wrong);
        assert_eq!(classify(false, 101, ice, None).class, Class::Crash);
    }

    #[test]
    fn classifies_runs() {
        assert_eq!(classify(true, 0, "warning: x\n", Some((0, "ok\n"))).class, Class::Pass);
        let wrong = "d/dx0[1]: autodiff 1e0, finite differences 2.5e0\nprimal: ...\n";
        assert_eq!(
            classify(true, 0, "", Some((MISMATCH_STATUS, wrong))),
            Outcome::new(Class::Wrong, "d/dx0[1]: autodiff 1e0, finite differences 2.5e0")
        );
        let panic = "\nthread 'main' panicked at p003.rs:20:5:\nindex out of bounds\n";
        assert_eq!(
            classify(true, 0, "", Some((101, panic))).line,
            "the program panicked: thread 'main' panicked at p003.rs:20:5:"
        );
        assert_eq!(
            classify(true, 0, "", Some((134, ""))).line,
            "the program was killed by signal 6 (SIGABRT)"
        );
        assert_eq!(classify(true, 0, "", Some((TIMEOUT_STATUS, ""))).class, Class::Crash);
        assert_eq!(classify(true, 0, "", Some((0, "nothing\n"))).class, Class::Wrong);
    }

    fn outcomes_fixture() -> Vec<((usize, &'static str, u8), Outcome)> {
        let pass = Outcome::new(Class::Pass, "");
        let wrong = Outcome::new(Class::Wrong, "d/dx0[0]: autodiff 1e0, finite differences 2e0");
        let crash = Outcome::new(Class::Crash, "LLVM ERROR: x");
        vec![
            ((0, "base", 3), pass.clone()),
            ((0, "stack", 3), pass.clone()),
            ((1, "base", 3), wrong.clone()),
            ((1, "stack", 3), pass.clone()),
            ((2, "base", 3), pass.clone()),
            ((2, "stack", 3), crash.clone()),
            ((3, "base", 3), crash),
            ((3, "stack", 3), wrong),
        ]
    }

    #[test]
    fn compares_stack_with_base() {
        let fixture = outcomes_fixture();
        let outcomes: Outcomes = fixture.iter().map(|(k, o)| (*k, o)).collect();
        let changes = worse_with_stack(&outcomes, 4, &[3]);
        assert_eq!(changes.iter().map(|c| c.program).collect::<Vec<_>>(), [2, 3]);
        assert!(changes[0].is_regression() && !changes[1].is_regression());
        let programs = sweep_gen::generate(1, 4);
        let err = verdict(&programs, &changes).unwrap_err().to_string();
        assert_eq!(err, "1 program(s) pass on the base but not with the stack: p002 O3 (CRASH)");
        verdict(&programs, &changes[1..]).unwrap();

        let t = render_classes(&outcomes, &["base", "stack"], &[3]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("side   opt  PASS  of which expected errors  WRONG  CRASH"),
            "{t}"
        );
        assert!(
            lines[2]
                .starts_with("base   O3   2     0                         1      1      0      4"),
            "{t}"
        );
        assert!(
            lines[3]
                .starts_with("stack  O3   2     0                         1      1      0      4"),
            "{t}"
        );
        // The validity rows partition the programs: their counts add up to the stack's classes.
        let f = render_features(&programs, &outcomes, "stack", &[3]);
        let mut sum = [0; 4];
        for line in f.lines().filter(|l| l.starts_with("validity")) {
            let cell = line.split_whitespace().last().unwrap();
            for (s, n) in sum.iter_mut().zip(cell.split('/')) {
                *s += n.parse::<usize>().unwrap();
            }
        }
        assert_eq!(sum, [2, 1, 1, 0], "{f}");
        let c = render_changes(&programs, &changes);
        assert!(c.contains("p002     O3   PASS   CRASH  LLVM ERROR: x"), "{c}");
    }

    #[test]
    fn scripts_and_flags() {
        assert_eq!(
            rustc_flags(0),
            [
                "--edition",
                "2024",
                "-Zautodiff=Enable",
                "-Clto=fat",
                "-Copt-level=0",
                "-Cdebuginfo=2"
            ]
        );
        assert_eq!(rustc_flags(3).last().unwrap(), "-Copt-level=3");
        let args = Args {
            count: 1,
            seed: 1,
            opt: Opt::Both,
            side: None,
            rustc: None,
            jobs: 1,
            compile_timeout: 900,
            run_timeout: 60,
            dry_run: false,
        };
        let c = Compiler { side: "stack", rustc: "/w/stage1/bin/rustc".into(), bind: "/w".into() };
        let valid = sweep_gen::generate(5, 40).into_iter().find(|p| p.invalid.is_none()).unwrap();
        let s = build_script(&valid, &c, 3, &args, Path::new("/s/p000.rs"));
        assert!(
            s.contains("timeout 900 /w/stage1/bin/rustc --edition 2024 -Zautodiff=Enable -Clto=fat -Copt-level=3 -o prog /s/p000.rs >compile.log 2>&1\n"),
            "{s}"
        );
        assert!(s.contains("timeout 60 ./prog >run.log 2>&1\n"), "{s}");
        let invalid =
            (0..).map(|i| sweep_gen::program(5, i)).find(|p| p.invalid.is_some()).unwrap();
        assert!(!build_script(&invalid, &c, 0, &args, Path::new("/s/p.rs")).contains("./prog"));
    }

    #[test]
    fn dry_run_writes_programs_without_root() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path().into(), "/p".into());
        let args = Args {
            count: 3,
            seed: 9,
            opt: Opt::Both,
            side: None,
            rustc: None,
            jobs: 2,
            compile_timeout: 900,
            run_timeout: 60,
            dry_run: true,
        };
        run(&paths, &args).unwrap();
        let runs: Vec<PathBuf> =
            fs::read_dir(paths.sweep()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(runs.len(), 1);
        let a = fs::read_to_string(runs[0].join("p002.rs")).unwrap();
        assert_eq!(a, sweep_gen::program(9, 2).source);
    }
}
