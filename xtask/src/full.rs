//! `full`: the complete tier. Validate and install a prebuilt libEnzyme for LLVM 22, write
//! the untracked CMake shim that lets bootstrap "build" Enzyme by installing it, apply the
//! stack, build the stage 1 library and run the autodiff suites (`--extended`: and the extended
//! check, see extended.rs), then print a table.
//! Test failures are reported, not fatal (the base has known failures), unless a test named
//! with `--expect-pass` did not pass.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cmd::{self, Cmd, require_root, write_atomic};
use crate::compiletest::{self, Counts, Outcome};
use crate::env::Chroot;
use crate::paths::*;
use crate::summary::{self, Row, step};
use crate::{apply, stack};

/// The autodiff suites, in the order they run.
pub const SUITES: [&str; 3] =
    ["tests/run-make/autodiff", "tests/codegen-llvm/autodiff", "tests/ui/autodiff"];

#[derive(clap::Args)]
pub struct Args {
    /// Prebuilt Enzyme built against LLVM 22; it is installed as libEnzyme-22.so
    #[arg(long, value_name = "PATH")]
    pub enzyme_lib: PathBuf,
    /// Build the work tree as it is instead of re-applying the series
    #[arg(long)]
    pub no_apply: bool,
    /// Run only this suite (repeatable): tests/{run-make,codegen-llvm,ui}/autodiff, or run-make,
    /// codegen-llvm, ui (default: all three)
    #[arg(long = "suite", value_name = "SUITE")]
    pub suites: Vec<String>,
    /// Also run the extended check: the exhaustive matrices of xtask/extended, laid out next
    /// to the tests they extend
    #[arg(long)]
    pub extended: bool,
    /// Fail unless each named test passed (a run-make dir name, a file name or a path)
    #[arg(long, value_name = "NAME", num_args = 1..)]
    pub expect_pass: Vec<String>,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    let suites = select_suites(&args.suites)?;
    require_root("cargo xtask full")?;
    crate::env::verify(paths)?;
    prepare_enzyme(paths, &args.enzyme_lib)?;
    let mut rows = Vec::new();
    let result = run_steps(paths, args, &suites, &mut rows);
    summary::print(&rows);
    let outcomes = result?;
    let missed: Vec<String> = args
        .expect_pass
        .iter()
        .filter_map(|name| match compiletest::lookup(&outcomes, name) {
            Some(Outcome::Passed) => None,
            Some(o) => Some(format!("{name}: {o}")),
            None => Some(format!("{name}: did not run")),
        })
        .collect();
    if !missed.is_empty() {
        bail!("tests named with --expect-pass did not pass:\n  {}", missed.join("\n  "));
    }
    Ok(())
}

fn run_steps(
    paths: &Paths,
    args: &Args,
    suites: &[&str],
    rows: &mut Vec<Row>,
) -> Result<Vec<(String, Outcome)>> {
    if !args.no_apply {
        let patches = stack::flatten(&stack::load(&paths.patches)?);
        step(rows, "apply", || apply::apply_patches(paths, Slot::Series, &patches))?;
    }
    write_shim(paths, Slot::Series)?;
    crate::extended::clear(&paths.tree(Slot::Series))?;
    let chroot = Chroot::enter(paths)?;
    step(rows, "build-stage1", || {
        chroot.x(Slot::Series, &["build", "--stage", "1", "library"], "build-stage1").run()
    })?;
    let mut outcomes = Vec::new();
    for suite in suites {
        let name = format!("test-{}", suite.trim_start_matches("tests/").replace('/', "-"));
        outcomes.extend(run_tests(&chroot, Slot::Series, &[suite.to_string()], &name, rows)?);
    }
    if args.extended {
        let tests =
            crate::extended::lay_out(&crate::extended::source(), &paths.tree(Slot::Series))?;
        outcomes.extend(run_tests(&chroot, Slot::Series, &tests, "test-extended", rows)?);
    }
    chroot.leave()?;
    Ok(outcomes)
}

/// Resolve `--suite` values; none means all.
fn select_suites(wanted: &[String]) -> Result<Vec<&'static str>> {
    if wanted.is_empty() {
        return Ok(SUITES.to_vec());
    }
    wanted
        .iter()
        .map(|w| {
            let w = w.trim_end_matches('/');
            SUITES
                .iter()
                .find(|s| **s == w || **s == format!("tests/{w}/autodiff"))
                .copied()
                .with_context(|| format!("unknown suite {w:?}; choose from {}", SUITES.join(", ")))
        })
        .collect()
}

