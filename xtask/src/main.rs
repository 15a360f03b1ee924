//! `cargo xtask`: builds rustc 1.95.0 plus the patch series in patches/ inside a Debian sid
//! chroot and runs the autodiff tests. `cargo xtask --help` lists the commands.

mod apply;
mod apt;
mod base;
mod bench;
mod bench_programs;
mod cachegrind;
mod check;
mod cmd;
mod compare;
mod compiletest;
mod env;
mod enzyme;
mod extended;
mod full;
mod git;
mod mounts;
mod paths;
mod refresh;
mod series;
mod stack;
mod summary;
mod sweep;
mod sweep_gen;
mod symbols;
mod tidy;
mod wide;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Build rustc 1.95.0 with the stack of autodiff PRs in a Debian sid chroot and test it.
///
/// Typical order: `base` (source), `env` (chroot), `check` (fast tier), `enzyme` (build
/// libEnzyme from a checkout), `full` (Enzyme and the autodiff suites), `compare` (do each
/// PR's tests catch its bug?), `bench` (what the stack costs), `wide` (what bors would catch),
/// `refresh` (export the stack from the development worktree).
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    /// Cache directory: tarball, base repository, chroot, work tree, build and logs
    #[arg(long, global = true, env = "ADMK_CACHE", value_name = "DIR", default_value_os_t = paths::default_cache())]
    cache: PathBuf,
    /// Directory holding `stack`, the PR directories and `enzyme/` (the Enzyme series)
    #[arg(long, global = true, value_name = "DIR", default_value_os_t = paths::project_root().join("patches"))]
    patches: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download and verify Debian's rustc 1.95.0 tarball; make branches `base` and `fixups`
    Base,
    /// Create (or verify) the Debian sid chroot with LLVM 22 and the build tools (root)
    Env(env::Args),
    /// Reset the work tree to `fixups` and `git am` the stack (or its first PRs or patches)
    Apply(apply::Args),
    /// Lint the stack, check it applies to `base` PR by PR, `x.py check` every commit (root)
    Check(check::Args),
    /// Build libEnzyme-22.so in the chroot from an Enzyme checkout plus the series in
    /// PATCHES/enzyme, if any (root)
    Enzyme(enzyme::Args),
    /// Install Enzyme, apply, build stage 1 and run the autodiff test suites (root)
    Full(full::Args),
    /// Mutation check: each PR's tests must fail before the PR and pass with it (root)
    Compare(compare::Args),
    /// Measure what the stack costs, unpatched vs patched stage 1 in one run (root)
    Bench(bench::Args),
    /// Run wide suites on the base and with the stack; fail on tests only the stack fails (root)
    Wide(wide::Args),
    /// Regenerate the stack in patches/ from the development worktree's commits
    Refresh(refresh::Args),
    /// Generated autodiff programs checked against finite differences, base vs stack (root)
    Sweep(sweep::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let paths = paths::Paths::new(cli.cache, cli.patches);
    let name = match &cli.command {
        Command::Base => "base",
        Command::Env(_) => "env",
        Command::Apply(_) => "apply",
        Command::Check(_) => "check",
        Command::Enzyme(_) => "enzyme",
        Command::Full(_) => "full",
        Command::Compare(_) => "compare",
        Command::Bench(_) => "bench",
        Command::Wide(_) => "wide",
        Command::Refresh(_) => "refresh",
        Command::Sweep(_) => "sweep",
    };
    if let Err(e) = cmd::init_logs(&paths.logs(), name) {
        eprintln!("warning: running without log files: {e:#}");
    }
    let result = match &cli.command {
        Command::Base => base::run(&paths),
        Command::Env(a) => env::run(&paths, a),
        Command::Apply(a) => apply::run(&paths, a),
        Command::Check(a) => check::run(&paths, a),
        Command::Enzyme(a) => enzyme::run(&paths, a),
        Command::Full(a) => full::run(&paths, a),
        Command::Compare(a) => compare::run(&paths, a),
        Command::Bench(a) => bench::run(&paths, a),
        Command::Wide(a) => wide::run(&paths, a),
        Command::Refresh(a) => refresh::run(&paths, a),
        Command::Sweep(a) => sweep::run(&paths, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        // `enzyme` reads its series from the global `--patches` (PATCHES/enzyme), given before
        // or after the subcommand.
        for argv in [
            ["x", "enzyme", "--source", "/e", "--patches", "/p"],
            ["x", "--patches", "/p", "enzyme", "--source", "/e"],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap();
            let Command::Enzyme(a) = &cli.command else { panic!("not enzyme") };
            assert_eq!(
                (a.source.as_path(), cli.patches.as_path()),
                (Path::new("/e"), Path::new("/p"))
            );
            assert!(!a.with_plugin && a.out.is_none());
        }
        assert!(Cli::try_parse_from(["x", "enzyme"]).is_err(), "--source is required");
    }
}
