//! `bench`: what the series costs, patched vs unpatched, measured in one run. Builds (or
//! incrementally updates) two stage 1 compilers from the same config, the unpatched one from
//! `fixups` in `work/orig` and the patched one from the series in `work/tree`, then compiles
//! the programs of `bench_programs` with both, interleaved, and compares outputs, symbol
//! tables, linking with C code that defines Enzyme's markers, and compile times: wall time,
//! and the instructions rustc executes (counted by `cachegrind` at several address-space
//! layouts), which unlike wall time on this 2-core VM do not spread by about 10 % from run to
//! run. Also times the harness's own turnaround: a warm `check` and the rebuild after
//! touching one patch. Prints a table and writes the same figures as JSON.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench_programs as prog;
use crate::cachegrind::{self, Goal, Samples};
use crate::cmd::{self, fmt_duration, require_root, shell_quote, write_atomic};
use crate::env::Chroot;
use crate::paths::*;
use crate::summary::{self, Row, step};
use crate::{apply, check, full, series, stack, symbols};

#[derive(clap::Args)]
pub struct Args {
    /// Prebuilt Enzyme built against LLVM 22; it is installed as libEnzyme-22.so
    #[arg(long, value_name = "PATH")]
    pub enzyme_lib: PathBuf,
    /// Timed compilations of the autodiff crate per compiler, interleaved
    #[arg(long, default_value_t = 7, value_name = "N")]
    pub runs: usize,
    /// Most address-space layouts each compiler is counted at per build (valgrind in the
    /// chroot); counting stops earlier, after at least two, once the layout noise cannot
    /// change the verdict. 1 counts once, without an interval
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub layouts: u32,
    /// Skip the instruction counts (each counted compile takes some 20-50 times as long as a
    /// plain one)
    #[arg(long)]
    pub no_instructions: bool,
    /// Skip the turnaround figures (a warm `check`, the rebuild after touching one patch)
    #[arg(long)]
    pub no_turnaround: bool,
    /// Also write the JSON report here (it always goes to CACHE/logs)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The goal for the compile-time ratio patched/unpatched.
const TIME_RATIO_GOAL: f64 = 1.01;

/// How the autodiff crate is compiled, for the wall time and the instruction count.
const AUTODIFF_FLAGS: [&str; 3] = ["-Zautodiff=Enable", "-Clto=fat", "-Copt-level=3"];

/// An autodiff program that both compilers build and run, timed (and its binary measured).
struct Timed {
    /// Output name and key of the JSON report.
    name: &'static str,
    file: &'static str,
    flags: &'static [&'static str],
    expected: &'static str,
    /// The table's wording.
    what: &'static str,
    /// The goal for the ratio patched/unpatched of the median times, if it has one.
    goal: Option<f64>,
}

/// The timed builds: the autodiff crate at opt-level=3, with the goal, and a debug build of a
/// program that 1.95.0 also differentiates at opt-level=0, whose cost is reported, not judged
/// (the stack gives Enzyme simplified copies there, which is work 1.95.0 does not do).
const TIMED: [Timed; 2] = [
    Timed {
        name: "autodiff",
        file: "autodiff.rs",
        flags: &AUTODIFF_FLAGS,
        expected: prog::AUTODIFF_EXPECTED,
        what: "autodiff crate compile time (O3, fat LTO)",
        goal: Some(TIME_RATIO_GOAL),
    },
    Timed {
        name: "autodiff-debug",
        file: "autodiff_debug.rs",
        flags: &["-Zautodiff=Enable", "-Clto=fat", "-Copt-level=0", "-Cdebuginfo=2"],
        expected: prog::AUTODIFF_DEBUG_EXPECTED,
        what: "autodiff debug program compile time (O0 -g, fat LTO)",
        goal: None,
    },
];

/// The builds of the hello-world program (no autodiff): name and flags.
const HELLO_BUILDS: [(&str, &[&str]); 2] =
    [("hello-o3", &["-Copt-level=3"]), ("hello-o3-fat-lto", &["-Copt-level=3", "-Clto=fat"])];