/// `x.py test --stage 1 TARGETS --no-fail-fast`, with per-test lines enabled so that single
/// tests can be looked up; adds a row named `step` to `rows`. Failing tests are a result,
/// failing to build is an error.
pub fn run_tests(
    chroot: &Chroot,
    slot: Slot,
    targets: &[String],
    step: &str,
    rows: &mut Vec<Row>,
) -> Result<Vec<(String, Outcome)>> {
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    // Without it, compiletest skips a test that passed before with the same inputs ("ignored,
    // up-to-date"): `compare` would then judge nothing in its second round.
    let out = x_test(chroot, slot, &targets, &["--force-rerun"], step, rows)?;
    Ok(compiletest::outcomes(&out.text))
}

/// `run_tests` with `extra` flags for x.py, returning the whole output (for suites whose
/// per-test lines are not compiletest's).
pub fn x_test(
    chroot: &Chroot,
    slot: Slot,
    targets: &[&str],
    extra: &[&str],
    step: &str,
    rows: &mut Vec<Row>,
) -> Result<cmd::Output> {
    let mut words = vec!["test", "--stage", "1"];
    words.extend(targets);
    words.extend(["--no-fail-fast", "--set", "rust.verbose-tests=true"]);
    words.extend(extra);
    let out = chroot.x(slot, &words, step).run_unchecked()?;
    let counts = compiletest::summary(&out.text);
    let build_failed = counts.is_none() && !out.success;
    let failed = !out.success || counts.is_some_and(|c: Counts| c.failed > 0);
    rows.push(Row {
        step: step.to_string(),
        result: if build_failed {
            "BUILD FAILED"
        } else if failed {
            "FAILED"
        } else {
            "ok"
        }
        .into(),
        counts,
        duration: out.elapsed,
        log: out.log.clone(),
    });
    if build_failed {
        let log = out.log.map(|l| format!("; see {}", l.display())).unwrap_or_default();
        bail!("`x.py test {}` failed before running any test{log}", targets.join(" "));
    }
    Ok(out)
}

/// Validate `lib`, copy it to CACHE/work/enzyme-lib/libEnzyme-22.so, and force bootstrap to
/// reinstall it when it changed.
pub fn prepare_enzyme(paths: &Paths, lib: &Path) -> Result<()> {
    validate_enzyme_lib(lib)?;
    let dest = paths.enzyme_lib();
    let new = cmd::sha256_file(lib)?;
    if dest.exists() && cmd::sha256_file(&dest)? == new {
        println!("full: {} is up to date", dest.display());
        return Ok(());
    }
    let data = fs::read(lib).with_context(|| format!("cannot read {}", lib.display()))?;
    write_atomic(&dest, &data)?;
    for slot in [Slot::Series, Slot::Unpatched] {
        let installed = paths.enzyme_build(slot);
        if installed.exists() {
            fs::remove_dir_all(&installed)
                .with_context(|| format!("cannot delete {}", installed.display()))?;
        }
    }
    println!("full: installed {} (sha256 {new}) as {}", lib.display(), dest.display());
    Ok(())
}

/// The Enzyme library must be an ELF shared object for LLVM 22.
pub fn validate_enzyme_lib(lib: &Path) -> Result<()> {
    let meta = fs::metadata(lib)
        .with_context(|| format!("--enzyme-lib {}: no such file", lib.display()))?;
    if !meta.is_file() {
        bail!("--enzyme-lib {}: not a regular file", lib.display());
    }
    let name = lib.file_name().unwrap_or_default().to_string_lossy();
    if let Some(major) = name_majors(&name).into_iter().find(|m| *m != LLVM_MAJOR) {
        bail!(
            "--enzyme-lib {name}: the name says LLVM {major}, but this rustc uses LLVM {LLVM_MAJOR}; pass libEnzyme-{LLVM_MAJOR}.so"
        );
    }
    let mut head = [0u8; 18];
    let n = fs::File::open(lib)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("cannot read {}", lib.display()))?;
    if n < head.len() || &head[..4] != b"\x7fELF" {
        bail!(
            "--enzyme-lib {}: not an ELF file (a text file or a linker script?); pass the built libEnzyme-{LLVM_MAJOR}.so",
            lib.display()
        );
    }
    if u16::from_le_bytes([head[16], head[17]]) != 3 {
        bail!("--enzyme-lib {}: an ELF file but not a shared library (ET_DYN)", lib.display());
    }
    let dynamic = Cmd::new("readelf").args(["-d", "--dyn-syms", "-W"]).arg(lib).read()?;
    if !defines_symbol(&dynamic, ENZYME_ENTRY) {
        bail!(
            "--enzyme-lib {}: does not export {ENZYME_ENTRY}; is it an Enzyme build?",
            lib.display()
        );
    }
    for (needed, major) in needed_llvm(&dynamic) {
        if major != Some(LLVM_MAJOR) {
            bail!(
                "--enzyme-lib {}: linked against {needed}, but this rustc uses LLVM {LLVM_MAJOR}",
                lib.display()
            );
        }
    }
    Ok(())
}

