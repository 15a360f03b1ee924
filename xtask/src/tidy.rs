//! `check --tidy`: what rust-lang CI runs before any test, tidy with its extra checks
//! (`x test tidy --extra-checks=py,cpp,js,spellcheck`, the tidy image's Dockerfile under
//! src/ci/docker/host-x86_64/tidy/), on `base` and on the stack, in the check work tree. The
//! result is what the stack adds: every finding line of the stack's runs that the base's runs do
//! not print.
//!
//! Debian's tarball is not a git checkout, and this machine reaches package registries only, so
//! the runs are arranged as follows; `OFFLINE` lists each arrangement and is printed with the
//! result, so nothing is skipped silently.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::apply;
use crate::cmd::shell_quote;
use crate::env::Chroot;
use crate::paths::*;
use crate::series::Patch;

/// What cannot run here as it does on rust-lang CI, and what runs instead.
pub const OFFLINE: &[(&str, &str)] = &[
    (
        "fmt (rustfmt)",
        "Debian's tarball has no rustfmt.toml, so tidy skips formatting (\"This may happen in \
         distributed tarballs\"); `check` runs rustfmt with rustc's settings on the Rust files \
         the stack adds or changes instead",
    ),
    (
        "deps of src/tools/rustc-perf",
        "its Cargo.lock has a git dependency (rust-lang/team), which `cargo metadata` cannot \
         fetch; the directory is hidden during the runs, so tidy skips it as a submodule that is \
         not checked out, as in any git checkout without submodules",
    ),
    (
        "CI history",
        "the tarball's history has no bors merge commit, so tidy finds no base commit: it checks \
         every file instead of the modified ones, and skips its diff-based checks of new error \
         codes and of rustdoc-json-types (the stack adds no error code and does not touch \
         rustdoc-json-types)",
    ),
    (
        "spellcheck settings",
        "the tarball has no typos.toml, without which tidy's spellcheck stops (\"could not read \
         config\"); `check` runs the typos that tidy builds, with its default settings, on the \
         files the stack adds or changes, in the base and in the stack, and compares the words \
         it flags per file (run `typos-files`)",
    ),
    (
        "js:lint, js:typecheck",
        "they run `yarn install --frozen` on the tree's yarn.lock first, and the npm registry \
         this machine reaches has no version of browser-ui-test matching ^0.23.3 (\"Couldn't find \
         any versions\"), so both stop before eslint and tsc run, on the base and on the stack \
         alike; the stack changes no JavaScript or TypeScript file",
    ),
    (
        "cpp:fmt style",
        "the tarball has no .clang-format; the runs write rustc's (`BasedOnStyle: LLVM`) into the \
         work tree and remove it afterwards",
    ),
];

/// The runs: tidy's own checks, then each extra check alone. Tidy stops its extra checks at the
/// first one that fails, and on Debian's `vendor/` the base already fails `py:lint` and
/// `py:fmt`; run together, the later checks would never run.
const RUNS: &[(&str, Option<&str>)] = &[
    ("tidy", None),
    ("py-lint", Some("py:lint")),
    ("py-fmt", Some("py:fmt")),
    ("cpp-fmt", Some("cpp:fmt")),
    ("js-lint", Some("js:lint")),
    ("js-typecheck", Some("js:typecheck")),
    ("spellcheck", Some("spellcheck")),
];

/// The directory tidy's `deps` check cannot read offline (see `OFFLINE`).
const HIDDEN: &str = "src/tools/rustc-perf";

/// One side's runs: name -> (exit status ok, finding lines).
type Outcome = BTreeMap<&'static str, (bool, Vec<String>)>;

/// rustc's rustfmt settings (rustfmt.toml upstream, which Debian's tarball leaves out), as
/// rustfmt's `--config`; `skip_children` keeps rustfmt to the files named (a changed
/// library/core/src/lib.rs would otherwise take in all of core, stdarch and portable-simd).
const RUSTFMT_CONFIG: &str = "style_edition=2024,use_small_heuristics=Max,merge_derives=false,\
                              group_imports=StdExternalCrate,imports_granularity=Module,\
                              use_field_init_shorthand=true,skip_children=true";