/// Instruction-count goals for patched/unpatched: the autodiff crate may cost 0.5 % more, a
/// crate without autodiff must cost the same within 0.1 %.
const AUTODIFF_IR_GOAL: Goal = Goal::AtMost { ppm: 5_000 };
const PLAIN_IR_GOAL: Goal = Goal::Within { ppm: 1_000 };

/// One of the two compilers.
struct Compiler {
    name: &'static str,
    rustc: PathBuf,
    out: PathBuf,
}

/// A line of the final table.
struct Line {
    what: String,
    unpatched: String,
    patched: String,
    change: String,
    goal: String,
    met: Option<bool>,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.layouts == 0 {
        bail!("--layouts must be at least 1 (--no-instructions skips the instruction counts)");
    }
    require_root("cargo xtask bench")?;
    crate::env::verify(paths)?;
    if !args.no_instructions {
        // Before the builds, which take minutes.
        crate::env::verify_tool(paths, cachegrind::VALGRIND, cachegrind::PACKAGE).context(
            "counting instructions needs valgrind in the chroot (or pass --no-instructions)",
        )?;
    }
    full::validate_enzyme_lib(&args.enzyme_lib)?;
    let patches = stack::flatten(&stack::load(&paths.patches)?);
    let started = cmd::utc_stamp(std::time::SystemTime::now());

    let mut lines = Vec::new();
    let mut report = serde_json::Map::new();
    if !args.no_turnaround {
        let warm = paths.build_dir(Slot::Check).exists();
        let t = Instant::now();
        check::run(paths, &check::Args { tidy: false, lint_only: false, last_only: true })?;
        let took = t.elapsed();
        let goal = if warm { "warm cache" } else { "COLD cache (no earlier check)" };
        lines.push(Line {
            what: "turnaround: `cargo xtask check`".into(),
            unpatched: "-".into(),
            patched: fmt_duration(took),
            change: "-".into(),
            goal: goal.into(),
            met: None,
        });
        report.insert("check".into(), json!({"seconds": took.as_secs_f64(), "warm": warm}));
    }

    full::prepare_enzyme(paths, &args.enzyme_lib)?;
    let mut rows = Vec::new();
    let result = measure(paths, args, &patches, &mut rows, &mut lines, &mut report);
    summary::print(&rows);
    result?;

    let table = render(&lines);
    let counted = if args.no_instructions {
        String::new()
    } else {
        format!(", instructions counted at up to {} layouts per compiler and build", args.layouts)
    };
    println!("\nbench ({started}, {} timed runs per compiler{counted})\n{table}", args.runs);
    report.insert("date".into(), json!(started));
    report.insert("runs".into(), json!(args.runs));
    report.insert(
        "command".into(),
        json!(format!("cargo xtask bench --enzyme-lib {}", args.enzyme_lib.display())),
    );
    report.insert("table".into(), json!(table));
    let text = serde_json::to_string_pretty(&Value::Object(report))? + "\n";
    let log_json = paths.logs().join(format!("{started}-bench.json"));
    write_atomic(&log_json, text.as_bytes())?;
    println!("bench: JSON report in {}", log_json.display());
    if let Some(file) = &args.json {
        write_atomic(file, text.as_bytes())?;
        println!("bench: JSON report also in {}", file.display());
    }
    Ok(())
}

