//! `check`: the fast tier. Lint the stack of PRs, prove it applies to pristine `base` PR after
//! PR, then, for every commit of the stack in turn (bisectability), apply the stack up to it and
//! `x.py check` library/core (stage 0) and rustc_codegen_llvm, which builds rustc_llvm's C++, in
//! the chroot; `--tidy` adds tidy with rust-lang CI's extra checks on the base and on the whole
//! stack (tidy.rs). Needs no Enzyme library.

use std::path::Path;

use anyhow::{Context, Result};

use crate::env::Chroot;
use crate::paths::*;
use crate::summary::{self, Row, step};
use crate::{apply, git, series, stack};

/// Compiles (syntax and types only, `-fsyntax-only`) every C++ file of rustc_llvm's
/// llvm-wrapper in `tree` against LLVM `major`'s headers, with its `llvm-config --cxxflags`.
/// `x check` compiles them against LLVM 22 only; this covers the `LLVM_VERSION_GE` branches of
/// the other versions too.
fn compile_wrapper_script(tree: &Path, major: u32) -> String {
    let dir = tree.join("compiler/rustc_llvm/llvm-wrapper");
    format!(
        "set -e; config=/usr/lib/llvm-{major}/bin/llvm-config; \
         test -x $config || {{ echo \"$config is missing; run cargo xtask env\" >&2; exit 1; }}; \
         cd {}; for f in *.cpp; do echo \"c++ -fsyntax-only $f (LLVM {major})\"; \
         c++ -fsyntax-only -std=c++17 $($config --cxxflags) -DENZYME $f; done",
        crate::cmd::shell_quote(&dir.display().to_string())
    )
}

/// Tidy's `cpp:fmt` extra check on the stack: rustc_llvm's C++ must be unchanged by the
/// clang-format that tidy pins (src/tools/tidy/config/requirements.txt), with rustc's style
/// (`.clang-format` upstream, `BasedOnStyle: LLVM`, which Debian's tarball leaves out).
fn clang_format(paths: &Paths) -> Result<()> {
    let tree = paths.tree(Slot::Check);
    let requirements = tree.join("src/tools/tidy/config/requirements.txt");
    let text = std::fs::read_to_string(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let pin = text
        .lines()
        .map(|l| l.trim().trim_end_matches('\\').trim())
        .find(|l| l.starts_with("clang-format=="))
        .with_context(|| format!("no clang-format pin in {}", requirements.display()))?;
    let dir = paths.python_tools().join(pin.replace("==", "-"));
    let binary = dir.join("clang_format/data/bin/clang-format");
    if !binary.exists() {
        crate::cmd::Cmd::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&dir)
            .arg(pin)
            .step("clang-format-install")
            .run()
            .context("cannot install tidy's clang-format with pip (python3 -m pip)")?;
    }
    let wrapper = tree.join("compiler/rustc_llvm/llvm-wrapper");
    let mut files: Vec<_> = std::fs::read_dir(&wrapper)
        .with_context(|| format!("cannot list {}", wrapper.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "cpp" || e == "h"))
        .collect();
    files.sort();
    crate::cmd::Cmd::new(&binary)
        .args(["--style=LLVM", "--dry-run", "--Werror"])
        .args(&files)
        .step("clang-format")
        .run()
        .context("C++ of the stack that clang-format would change (tidy's cpp:fmt); see the log")?;
    Ok(())
}

#[derive(clap::Args)]
pub struct Args {
    /// Also run tidy with CI's extra checks (py, cpp, js, spellcheck) on the base and the stack,
    /// and rustfmt on the stack's files; fails on any finding the stack adds
    #[arg(long)]
    pub tidy: bool,
    /// Only lint the stack and check it applies to `base` (no work tree, no chroot, no root)
    #[arg(long)]
    pub lint_only: bool,
    /// Check only the whole stack, not every commit of it
    #[arg(long)]
    pub last_only: bool,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    let mut rows = Vec::new();
    let result = run_steps(paths, args, &mut rows);
    summary::print(&rows);
    result
}

fn run_steps(paths: &Paths, args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    let prs = step(rows, "lint", || stack::lint(&paths.patches))?;
    git::require_branch(&paths.repo(), BASE_BRANCH, "run `cargo xtask base` first")?;
    for (i, pr) in prs.iter().enumerate() {
        step(rows, &format!("applies-to-base-{}", pr.name), || {
            series::check_applies(
                &paths.repo(),
                BASE_BRANCH,
                &stack::through(&prs, i),
                &paths.work(),
            )
        })?;
    }
    let patches = stack::flatten(&prs);
    println!(
        "check: {} PR(s), {} patch(es) lint clean and apply to `{BASE_BRANCH}` PR after PR \
         without whitespace errors",
        prs.len(),
        patches.len()
    );
    if args.lint_only {
        return Ok(());
    }
    crate::cmd::require_root("cargo xtask check")?;
    crate::env::verify(paths)?;
    let first = if args.last_only { patches.len() } else { 1 };
    for n in first..=patches.len() {
        let at = &patches[n - 1];
        println!("check: commit {n}/{} ({})", patches.len(), at.subject);
        let tag = if n == patches.len() { String::new() } else { format!("-{n}") };
        step(rows, &format!("apply{tag}"), || {
            apply::apply_patches(paths, Slot::Check, &patches[..n])
        })?;
        let chroot = Chroot::enter(paths)?;
        let result = (|| {
            step(rows, &format!("check-core{tag}"), || {
                let log = format!("check-core{tag}");
                chroot.x(Slot::Check, &["check", "--stage", "0", "library/core"], &log).run()
            })?;
            step(rows, &format!("check-codegen-llvm{tag}"), || {
                let log = format!("check-codegen-llvm{tag}");
                chroot.x(Slot::Check, &["check", "compiler/rustc_codegen_llvm"], &log).run()
            })
        })();
        chroot.leave()?;
        result.map_err(|e| e.context(format!("commit {n} of the stack, {:?}", at.subject)))?;
    }
    step(rows, "clang-format", || clang_format(paths))?;
    for &major in LLVM_CHECKED {
        let name = format!("compile-wrapper-llvm-{major}");
        let chroot = Chroot::enter(paths)?;
        let result = step(rows, &name, || {
            chroot.sh(&compile_wrapper_script(&paths.tree(Slot::Check), major)).step(&name).run()
        });
        chroot.leave()?;
        result?;
    }
    if args.tidy {
        step(rows, "tidy", || crate::tidy::run(paths, &patches))?;
    }
    Ok(())
}
