//! `compare`: the mutation check of each PR's tests. A PR's tests (those its commits add or
//! change, and those its `tests` file names) must FAIL on the tree with the PRs before it plus
//! the PR's own test files, and PASS on the tree with the PR. The rounds walk up the stack in
//! one slot, so each build is incremental on the one before: the tree of round k has the first
//! k PRs and the test files of PR k+1, and judges PR k's tests (after) and PR k+1's (before).

use std::collections::BTreeSet;

use anyhow::{Result, bail};

use crate::apply;
use crate::compiletest::{self, Outcome};
use crate::env::Chroot;
use crate::full;
use crate::git::{TempWorktree, git, git_commit};
use crate::paths::{Paths, Slot};
use crate::stack::{self, Pr};
use crate::summary::{self, Row};

#[derive(clap::Args)]
pub struct Args {
    /// Prebuilt Enzyme built against LLVM 22; it is installed as libEnzyme-22.so
    #[arg(long, value_name = "PATH")]
    pub enzyme_lib: std::path::PathBuf,
    /// The PRs to judge (directory name, name without its number, or number; repeatable;
    /// default: every PR of the stack)
    #[arg(long = "pr", value_name = "PR")]
    pub prs: Vec<String>,
}

/// One build of the walk: the first `applied` PRs, plus the test files of PR `overlay` (an
/// index into the stack) when it is the next PR's "before" round.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Round {
    applied: usize,
    overlay: Option<usize>,
    /// (PR index, expected to pass) for each PR this round judges.
    judges: Vec<(usize, bool)>,
}

pub fn run(paths: &Paths, args: &Args) -> Result<()> {
    let prs = stack::load(&paths.patches)?;
    let selected: BTreeSet<usize> = if args.prs.is_empty() {
        (0..prs.len()).collect()
    } else {
        args.prs.iter().map(|p| stack::find(&prs, p)).collect::<Result<_>>()?
    };
    let rounds = plan(&prs, &selected);
    for r in &rounds {
        let judged: Vec<String> = r
            .judges
            .iter()
            .map(|&(i, pass)| format!("{} {}", prs[i].name, if pass { "after" } else { "before" }))
            .collect();
        println!(
            "compare: round with {} PR(s){}: {}",
            r.applied,
            r.overlay.map(|i| format!(" + the test files of {}", prs[i].name)).unwrap_or_default(),
            judged.join(", ")
        );
    }
    crate::cmd::require_root("cargo xtask compare")?;
    crate::env::verify(paths)?;
    full::prepare_enzyme(paths, &args.enzyme_lib)?;

    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    let result = walk(paths, &prs, &rounds, &mut rows, &mut verdicts);
    summary::print(&rows);
    print_verdicts(&prs, &selected, &verdicts);
    result?;
    let bad: Vec<String> = verdicts
        .iter()
        .filter(|v| verdict(v.before, v.after) != "ok")
        .map(|v| format!("{} {}", prs[v.pr].name, v.test))
        .collect();
    if !bad.is_empty() {
        bail!("mutation check failed for: {}", bad.join(", "));
    }
    Ok(())
}

/// The rounds that judge `selected`, in the order of the stack. A PR's "before" round shares
/// the build of the PR before it when that PR's "after" round is needed too, unless its test
/// files change the previous PR's (then each gets a round of its own).
fn plan(prs: &[Pr], selected: &BTreeSet<usize>) -> Vec<Round> {
    let mut rounds: Vec<Round> = Vec::new();
    for &i in selected {
        let before = Round { applied: i, overlay: Some(i), judges: vec![(i, false)] };
        let shares = rounds.last().is_some_and(|last| {
            last.applied == i
                && last.overlay.is_none()
                && !overlaps(&prs[i].test_files(), &prs[i - 1].test_files())
        });
        if shares {
            let last = rounds.last_mut().expect("checked above");
            last.overlay = Some(i);
            last.judges.push((i, false));
        } else {
            rounds.push(before);
        }
        rounds.push(Round { applied: i + 1, overlay: None, judges: vec![(i, true)] });
    }
    rounds
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().any(|f| b.contains(f))
}

struct Verdict {
    pr: usize,
    test: String,
    before: Option<Outcome>,
    after: Option<Outcome>,
}

fn walk(
    paths: &Paths,
    prs: &[Pr],
    rounds: &[Round],
    rows: &mut Vec<Row>,
    verdicts: &mut Vec<Verdict>,
) -> Result<()> {
    for (n, round) in rounds.iter().enumerate() {
        let rev = round_commit(paths, prs, round)?;
        apply::sync_tree(paths, Slot::Series, &rev)?;
        full::write_shim(paths, Slot::Series)?;
        let tests: Vec<String> = round
            .judges
            .iter()
            .flat_map(|&(i, _)| prs[i].tests())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let name = format!("round{}-{}pr", n + 1, round.applied);
        let chroot = Chroot::enter(paths)?;
        let result = (|| {
            let build = format!("{name}-build");
            summary::step(rows, &build, || {
                chroot.x(Slot::Series, &["build", "--stage", "1", "library"], &build).run()
            })?;
            full::run_tests(&chroot, Slot::Series, &tests, &format!("{name}-tests"), rows)
        })();
        chroot.leave()?;
        let outcomes = result?;
        for &(i, pass) in &round.judges {
            for test in prs[i].tests() {
                let outcome = compiletest::lookup(&outcomes, &test);
                match verdicts.iter_mut().find(|v| v.pr == i && v.test == test) {
                    Some(v) if pass => v.after = outcome,
                    Some(v) => v.before = outcome,
                    None => verdicts.push(Verdict {
                        pr: i,
                        test,
                        before: if pass { None } else { outcome },
                        after: if pass { outcome } else { None },
                    }),
                }
            }
        }
    }
    Ok(())
}