fn measure(
    paths: &Paths,
    args: &Args,
    patches: &[series::Patch],
    rows: &mut Vec<Row>,
    lines: &mut Vec<Line>,
    report: &mut serde_json::Map<String, Value>,
) -> Result<()> {
    step(rows, "apply-unpatched", || apply::apply_patches(paths, Slot::Unpatched, &[]))?;
    step(rows, "apply-patched", || apply::apply_patches(paths, Slot::Series, patches))?;
    full::write_shim(paths, Slot::Unpatched)?;
    full::write_shim(paths, Slot::Series)?;
    let chroot = Chroot::enter(paths)?;
    let build = |slot: Slot, name: &str, rows: &mut Vec<Row>| {
        step(rows, name, || chroot.x(slot, &["build", "--stage", "1", "library"], name).run())
    };
    build(Slot::Unpatched, "build-unpatched-stage1", rows)?;
    build(Slot::Series, "build-patched-stage1", rows)?;

    if !args.no_turnaround {
        let (touched, took) = rebuild_after_touch(paths, patches, rows, |rows| {
            build(Slot::Series, "rebuild-after-touch", rows).map(|_| ())
        })?;
        lines.push(Line {
            what: format!("turnaround: rebuild after touching {touched}"),
            unpatched: "-".into(),
            patched: fmt_duration(took),
            change: "-".into(),
            goal: "incremental".into(),
            met: None,
        });
        report.insert(
            "rebuild_after_touch".into(),
            json!({"patch": touched, "seconds": took.as_secs_f64()}),
        );
    }

    let src = paths.bench().join("src");
    for (file, text) in [
        ("hello.rs", prog::HELLO),
        ("cdylib.rs", prog::CDYLIB),
        ("staticlib.rs", prog::STATICLIB),
        ("main.c", prog::C_MAIN),
        ("autodiff.rs", prog::AUTODIFF),
        ("autodiff_debug.rs", prog::AUTODIFF_DEBUG),
    ] {
        write_atomic(&src.join(file), text.as_bytes())?;
    }
    let compilers = [Slot::Unpatched, Slot::Series].map(|slot| {
        let name = if slot == Slot::Series { "patched" } else { "unpatched" };
        Compiler {
            name,
            rustc: paths.stage1(slot).join("bin/rustc"),
            out: paths.bench().join(name),
        }
    });
    for c in &compilers {
        if !c.rustc.exists() {
            bail!("no stage 1 rustc at {} after the build", c.rustc.display());
        }
        fs::create_dir_all(&c.out).with_context(|| format!("cannot create {}", c.out.display()))?;
    }

    let result = (|| {
        for (name, flags) in HELLO_BUILDS {
            binary_footprint(&chroot, &compilers, &src, name, flags, lines, report)?;
        }
        cdylib_exports(&chroot, &compilers, &src, lines, report)?;
        c_link(&chroot, &compilers, &src, lines, report)?;
        driver_imports(&compilers, lines, report)?;
        for timed in &TIMED {
            compile_time(&chroot, &compilers, &src, timed, args.runs, lines, report)?;
        }
        if !args.no_instructions {
            instructions(&chroot, &compilers, &src, args.layouts, lines, report)?;
        }
        Ok(())
    })();
    chroot.leave()?;
    result
}

/// Move the series' tree to the commit before the last patch that changes the compiler and
/// back, which rewrites that patch's files (as editing it would), then time `rebuild`.
fn rebuild_after_touch(
    paths: &Paths,
    patches: &[series::Patch],
    rows: &mut Vec<Row>,
    rebuild: impl FnOnce(&mut Vec<Row>) -> Result<()>,
) -> Result<(String, Duration)> {
    let Some(k) = patches.iter().rposition(|p| p.files.iter().any(|f| f.starts_with("compiler/")))
    else {
        bail!("no patch changes compiler/; nothing to touch for the rebuild figure");
    };
    let name = patches[k].name.clone();
    println!("bench: touching {name} (its files are rewritten, as an edit of the patch would)");
    let before = apply::commit_series(paths, &patches[..k])?;
    apply::sync_tree(paths, Slot::Series, &before)?;
    apply::apply_patches(paths, Slot::Series, patches)?;
    let t = Instant::now();
    rebuild(rows)?;
    Ok((name, t.elapsed()))
}

/// Run `rustc` of `c` in the chroot, in `src`, with `args`; returns the command's output.
fn rustc(chroot: &Chroot, c: &Compiler, src: &Path, args: &[String]) -> Result<cmd::Output> {
    let mut words = vec![c.rustc.display().to_string()];
    words.extend(args.iter().cloned());
    run_in(chroot, src, &words)
}

/// Run the command `words` in the chroot, in `src`; its output is stdout and stderr together.
fn run_in(chroot: &Chroot, src: &Path, words: &[String]) -> Result<cmd::Output> {
    let words: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
    let script =
        format!("cd {} && {} 2>&1", shell_quote(&src.display().to_string()), words.join(" "));
    chroot.sh(&script).quiet().step("bench").run_unchecked()
}