/// Runs tidy on `base` and on `patches`, prints the findings the stack adds and fails if there
/// are any.
pub fn run(paths: &Paths, patches: &[Patch]) -> Result<()> {
    let yarn = install_yarn(paths)?;
    let files = crate::series::touched_files(patches);
    let base = side(paths, &[], &files, &yarn, "base")?;
    // The check tree holds the base now, then the stack.
    let base_fmt = rustfmt(paths, &files, "base")?;
    let stack = side(paths, patches, &files, &yarn, "stack")?;
    let stack_fmt = rustfmt(paths, &files, "stack")?;
    let unformatted = unformatted_by_stack(&base_fmt, &stack_fmt);
    for file in &unformatted {
        println!("tidy:   rustfmt would change {file} more than it would change the base's");
    }
    let unformatted = unformatted.len();
    println!("tidy: what cannot run as on rust-lang CI, and what runs instead:");
    for (what, why) in OFFLINE {
        println!("  - {what}: {why}");
    }
    let mut added = 0;
    let mut cells = vec![vec![
        "run".to_string(),
        "failed on the base".to_string(),
        "failed on the stack".to_string(),
        "findings the stack adds".to_string(),
    ]];
    let mut added_lines = Vec::new();
    for (name, (stack_ok, stack_lines)) in &stack {
        let Some((base_ok, base_lines)) = base.get(name) else {
            bail!("tidy: run {name} ran on the stack but not on the base");
        };
        let new = new_lines(base_lines, stack_lines);
        cells.push(vec![
            name.to_string(),
            failed_checks(*base_ok, base_lines),
            failed_checks(*stack_ok, stack_lines),
            new.len().to_string(),
        ]);
        added_lines.extend(new.iter().map(|l| format!("{name}: {l}")));
        added += new.len();
    }
    print!("{}", crate::summary::table(&cells));
    for line in &added_lines {
        println!("tidy: new: {line}");
    }
    if added > 0 || unformatted > 0 {
        bail!(
            "tidy: the stack adds {added} finding(s) that the base does not have, and rustfmt \
             would change {unformatted} of its files (above)"
        );
    }
    println!("tidy: the stack adds no finding to the base's");
    Ok(())
}

/// The files whose rustfmt hunks on the stack outnumber those on the base (a file the stack
/// adds has none on the base): rustup's nightly rustfmt formats some of the base's lines
/// otherwise than rustc's pinned one (`use {rustc_ast as ast, rustc_hir as hir};`), which is no
/// finding of the stack's.
fn unformatted_by_stack(
    base: &BTreeMap<String, usize>,
    stack: &BTreeMap<String, usize>,
) -> Vec<String> {
    stack
        .iter()
        .filter(|&(file, &hunks)| hunks > base.get(file).copied().unwrap_or(0))
        .map(|(file, _)| file.clone())
        .collect()
}

/// Checks with rustfmt and rustc's settings (`RUSTFMT_CONFIG`) the Rust files of `files` (those
/// the stack adds or changes) in the check tree, but ui tests, which rustc does not format;
/// returns how many hunks rustfmt would change in each. The unstable settings need a nightly
/// rustfmt: rustup's, as bootstrap's pinned one cannot be downloaded here.
fn rustfmt(paths: &Paths, files: &[String], label: &str) -> Result<BTreeMap<String, usize>> {
    let Some(rustfmt) = nightly_rustfmt() else {
        println!(
            "tidy: rustfmt: SKIPPED, no rustup nightly toolchain with rustfmt in \
             ~/.rustup/toolchains (bootstrap's pinned rustfmt cannot be downloaded here)"
        );
        return Ok(BTreeMap::new());
    };
    let tree = paths.tree(Slot::Check);
    let files: Vec<&String> = files
        .iter()
        .filter(|f| f.ends_with(".rs") && !f.starts_with("tests/ui/"))
        .filter(|f| tree.join(f).exists())
        .collect();
    println!(
        "tidy: rustfmt --check ({}) on the {label}'s {} file(s) of the stack's",
        rustfmt.display(),
        files.len()
    );
    let out = crate::cmd::Cmd::new(&rustfmt)
        .args(["--check", "--edition", "2024", "--config", RUSTFMT_CONFIG])
        .args(&files)
        .dir(&tree)
        .step("tidy-rustfmt")
        .quiet()
        .run_unchecked()?;
    // `Diff in /tree/compiler/x.rs:12:` (or `... at line 12:`), once per hunk.
    let mut hunks = BTreeMap::new();
    for file in out
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("Diff in "))
        .map(|l| l.find(".rs").map_or(l, |end| &l[..end + 3]))
    {
        *hunks.entry(file.to_string()).or_insert(0) += 1;
    }
    if !out.success && hunks.is_empty() {
        bail!("rustfmt failed on the {label}'s files; see the log");
    }
    Ok(hunks)
}

