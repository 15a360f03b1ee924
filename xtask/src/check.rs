//! `check`: the fast tier. Lint the series and prove it applies to pristine `base`, apply it
//! to the work tree, then `x.py check` library/core (stage 0) and rustc_codegen_llvm in the
//! chroot; `--tidy` adds `x.py test tidy`. Needs no Enzyme library.

use anyhow::Result;

use crate::env::Chroot;
use crate::paths::*;
use crate::summary::{self, Row, step};
use crate::{apply, git, series};

#[derive(clap::Args)]
pub struct Args {
    /// Also run `x.py test tidy`
    #[arg(long)]
    pub tidy: bool,
    /// Only lint the series and check it applies to `base` (no work tree, no chroot, no root)
    #[arg(long)]
    pub lint_only: bool,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    let mut rows = Vec::new();
    let result = run_steps(paths, args, &mut rows);
    summary::print(&rows);
    result
}

fn run_steps(paths: &Paths, args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    let patches = step(rows, "lint", || series::lint(&paths.patches))?;
    step(rows, "applies-to-base", || {
        git::require_branch(&paths.repo(), BASE_BRANCH, "run `cargo xtask base` first")?;
        series::check_applies(&paths.repo(), BASE_BRANCH, &patches, &paths.work())
    })?;
    println!(
        "check: {} patch(es) lint clean and apply to `{BASE_BRANCH}` without whitespace errors",
        patches.len()
    );
    if args.lint_only {
        return Ok(());
    }
    crate::cmd::require_root("cargo xtask check")?;
    crate::env::verify(paths)?;
    step(rows, "apply", || apply::apply_patches(paths, Slot::Check, &patches))?;
    let chroot = Chroot::enter(paths)?;
    step(rows, "check-core", || {
        chroot.x(Slot::Check, &["check", "--stage", "0", "library/core"], "check-core").run()
    })?;
    step(rows, "check-codegen-llvm", || {
        chroot.x(Slot::Check, &["check", "compiler/rustc_codegen_llvm"], "check-codegen-llvm").run()
    })?;
    if args.tidy {
        step(rows, "tidy", || chroot.x(Slot::Check, &["test", "tidy"], "tidy").run())?;
    }
    chroot.leave()
}