fn must(out: cmd::Output, what: &str) -> Result<cmd::Output> {
    if !out.success {
        bail!("{what} failed:\n{}", out.text.trim_end());
    }
    Ok(out)
}

fn out_file(c: &Compiler, name: &str) -> String {
    c.out.join(name).display().to_string()
}

fn file_size(path: &str) -> Result<u64> {
    Ok(fs::metadata(path).with_context(|| format!("no output {path}"))?.len())
}

fn fmt_delta(d: i64) -> String {
    format!("{d:+} B")
}

/// Summarize symbol differences: "none" or the count and the first few names.
fn fmt_names(only_unpatched: &[String], only_patched: &[String]) -> String {
    let show = |v: &[String]| {
        let mut s = v.iter().take(4).cloned().collect::<Vec<_>>().join(" ");
        if v.len() > 4 {
            s.push_str(&format!(" (+{} more)", v.len() - 4));
        }
        s
    };
    match (only_unpatched.is_empty(), only_patched.is_empty()) {
        (true, true) => "none".into(),
        (true, false) => format!("new: {}", show(only_patched)),
        (false, true) => format!("gone: {}", show(only_unpatched)),
        (false, false) => {
            format!("new: {}; gone: {}", show(only_patched), show(only_unpatched))
        }
    }
}

/// Sizes and symbol tables of one output built by both compilers.
struct Footprint {
    sizes: [u64; 2],
    /// Only the unpatched compiler's output has these symbols (after `symbols::normalize`).
    gone: Vec<String>,
    /// Only the patched compiler's output has these.
    new: Vec<String>,
    counts: [usize; 2],
}

impl Footprint {
    /// Build `file` with `flags` into `out_name` with both compilers and compare the outputs'
    /// sizes and defined symbols (the dynamic table if `dynamic`).
    fn measure(
        chroot: &Chroot,
        compilers: &[Compiler; 2],
        src: &Path,
        (file, flags, out_name): (&str, &[&str], &str),
        dynamic: bool,
    ) -> Result<Footprint> {
        let mut sizes = [0u64; 2];
        let mut syms = Vec::new();
        for (i, c) in compilers.iter().enumerate() {
            let out = out_file(c, out_name);
            let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
            args.extend([file.into(), "-o".into(), out.clone()]);
            must(rustc(chroot, c, src, &args)?, &format!("{} rustc {out_name}", c.name))?;
            sizes[i] = file_size(&out)?;
            syms.push(symbols::defined(Path::new(&out), dynamic)?);
        }
        let (gone, new) = symbols::differ(&syms[0], &syms[1]);
        Ok(Footprint { sizes, gone, new, counts: [syms[0].len(), syms[1].len()] })
    }

    fn size_delta(&self) -> i64 {
        self.sizes[1] as i64 - self.sizes[0] as i64
    }

    /// The size line (goal +0 B) and the symbol line of the table.
    fn lines(
        &self,
        what: &str,
        symbols_what: &str,
        symbols_goal: &str,
        symbols_met: bool,
    ) -> [Line; 2] {
        let delta = self.size_delta();
        [
            Line {
                what: format!("{what} (no autodiff): size"),
                unpatched: format!("{} B", self.sizes[0]),
                patched: format!("{} B", self.sizes[1]),
                change: fmt_delta(delta),
                goal: "+0 B".into(),
                met: Some(delta == 0),
            },
            Line {
                what: format!("{what}: {symbols_what}"),
                unpatched: format!("{}", self.counts[0]),
                patched: format!("{}", self.counts[1]),
                change: fmt_names(&self.gone, &self.new),
                goal: symbols_goal.into(),
                met: Some(symbols_met),
            },
        ]
    }

    fn json(&self, symbols_key: &str) -> Value {
        json!({"size": {"unpatched": self.sizes[0], "patched": self.sizes[1]},
               symbols_key: {"unpatched": self.counts[0], "patched": self.counts[1],
                             "only_patched": self.new, "only_unpatched": self.gone}})
    }
}