/// rustup's newest nightly rustfmt, if any.
fn nightly_rustfmt() -> Option<PathBuf> {
    let home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")))?;
    let mut found: Vec<PathBuf> = fs::read_dir(home.join("toolchains"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("nightly")))
        .map(|p| p.join("bin/rustfmt"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

/// Applies `patches` in the check tree and runs every run of `RUNS` there, then typos on
/// `files` (those of them that exist).
fn side(
    paths: &Paths,
    patches: &[Patch],
    files: &[String],
    yarn: &Path,
    label: &str,
) -> Result<Outcome> {
    apply::apply_patches(paths, Slot::Check, patches)?;
    let tree = paths.tree(Slot::Check);
    let _arranged = Arranged::new(&tree, &paths.work())?;
    // Bootstrap wants a rustfmt before it runs tidy, bootstrap's pinned nightly one unless
    // `build.rustfmt` names another. Tidy's formatting check does not run here (`OFFLINE`), so
    // the stage0 toolchain's serves.
    let rustfmt = crate::env::stage0_sysroot()?.join("bin/rustfmt");
    let chroot = Chroot::enter(paths)?;
    let result = (|| {
        let mut outcome = Outcome::new();
        for &(name, extra) in RUNS {
            println!("tidy: {label}: {name}");
            let mut args = vec![
                "test".to_string(),
                "tidy".to_string(),
                "--set".to_string(),
                format!("build.yarn={}", yarn.display()),
                "--set".to_string(),
                format!("build.rustfmt={}", rustfmt.display()),
            ];
            if let Some(extra) = extra {
                args.push(format!("--extra-checks={extra}"));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let log = format!("tidy-{label}-{name}");
            let out = chroot.x(Slot::Check, &args, &log).quiet().run_unchecked()?;
            let prefix = format!("{}/", tree.display());
            outcome.insert(name, (out.success, findings(&out.text, &prefix)));
        }
        let typos = paths.build_dir(Slot::Check).join("misc-tools/bin/typos");
        let present: Vec<String> =
            files.iter().filter(|f| tree.join(f).is_file()).map(|f| shell_quote(f)).collect();
        if typos.exists() && !present.is_empty() {
            let out = chroot
                .sh(&format!(
                    "cd {} && {} --format brief {}",
                    shell_quote(&tree.display().to_string()),
                    shell_quote(&typos.display().to_string()),
                    present.join(" ")
                ))
                .step(&format!("tidy-{label}-typos-files"))
                .quiet()
                .run_unchecked()?;
            outcome.insert("typos-files", (out.success, typos_words(&out.text)));
        }
        Ok(outcome)
    })();
    chroot.leave()?;
    result
}

/// The lines of a tidy run's output that report something about a file or a check, with the
/// work tree's path removed: tidy's own (`tidy [style (tests)]: ...`), and the tools' (ruff,
/// clang-format, eslint, tsc, typos), which name a file and a line or say `error`/`warning`.
/// Build progress, downloads and timings are left out, so that two runs can be compared.
pub fn findings(output: &str, tree_prefix: &str) -> Vec<String> {
    const NOISE: &[&str] = &[
        "Build completed",
        "Command has failed",
        "Command `",
        "Created at:",
        "Executed at:",
        "Compiling ",
        "Downloaded ",
        "Downloading ",
        "Finished ",
        "Collecting ",
        "Installing ",
        "Installed ",
        "Successfully ",
        "Requirement ",
        "Attempting ",
        "Uninstalling ",
        "Found existing ",
        "Updating ",
        "Locking ",
        "Adding ",
    ];
    let names_a_place = |l: &str| {
        let bytes = l.as_bytes();
        l.contains(".rs:")
            || l.contains(".py:")
            || l.contains(".js:")
            || l.contains(".ts")
            || l.contains(".cpp:")
            || l.contains(".h:")
            || l.contains("-->")
            || bytes.windows(2).any(|w| w[0] == b':' && w[1].is_ascii_digit())
    };
    output
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !NOISE.iter().any(|n| l.trim_start().starts_with(n)))
        // pip's progress bars
        .filter(|l| !l.contains('━'))
        .filter(|l| {
            l.starts_with("tidy [")
                || l.starts_with("tidy: ")
                || l.contains("error")
                || l.contains("warning")
                || l.contains("Would reformat")
                || names_a_place(l)
        })
        .map(|l| l.replace(tree_prefix, ""))
        .collect()
}

/// typos' `--format brief` lines (`file:line:col: error: `teh` should be `the``) without the
/// line and column, so that a word flagged in the base is not new in the stack because lines
/// moved.
pub fn typos_words(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| {
            let (file, rest) = l.split_once(':')?;
            let (_line, rest) = rest.split_once(':')?;
            let (_col, word) = rest.split_once(':')?;
            Some(format!("{file}:{word}"))
        })
        .collect()
}

/// What failed in a run, for the report: the checks tidy names in its last line ("The following
/// checks failed: deps, extra_checks"), "none" if it passed.
pub fn failed_checks(ok: bool, lines: &[String]) -> String {
    if ok {
        return "none".to_string();
    }
    lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("tidy: The following checks failed: "))
        .map_or_else(|| "failed (see the log)".to_string(), |c| c.trim().to_string())
}

/// The lines of `stack` that `base` lacks, counted with multiplicity (a finding the base has
/// once and the stack twice is one new finding).
pub fn new_lines(base: &[String], stack: &[String]) -> Vec<String> {
    let mut left: BTreeMap<&str, usize> = BTreeMap::new();
    for l in base {
        *left.entry(l.as_str()).or_default() += 1;
    }
    let mut new = Vec::new();
    for l in stack {
        match left.get_mut(l.as_str()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => new.push(l.clone()),
        }
    }
    new
}

/// Classic yarn, which tidy's js checks run (`yarn install --frozen`), at the version rust-lang
/// CI's tidy image installs (YARN_VERSION in src/ci/docker/scripts/nodejs.sh), installed with
/// Debian's npm from the npm registry into the cache. Debian's own `yarnpkg` is yarn 4, which
/// rejects `--frozen`.
fn install_yarn(paths: &Paths) -> Result<PathBuf> {
    let script = paths.tree(Slot::Check).join("src/ci/docker/scripts/nodejs.sh");
    let text = fs::read_to_string(&script).with_context(|| {
        format!("cannot read {}; run `cargo xtask check` once", script.display())
    })?;
    let version = yarn_version(&text)
        .with_context(|| format!("no YARN_VERSION= line in {}", script.display()))?;
    // Under the work directory, which the chroot binds at the same path.
    let dir = paths.work().join(format!("node-tools/yarn-{version}"));
    let yarn = dir.join("node_modules/.bin/yarn");
    if yarn.exists() {
        return Ok(yarn);
    }
    println!("tidy: installing yarn {version} with npm into {}", dir.display());
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let chroot = Chroot::enter(paths)?;
    let result = chroot
        .sh(&format!(
            "npm install --no-audit --no-fund --prefix {} yarn@{version}",
            shell_quote(&dir.display().to_string())
        ))
        .step("tidy-yarn-install")
        .run()
        .context("cannot install yarn with npm in the chroot (is `npm` installed? run `cargo xtask env`)");
    chroot.leave()?;
    result?;
    Ok(yarn)
}

/// `1.22.22` from a `YARN_VERSION=1.22.22` line.
pub fn yarn_version(script: &str) -> Option<&str> {
    script
        .lines()
        .find_map(|l| l.trim().strip_prefix("YARN_VERSION="))
        .map(|v| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// The work tree arranged for tidy (see `OFFLINE`): `HIDDEN` moved aside and left as an empty
/// directory, and rustc's `.clang-format` written. Dropping it (also on error) restores the tree.
struct Arranged {
    hidden: PathBuf,
    aside: PathBuf,
    clang_format: Option<PathBuf>,
}

impl Arranged {
    fn new(tree: &Path, work: &Path) -> Result<Arranged> {
        let hidden = tree.join(HIDDEN);
        let aside = work.join("tidy-hidden-rustc-perf");
        if aside.exists() {
            bail!(
                "{} exists: an earlier tidy run was interrupted. Move it back to {} (remove the \
                 empty directory there first), then run again",
                aside.display(),
                hidden.display()
            );
        }
        if hidden.exists() {
            fs::rename(&hidden, &aside).with_context(|| {
                format!("cannot move {} to {}", hidden.display(), aside.display())
            })?;
        }
        fs::create_dir_all(&hidden)
            .with_context(|| format!("cannot create {}", hidden.display()))?;
        let path = tree.join(".clang-format");
        let clang_format = if path.exists() {
            None
        } else {
            fs::write(&path, "BasedOnStyle: LLVM\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
            Some(path)
        };
        Ok(Arranged { hidden, aside, clang_format })
    }
}

impl Drop for Arranged {
    fn drop(&mut self) {
        if let Some(path) = &self.clang_format {
            let _ = fs::remove_file(path);
        }
        if self.aside.exists() {
            let restored =
                fs::remove_dir(&self.hidden).and_then(|()| fs::rename(&self.aside, &self.hidden));
            if let Err(e) = restored {
                eprintln!(
                    "tidy: cannot move {} back to {}: {e}; do it by hand",
                    self.aside.display(),
                    self.hidden.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustfmt_findings_of_the_base_are_not_the_stacks() {
        let map = |v: &[(&str, usize)]| -> BTreeMap<String, usize> {
            v.iter().map(|&(f, n)| (f.to_string(), n)).collect()
        };
        let base = map(&[("/t/a.rs", 1), ("/t/b.rs", 2)]);
        let stack = map(&[("/t/a.rs", 1), ("/t/b.rs", 3), ("/t/new.rs", 1)]);
        assert_eq!(unformatted_by_stack(&base, &stack), ["/t/b.rs", "/t/new.rs"]);
        assert!(unformatted_by_stack(&base, &map(&[("/t/a.rs", 1)])).is_empty());
    }

    #[test]
    fn keeps_findings_and_drops_progress() {
        let out = "   Compiling tidy v0.1.0 (/t/src/tools/tidy)\n\
                   Finished `release` profile [optimized] target(s) in 2m 35s\n\
                   tidy [style (tests)]: /t/tests/a.rs:6: line longer than 100 chars\n\
                   tidy: The following checks failed: style (tests)\n\
                   vendor/x/u.py:23:1: E401 [*] Multiple imports on one line\n\
                   Would reformat: vendor/x/u.py\n\
                   Build completed unsuccessfully in 0:00:32\n\
                   creating virtual environment at '/t/build/venv'\n";
        assert_eq!(
            findings(out, "/t/"),
            [
                "tidy [style (tests)]: tests/a.rs:6: line longer than 100 chars",
                "tidy: The following checks failed: style (tests)",
                "vendor/x/u.py:23:1: E401 [*] Multiple imports on one line",
                "Would reformat: vendor/x/u.py",
            ]
        );
    }

    #[test]
    fn new_lines_count_multiplicity() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(new_lines(&s(&["a", "b"]), &s(&["a", "b", "b", "c"])), ["b", "c"]);
        assert!(new_lines(&s(&["a", "a"]), &s(&["a"])).is_empty());
    }

    #[test]
    fn typos_words_drop_positions() {
        let out = "compiler/a.rs:8:62: error: `seh` should be `she`\nnot a finding\n";
        assert_eq!(typos_words(out), ["compiler/a.rs: error: `seh` should be `she`"]);
    }

    #[test]
    fn names_the_failed_checks() {
        let lines = vec![
            "tidy [deps]: FAIL".to_string(),
            "tidy: The following checks failed: deps, gcc_submodule".to_string(),
        ];
        assert_eq!(failed_checks(false, &lines), "deps, gcc_submodule");
        assert_eq!(failed_checks(true, &lines), "none");
        assert_eq!(failed_checks(false, &[]), "failed (see the log)");
    }

    #[test]
    fn reads_the_yarn_pin() {
        assert_eq!(
            yarn_version("set -ex\nNODEJS_VERSION=v20\nYARN_VERSION=1.22.22\n"),
            Some("1.22.22")
        );
        assert_eq!(yarn_version("YARN_VERSION=$(curl x)"), None);
        assert_eq!(yarn_version("nothing"), None);
    }
}