/// The commit a round builds: the first `applied` PRs on `fixups`, plus, for a "before" round,
/// the files under `tests/` as the PR `overlay` leaves them.
fn round_commit(paths: &Paths, prs: &[Pr], round: &Round) -> Result<String> {
    let base = apply::commit_series(paths, &stack::flatten(&prs[..round.applied]))?;
    let Some(i) = round.overlay else {
        return Ok(base);
    };
    let with_pr = apply::commit_series(paths, &stack::through(prs, i))?;
    let files = prs[i].test_files();
    let wt = TempWorktree::new(&paths.repo(), &base, &paths.work(), Some(&files))?;
    for file in &files {
        let exists = git(&wt.path)
            .args(["cat-file", "-e"])
            .arg(format!("{with_pr}:{file}"))
            .quiet()
            .run_unchecked()?
            .success;
        if exists {
            git(&wt.path).args(["checkout", &with_pr, "--", file]).quiet().run()?;
        } else {
            git(&wt.path).args(["rm", "-q", "--ignore-unmatch", "--", file]).quiet().run()?;
        }
    }
    git_commit(&wt.path)
        .args(["commit", "-q", "--allow-empty", "-m"])
        .arg(format!("compare: the test files of {}", prs[i].name))
        .quiet()
        .run()?;
    git(&wt.path).args(["rev-parse", "HEAD"]).read()
}

fn print_verdicts(prs: &[Pr], selected: &BTreeSet<usize>, verdicts: &[Verdict]) {
    println!("{:<24}  {:<46}  {:<12}  {:<12}  verdict", "PR", "test", "before", "after");
    for &i in selected {
        for v in verdicts.iter().filter(|v| v.pr == i) {
            let show = |o: Option<Outcome>| o.map_or("did not run".to_string(), |o| o.to_string());
            println!(
                "{:<24}  {:<46}  {:<12}  {:<12}  {}",
                prs[i].name,
                v.test,
                show(v.before),
                show(v.after),
                verdict(v.before, v.after)
            );
        }
    }
}

/// "ok" when the test fails without the fix and passes with it; otherwise what is wrong.
fn verdict(before: Option<Outcome>, after: Option<Outcome>) -> &'static str {
    match (before, after) {
        (Some(Outcome::Failed), Some(Outcome::Passed)) => "ok",
        (Some(Outcome::Failed), _) => "the fix does not make it pass",
        (Some(Outcome::Passed), _) => "passes without the fix: does not catch the bug",
        _ => "ignored or did not run without the fix",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(name: &str, files: &[&str]) -> Pr {
        Pr {
            name: name.to_string(),
            patches: vec![crate::series::Patch {
                name: "p".into(),
                path: Default::default(),
                subject: "s".into(),
                files: files.iter().map(|f| f.to_string()).collect(),
            }],
            listed_tests: vec![],
        }
    }

    #[test]
    fn plans_shared_rounds() {
        let prs = [
            pr("01-a", &["src/a.rs", "tests/ui/a.rs"]),
            pr("02-b", &["src/b.rs", "tests/ui/b.rs"]),
            pr("03-c", &["src/c.rs", "tests/ui/b.rs"]),
        ];
        let all: BTreeSet<usize> = (0..3).collect();
        let rounds = plan(&prs, &all);
        let r = |applied, overlay, judges: &[(usize, bool)]| Round {
            applied,
            overlay,
            judges: judges.to_vec(),
        };
        assert_eq!(
            rounds,
            [
                r(0, Some(0), &[(0, false)]),
                r(1, Some(1), &[(0, true), (1, false)]),
                // 03-c changes 02-b's test: its before round is a build of its own.
                r(2, None, &[(1, true)]),
                r(2, Some(2), &[(2, false)]),
                r(3, None, &[(2, true)]),
            ]
        );
        let one = plan(&prs, &BTreeSet::from([1]));
        assert_eq!(one, [r(1, Some(1), &[(1, false)]), r(2, None, &[(1, true)])]);
    }

    #[test]
    fn verdicts() {
        use Outcome::*;
        assert_eq!(verdict(Some(Failed), Some(Passed)), "ok");
        assert!(verdict(Some(Passed), Some(Passed)).contains("does not catch the bug"));
        assert!(verdict(Some(Failed), Some(Failed)).contains("fix does not"));
        assert!(verdict(Some(Ignored), Some(Passed)).contains("ignored"));
        assert!(verdict(None, None).contains("did not run"));
    }
}