/// A program that does not use autodiff: size and symbol table.
fn binary_footprint(
    chroot: &Chroot,
    compilers: &[Compiler; 2],
    src: &Path,
    name: &str,
    flags: &[&str],
    lines: &mut Vec<Line>,
    report: &mut serde_json::Map<String, Value>,
) -> Result<()> {
    let f = Footprint::measure(chroot, compilers, src, ("hello.rs", flags, name), false)?;
    let unchanged = f.gone.is_empty() && f.new.is_empty();
    lines.extend(f.lines(name, "symbols that differ (nm)", "none", unchanged));
    let mut entry = f.json("symbols");
    entry["flags"] = json!(flags);
    report.insert(name.into(), entry);
    Ok(())
}

/// A no-autodiff cdylib: size and the dynamic export table.
fn cdylib_exports(
    chroot: &Chroot,
    compilers: &[Compiler; 2],
    src: &Path,
    lines: &mut Vec<Line>,
    report: &mut serde_json::Map<String, Value>,
) -> Result<()> {
    let build = ("cdylib.rs", &["--crate-type=cdylib", "-Copt-level=3"][..], "libbench_cdylib.so");
    let f = Footprint::measure(chroot, compilers, src, build, true)?;
    let no_new = f.new.is_empty();
    lines.extend(f.lines(
        "cdylib",
        "dynamic exports (nm -D --defined-only)",
        "no new export",
        no_new,
    ));
    report.insert("cdylib".into(), f.json("exports"));
    Ok(())
}

/// The dynamic symbols librustc_driver imports. With LLVM a shared library and the driver
/// linked `-z now` (Debian's and the official x86_64 Linux toolchains), the loader looks each one
/// up whenever any rustc starts, autodiff or not: a new one costs every rustc process about 1k
/// to 1.5k instructions, which the `rustc -vV` row shows in sum.
fn driver_imports(
    compilers: &[Compiler; 2],
    lines: &mut Vec<Line>,
    report: &mut serde_json::Map<String, Value>,
) -> Result<()> {
    let mut imports = Vec::new();
    for c in compilers {
        imports.push(symbols::imported(&driver_library(c)?)?);
    }
    let (gone, new) = symbols::differ(&imports[0], &imports[1]);
    let change = match (new.len(), gone.len()) {
        (0, 0) => "none".to_string(),
        (n, 0) => format!("+{n} new"),
        (0, g) => format!("-{g} gone"),
        (n, g) => format!("+{n} new, -{g} gone"),
    };
    lines.push(Line {
        what: "rustc: librustc_driver dynamic imports (nm -D --undefined-only)".into(),
        unpatched: imports[0].len().to_string(),
        patched: imports[1].len().to_string(),
        change,
        goal: "-".into(),
        met: None,
    });
    report.insert(
        "driver_imports".into(),
        json!({"unpatched": imports[0].len(), "patched": imports[1].len(),
               "only_patched": new, "only_unpatched": gone}),
    );
    Ok(())
}

/// The one `librustc_driver-*.so` next to `c`'s rustc (`stage1/lib`).
fn driver_library(c: &Compiler) -> Result<PathBuf> {
    let lib = c.rustc.parent().and_then(Path::parent).map(|p| p.join("lib"));
    let Some(lib) = lib else { bail!("{} has no parent directory", c.rustc.display()) };
    let entries = fs::read_dir(&lib)
        .with_context(|| format!("cannot list {} ({} stage 1 libraries)", lib.display(), c.name))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("cannot list {}", lib.display()))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("librustc_driver-") && name.ends_with(".so") {
            found.push(path);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => {
            bail!("no librustc_driver-*.so in {}: is the {} stage 1 built?", lib.display(), c.name)
        }
        n => bail!(
            "{n} librustc_driver-*.so in {}, and which one this rustc loads is unknown: \
             remove the stale ones",
            lib.display()
        ),
    }
}