/// A function rustc's autodiff looks up in libEnzyme; its absence means "not Enzyme".
const ENZYME_ENTRY: &str = "EnzymeCreatePrimalAndGradient";

/// Whether `readelf --dyn-syms -W` output has a defined (not `UND`) symbol called `name`.
fn defines_symbol(readelf: &str, name: &str) -> bool {
    readelf.lines().any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.len() >= 8 && cols[7] == name && cols[6] != "UND"
    })
}

/// Numbers in `-NN.` positions of a file name (`libEnzyme-19.so` -> 19).
pub fn name_majors(name: &str) -> Vec<u32> {
    name.split('-')
        .skip(1)
        .filter_map(|part| part.split_once('.'))
        .filter_map(|(n, _)| n.parse().ok())
        .collect()
}

/// NEEDED entries of `readelf -d` output that name libLLVM, with their major version.
fn needed_llvm(readelf: &str) -> Vec<(String, Option<u32>)> {
    readelf
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split_once('[').and_then(|(_, r)| r.split_once(']')).map(|(n, _)| n))
        .filter(|n| n.starts_with("libLLVM"))
        .map(|n| {
            let digits: String = n["libLLVM".len()..]
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            (n.to_string(), digits.parse().ok())
        })
        .collect()
}

/// The untracked CMakeLists.txt that bootstrap's Enzyme step builds: it only installs our
/// prebuilt library where bootstrap expects its own build output.
pub fn write_shim(paths: &Paths, slot: Slot) -> Result<()> {
    let tree = paths.tree(slot);
    if !tree.join(".git").exists() {
        bail!("no work tree at {}; run `cargo xtask apply` (or drop --no-apply)", tree.display());
    }
    let text = format!(
        "# Written by the harness, never committed: installs a prebuilt libEnzyme so that\n\
         # bootstrap's Enzyme step finds it where it expects its own build output.\n\
         cmake_minimum_required(VERSION 3.20)\nproject(EnzymeShim NONE)\ninstall(FILES \"{}\" DESTINATION lib)\n",
        paths.enzyme_lib().display()
    );
    write_atomic(&paths.enzyme_shim(slot), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_enzyme_libs() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("libEnzyme-22.so");
        assert!(validate_enzyme_lib(&missing).unwrap_err().to_string().contains("no such file"));
        assert!(
            validate_enzyme_lib(tmp.path()).unwrap_err().to_string().contains("not a regular file")
        );
        fs::write(&missing, "INPUT(libEnzyme.so)\n").unwrap();
        assert!(validate_enzyme_lib(&missing).unwrap_err().to_string().contains("not an ELF file"));
        let old = tmp.path().join("libEnzyme-19.so");
        fs::write(&old, b"\x7fELF").unwrap();
        assert!(validate_enzyme_lib(&old).unwrap_err().to_string().contains("LLVM 19"));
    }

    #[test]
    fn reads_llvm_majors() {
        assert_eq!(name_majors("libEnzyme-22.so"), [22]);
        assert_eq!(name_majors("LLVMEnzyme-19.so"), [19]);
        assert!(name_majors("libEnzyme.so").is_empty());
        let readelf = " 0x1 (NEEDED)  Shared library: [libLLVM.so.22.1]\n 0x1 (NEEDED)  Shared library: [libc.so.6]\n\
                       0x1 (NEEDED)  Shared library: [libLLVM-19.so]\n 0xe (SONAME)  Library soname: [libEnzyme-22.so]\n";
        let syms = "  1896: 000000000011f580  1493 FUNC    GLOBAL DEFAULT   12 EnzymeCreatePrimalAndGradient\n\
                       12: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND CreateTypeAnalysis\n";
        assert!(defines_symbol(syms, ENZYME_ENTRY));
        assert!(!defines_symbol(syms, "CreateTypeAnalysis"), "undefined symbols do not count");
        assert_eq!(
            needed_llvm(readelf),
            [("libLLVM.so.22.1".to_string(), Some(22)), ("libLLVM-19.so".to_string(), Some(19))]
        );
    }

    #[test]
    fn suite_selection() {
        assert_eq!(select_suites(&[]).unwrap().len(), 3);
        assert_eq!(
            select_suites(&["ui".into(), "tests/run-make/autodiff/".into()]).unwrap(),
            [SUITES[2], SUITES[0]]
        );
        assert!(select_suites(&["mir-opt".into()]).is_err());
    }
}