/// A Rust staticlib linked into a C program that defines every marker itself.
fn c_link(
    chroot: &Chroot,
    compilers: &[Compiler; 2],
    src: &Path,
    lines: &mut Vec<Line>,
    report: &mut serde_json::Map<String, Value>,
) -> Result<()> {
    let mut results = Vec::new();
    for c in compilers {
        let lib = out_file(c, "libbench_static.a");
        let args = [
            "--crate-type=staticlib",
            "-Copt-level=3",
            "--print=native-static-libs",
            "staticlib.rs",
            "-o",
            &lib,
        ];
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = must(rustc(chroot, c, src, &args)?, &format!("{} rustc staticlib", c.name))?;
        let native = out
            .text
            .lines()
            .find_map(|l| l.split_once("native-static-libs: ").map(|(_, r)| r.trim().to_string()))
            .unwrap_or_default();
        let exe = out_file(c, "c-main");
        let script = format!(
            "cd {} && cc -O2 -fno-common main.c {} {native} -o {} 2>&1 && {}",
            shell_quote(&src.display().to_string()),
            shell_quote(&lib),
            shell_quote(&exe),
            shell_quote(&exe)
        );
        let run = chroot.sh(&script).quiet().step("bench").run_unchecked()?;
        let ok = run.success && run.text == prog::C_MAIN_EXPECTED;
        let shown = if ok {
            "links, runs".to_string()
        } else {
            let first =
                run.text.lines().find(|l| l.contains("multiple definition") || l.contains("error"));
            format!("FAILS: {}", first.unwrap_or(run.text.lines().next().unwrap_or("")).trim())
        };
        results.push((ok, shown, run.text));
    }
    lines.push(Line {
        what: "staticlib + C defining all 8 markers (-fno-common)".into(),
        unpatched: results[0].1.clone(),
        patched: results[1].1.clone(),
        change: "-".into(),
        goal: "links, runs".into(),
        met: Some(results[1].0),
    });
    report.insert(
        "c_link".into(),
        json!({"unpatched": {"ok": results[0].0, "output": results[0].2},
               "patched": {"ok": results[1].0, "output": results[1].2}}),
    );
    Ok(())
}

/// Compile the autodiff crate `runs` times with each compiler, alternating which goes first,
/// after one untimed warm-up each; check the program's output once.
fn compile_time(
    chroot: &Chroot,
    compilers: &[Compiler; 2],
    src: &Path,
    timed: &Timed,
    runs: usize,
    lines: &mut Vec<Line>,
    report: &mut serde_json::Map<String, Value>,
) -> Result<()> {
    let compile = |c: &Compiler| -> Result<Duration> {
        let mut args: Vec<String> = timed.flags.iter().map(|s| s.to_string()).collect();
        args.extend([timed.file.into(), "-o".into(), out_file(c, timed.name)]);
        let t = Instant::now();
        must(rustc(chroot, c, src, &args)?, &format!("{} rustc {}", c.name, timed.file))?;
        Ok(t.elapsed())
    };
    let mut outputs = Vec::new();
    let mut sizes = [0u64; 2];
    for (i, c) in compilers.iter().enumerate() {
        compile(c)?;
        let exe = out_file(c, timed.name);
        sizes[i] = file_size(&exe)?;
        let out = chroot.sh(&shell_quote(&exe)).quiet().step("bench").run_unchecked()?;
        if !out.success || out.text != timed.expected {
            bail!(
                "the {} compiler's {} program printed {:?}, expected {:?}",
                c.name,
                timed.name,
                out.text,
                timed.expected
            );
        }
        outputs.push(out.text);
    }
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..runs {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            println!(
                "bench: {} compile time, round {}/{runs}, {}",
                timed.name,
                round + 1,
                compilers[i].name
            );
            times[i].push(compile(&compilers[i])?.as_secs_f64());
        }
    }
    let stats = times.clone().map(Stats::of);
    let ratio = stats[1].median / stats[0].median;
    // The spread of the ratio: fastest patched over slowest unpatched, and the reverse.
    let (lo, hi) = (stats[1].min / stats[0].max, stats[1].max / stats[0].min);
    lines.push(Line {
        what: format!("{}: median (min-max)", timed.what),
        unpatched: stats[0].show(),
        patched: stats[1].show(),
        change: format!("x{ratio:.3} (spread {lo:.3}-{hi:.3})"),
        goal: timed.goal.map_or("report".into(), |g| format!("<= {g:.2}")),
        met: timed.goal.map(|g| ratio <= g),
    });
    lines.push(Line {
        what: format!("{} ({}): binary size", timed.name, timed.flags.join(" ")),
        unpatched: format!("{} B", sizes[0]),
        patched: format!("{} B", sizes[1]),
        change: fmt_delta(sizes[1] as i64 - sizes[0] as i64),
        goal: "report".into(),
        met: None,
    });
    let key = format!("{}_compile_time", timed.name.replace('-', "_"));
    report.insert(
        key,
        json!({"flags": timed.flags, "seconds": {"unpatched": times[0], "patched": times[1]},
               "median": {"unpatched": stats[0].median, "patched": stats[1].median},
               "ratio": ratio, "ratio_spread": [lo, hi], "goal": timed.goal,
               "size": {"unpatched": sizes[0], "patched": sizes[1]},
               "output": outputs[1]}),
    );
    Ok(())
}

/// A compilation whose instructions are counted.
struct Counted {
    name: &'static str,
    what: String,
    args: Vec<String>,
    /// Whether it writes an output file (then `-o` goes to the compiler's own directory).
    writes: bool,
    goal: Option<Goal>,
}

/// Count the instructions each compiler executes (valgrind's cachegrind, rustc only: the
/// linker is not counted): its startup alone (`rustc -vV`, which loads and relocates the
/// compiler and LLVM and compiles nothing), the autodiff crate and the hello-world builds.
/// Each is counted at layouts 0, 1, ... (see `cachegrind`) until the interval of the
/// difference of the means gets one verdict, or at `max_layouts`; the goal is judged on the
/// ratio of the means.
fn instructions(
    chroot: &Chroot,
    compilers: &[Compiler; 2],
    src: &Path,
    max_layouts: u32,
    lines: &mut Vec<Line>,
    report: &mut serde_json::Map<String, Value>,
) -> Result<()> {
    let version = chroot
        .sh(&format!("{} --version", cachegrind::VALGRIND))
        .quiet()
        .step("bench")
        .read()
        .context("cannot run valgrind in the chroot")?;
    println!(
        "bench: counting instructions with {version}, at up to {max_layouts} layouts per \
         compiler and build"
    );
    // The startup has no goal of its own: it is the part of every compilation that only
    // loading the compiler costs, and explains the hello-world row. Its counting stops by
    // the hello-world goal.
    let mut builds = vec![Counted {
        name: "startup",
        what: "rustc startup (`rustc -vV`, compiles nothing)".into(),
        args: vec!["-vV".into()],
        writes: false,
        goal: None,
    }];
    let compile = |flags: &[&str], file: &str| -> Vec<String> {
        flags.iter().map(|s| s.to_string()).chain([file.to_string()]).collect()
    };
    builds.push(Counted {
        name: "autodiff",
        what: "autodiff crate (O3, fat LTO)".into(),
        args: compile(&AUTODIFF_FLAGS, "autodiff.rs"),
        writes: true,
        goal: Some(AUTODIFF_IR_GOAL),
    });
    for (name, flags) in HELLO_BUILDS {
        builds.push(Counted {
            name,
            what: format!("{name} (no autodiff)"),
            args: compile(flags, "hello.rs"),
            writes: true,
            goal: Some(PLAIN_IR_GOAL),
        });
    }
    let mut entries = serde_json::Map::new();
    for Counted { name, what, args, writes, goal } in builds {
        let stop_goal = goal.unwrap_or(PLAIN_IR_GOAL);
        let mut samples = Samples { counts: [Vec::new(), Vec::new()] };
        for layout in 0..max_layouts {
            let order = if layout % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let c = &compilers[i];
                println!(
                    "bench: instructions of {name}, layout {}/{max_layouts}, {} (valgrind, slow)",
                    layout + 1,
                    c.name
                );
                let mut words = args.clone();
                if writes {
                    words.extend(["-o".into(), out_file(c, &format!("{name}-counted"))]);
                }
                let words = cachegrind::command(&c.rustc.display().to_string(), &words, layout);
                let what_ran =
                    format!("{} rustc ({name}) under valgrind at layout {layout}", c.name);
                let out = must(run_in(chroot, src, &words)?, &what_ran)?;
                samples.counts[i].push(cachegrind::parse_i_refs(&out.text).context(what_ran)?);
            }
            if samples.decided(stop_goal) {
                break;
            }
        }
        let layouts = samples.counts[0].len();
        let decided =
            if layouts > 1 && !samples.decided(stop_goal) { ", interval not decided" } else { "" };
        lines.push(Line {
            what: format!(
                "{what}: instructions (cachegrind, rustc only), {layouts} layout(s){decided}"
            ),
            unpatched: samples.cell(0),
            patched: samples.cell(1),
            change: samples.change()?,
            goal: goal.map_or_else(|| "-".to_string(), Goal::show),
            met: goal.map(|g| samples.met(g)),
        });
        let mut entry = samples.json(goal, stop_goal)?;
        entry["args"] = json!(args);
        entries.insert(name.into(), entry);
    }
    report.insert(
        "instructions".into(),
        json!({"tool": format!("{version} --tool=cachegrind --cache-sim=no, children not traced"),
               "layouts": {"max": max_layouts,
                           "how": "valgrind --aspace-minaddr (each build's `minaddr`)",
                           "statistic": "means over layouts; interval: diff +- Student t(0.975, \
                                         n0 + n1 - 2) standard errors"},
               "builds": entries}),
    );
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(mut v: Vec<f64>) -> Stats {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Stats { median, min: v[0], max: v[n - 1] }
    }
    fn show(&self) -> String {
        format!("{:.2}s ({:.2}-{:.2})", self.median, self.min, self.max)
    }
}

/// Render the lines as an aligned table, with a "met" column of yes / NO / -.
fn render(lines: &[Line]) -> String {
    let header = ["measurement", "unpatched", "patched", "change", "goal", "met"].map(String::from);
    let mut cells = vec![header];
    for l in lines {
        cells.push([
            l.what.clone(),
            l.unpatched.clone(),
            l.patched.clone(),
            l.change.clone(),
            l.goal.clone(),
            match l.met {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
        ]);
    }
    let widths: Vec<usize> =
        (0..6).map(|i| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (n, row) in cells.iter().enumerate() {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(&format!("| {} |\n", line.join(" | ")));
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_table() {
        let s = Stats::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Stats::of(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(fmt_names(&[], &[]), "none");
        let names: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
        assert_eq!(fmt_names(&[], &names), "new: s0 s1 s2 s3 (+2 more)");
        let t = render(&[Line {
            what: "x".into(),
            unpatched: "1".into(),
            patched: "2".into(),
            change: "+1".into(),
            goal: "+0".into(),
            met: Some(false),
        }]);
        let rows: Vec<&str> = t.lines().collect();
        assert_eq!(rows.len(), 3);
        assert!(rows[0].starts_with("| measurement | unpatched |"), "{t}");
        assert!(rows[1].starts_with("|-------------|-"), "{t}");
        assert!(rows[2].ends_with("| NO  |"), "{t}");
    }

    #[test]
    fn finds_the_one_driver_library() {
        let tmp = tempfile::tempdir().unwrap();
        let stage1 = tmp.path();
        fs::create_dir_all(stage1.join("bin")).unwrap();
        fs::create_dir_all(stage1.join("lib")).unwrap();
        let c = Compiler { name: "patched", rustc: stage1.join("bin/rustc"), out: stage1.into() };
        let err = driver_library(&c).unwrap_err().to_string();
        assert!(err.contains("no librustc_driver-*.so") && err.contains("patched"), "{err}");
        fs::write(stage1.join("lib/librustc_driver-0123.so"), "").unwrap();
        fs::write(stage1.join("lib/libstd-0123.so"), "").unwrap();
        assert_eq!(driver_library(&c).unwrap(), stage1.join("lib/librustc_driver-0123.so"));
        fs::write(stage1.join("lib/librustc_driver-4567.so"), "").unwrap();
        let err = driver_library(&c).unwrap_err().to_string();
        assert!(err.contains("2 librustc_driver-*.so"), "{err}");
    }
}
