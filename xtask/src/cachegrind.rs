//! Instruction counts for `bench`: the command line that runs a compiler under valgrind's
//! cachegrind (in the chroot: there are no hardware counters on this VM), the parser of the
//! `I refs:` total it prints, the goals the patched/unpatched ratio is judged by, and the
//! statistics over address-space layouts.
//!
//! Under valgrind a run is deterministic, but its count depends on where the libraries and the
//! heap are mapped: LLVM and rustc hash pointers, so collisions, probes and rehashes move with
//! the addresses. Two compilers that differ in size map everything at different addresses, so
//! one run each compares two layouts as much as two compilers (measured on a hello world: the
//! same 1.95.0 compiler at the ten layouts of `minaddr` spans 166,816 instructions, 0.19 %,
//! more than the 0.1 % goal). `bench` therefore counts each compiler at several layouts (valgrind's
//! `--aspace-minaddr` moves every mapping by whole pages) and compares the means.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// valgrind inside the chroot, and the Debian package that provides it (`env` installs it).
pub const VALGRIND: &str = "/usr/bin/valgrind";
pub const PACKAGE: &str = "valgrind";

/// `valgrind --tool=cachegrind ... PROGRAM ARGS`: only the instruction count (no cache
/// simulation, the per-line profile goes to /dev/null). Children are not traced (no
/// `--trace-children=yes`), so the linker rustc runs is not counted: the count is rustc's own
/// work, all its threads. No `-q`: it would also suppress the `I refs:` total.
/// `layout` picks the lowest address valgrind maps the program's memory at (see `minaddr`).
pub fn command(program: &str, args: &[String], layout: u32) -> Vec<String> {
    let mut words: Vec<String> = [
        VALGRIND,
        &format!("--aspace-minaddr={:#x}", minaddr(layout)),
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        program,
    ]
    .map(String::from)
    .into();
    words.extend(args.iter().cloned());
    words
}

/// The lowest address of layout `layout`: 16 MiB plus a number of pages below 4096 taken from
/// the golden-ratio sequence, so that layouts differ in every address bit from 4 KiB to 8 MiB
/// (consecutive pages would only move the low bits, and hashes use the high ones too).
/// valgrind maps the libraries and the heap upwards from there, so all of them move. Layout 0
/// is 16 MiB itself.
pub fn minaddr(layout: u32) -> u64 {
    LAYOUT_BASE + (u64::from(layout) * GOLDEN) % LAYOUT_PAGES * PAGE
}

const LAYOUT_BASE: u64 = 0x100_0000;
const LAYOUT_PAGES: u64 = 4096;
const PAGE: u64 = 0x1000;
/// 2^32 divided by the golden ratio: its multiples modulo 4096 spread evenly.
const GOLDEN: u64 = 0x9E37_79B1;

/// The `I refs:` total of valgrind's output (`==123== I   refs:      1,234,567,890`; valgrind
/// 3.21 and later print `I refs:` with one space). Exactly one total must be there.
pub fn parse_i_refs(output: &str) -> Result<u64> {
    let mut found = Vec::new();
    for line in output.lines() {
        let Some(value) = i_refs_value(line) else { continue };
        let digits: String = value.chars().filter(|&c| c != ',').collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            bail!("cannot read the instruction count in valgrind's line {:?}", line.trim());
        }
        let n = digits
            .parse::<u64>()
            .with_context(|| format!("instruction count too large in {:?}", line.trim()))?;
        found.push(n);
    }
    match found[..] {
        [n] => Ok(n),
        [] => bail!(
            "valgrind printed no `I refs:` total (did the program run under cachegrind?); \
             its output ends with:\n{}",
            last_lines(output)
        ),
        _ => bail!(
            "valgrind printed {} `I refs:` totals, expected one (were child processes traced?)",
            found.len()
        ),
    }
}

/// The text after `I refs:` if `line` is cachegrind's total, with or without `==PID==`.
fn i_refs_value(line: &str) -> Option<&str> {
    let mut rest = line.trim();
    if let Some(after) = rest.strip_prefix("==") {
        let (pid, tail) = after.split_once("==")?;
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        rest = tail;
    }
    // `I` then blanks then `refs:`; not `I1  misses:` or `D refs:`.
    let rest = rest.trim_start().strip_prefix('I')?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(rest.trim_start().strip_prefix("refs:")?.trim())
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// A goal for the ratio patched/unpatched of two instruction counts, in parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// ratio <= 1 + ppm / 10^6 (the series may cost this much).
    AtMost { ppm: u64 },
    /// |ratio - 1| <= ppm / 10^6 (the series must not change the work).
    Within { ppm: u64 },
}

impl Goal {
    /// Whether `patched / unpatched` meets the goal, in exact integer arithmetic.
    pub fn met(self, unpatched: u128, patched: u128) -> bool {
        let (u, p) = (unpatched, patched);
        match self {
            Goal::AtMost { ppm } => p * 1_000_000 <= u * (1_000_000 + u128::from(ppm)),
            Goal::Within { ppm } => p.abs_diff(u) * 1_000_000 <= u * u128::from(ppm),
        }
    }

    /// `<= 1.005` or `1.000 +- 0.001`.
    pub fn show(self) -> String {
        match self {
            Goal::AtMost { ppm } => format!("<= {}", fmt_ppm(ppm.saturating_add(1_000_000))),
            Goal::Within { ppm } => format!("1.000 +- {}", fmt_ppm(ppm)),
        }
    }

    pub fn json(self) -> Value {
        match self {
            Goal::AtMost { ppm } => {
                json!({"max_ratio": ppm.saturating_add(1_000_000) as f64 / 1e6})
            }
            Goal::Within { ppm } => json!({"ratio": 1.0, "tolerance": ppm as f64 / 1e6}),
        }
    }

    /// Whether every difference `patched - unpatched` in `lo..=hi` gets the same verdict, for
    /// an unpatched count of `base`: then more layouts cannot change it.
    pub fn decided(self, base: f64, lo: f64, hi: f64) -> bool {
        let limit = |ppm: u64| base * ppm as f64 / 1e6;
        match self {
            Goal::AtMost { ppm } => hi <= limit(ppm) || lo > limit(ppm),
            Goal::Within { ppm } => {
                let b = limit(ppm);
                (-b <= lo && hi <= b) || lo > b || hi < -b
            }
        }
    }
}

/// Parts per million as a decimal with at least three places: 1005000 -> `1.005`.
fn fmt_ppm(ppm: u64) -> String {
    let s = format!("{}.{:06}", ppm / 1_000_000, ppm % 1_000_000);
    let keep = s.trim_end_matches('0').len().max(s.len() - 3);
    s[..keep].to_string()
}

/// The counts of one compilation by both compilers (unpatched first), one per layout.
#[derive(Debug, Clone)]
pub struct Samples {
    pub counts: [Vec<u64>; 2],
}

impl Samples {
    pub fn min(&self, i: usize) -> u64 {
        self.counts[i].iter().copied().min().unwrap_or(0)
    }

    pub fn max(&self, i: usize) -> u64 {
        self.counts[i].iter().copied().max().unwrap_or(0)
    }

    fn sum(&self, i: usize) -> u128 {
        self.counts[i].iter().map(|&c| u128::from(c)).sum()
    }

    fn n(&self, i: usize) -> usize {
        self.counts[i].len()
    }

    /// The mean count of compiler `i` over its layouts (0 without counts).
    pub fn mean(&self, i: usize) -> f64 {
        if self.n(i) == 0 { 0.0 } else { self.sum(i) as f64 / self.n(i) as f64 }
    }

    /// The sample standard deviation of compiler `i` over its layouts (None below two).
    fn sd(&self, i: usize) -> Option<f64> {
        let n = self.n(i);
        if n < 2 {
            return None;
        }
        let m = self.mean(i);
        let ss: f64 = self.counts[i].iter().map(|&c| (c as f64 - m).powi(2)).sum();
        Some((ss / (n - 1) as f64).sqrt())
    }

    /// Mean patched minus mean unpatched.
    pub fn diff(&self) -> f64 {
        self.mean(1) - self.mean(0)
    }

    /// Half the width of the 95 % interval of `diff`, from the spread over layouts: the
    /// standard error times Student's t for n0 + n1 - 2 degrees of freedom, so that two
    /// layouts that happen to agree do not make a narrow interval. None with fewer than two
    /// layouts per compiler.
    pub fn half_width(&self) -> Option<f64> {
        let (s0, s1) = (self.sd(0)?, self.sd(1)?);
        let var = s0 * s0 / self.n(0) as f64 + s1 * s1 / self.n(1) as f64;
        Some(t_975(self.n(0) + self.n(1) - 2) * var.sqrt())
    }

    /// patched / unpatched of the means; an error when there is nothing to divide by.
    pub fn ratio(&self) -> Result<f64> {
        if self.sum(0) == 0 {
            bail!("no instruction count for the unpatched compiler (valgrind counted 0)");
        }
        Ok(self.mean(1) / self.mean(0))
    }

    /// Whether the ratio of the means meets `goal`, exactly: sum1 / n1 against sum0 / n0.
    pub fn met(&self, goal: Goal) -> bool {
        let (n0, n1) = (self.n(0) as u128, self.n(1) as u128);
        goal.met(self.sum(0) * n1, self.sum(1) * n0)
    }

    /// Whether the whole interval `diff +- half_width` gets the same verdict, so that counting
    /// at more layouts cannot change it. Never with fewer than two layouts.
    pub fn decided(&self, goal: Goal) -> bool {
        let Some(hw) = self.half_width() else { return false };
        goal.decided(self.mean(0), self.diff() - hw, self.diff() + hw)
    }

    /// The table cell of compiler `i`: the count, or the mean and the range over layouts.
    pub fn cell(&self, i: usize) -> String {
        if self.n(i) > 1 {
            format!(
                "{} ({}-{})",
                fmt_count(self.mean(i).round() as u64),
                fmt_count(self.min(i)),
                fmt_count(self.max(i))
            )
        } else {
            fmt_count(self.min(i))
        }
    }

    /// `x1.0012 (+1,234 +- 567)`: the ratio of the means with four decimals, the difference of
    /// the means and, over several layouts, the half width of its 95 % interval.
    pub fn change(&self) -> Result<String> {
        let ratio = self.ratio()?;
        let diff = self.diff().round();
        let sign = if diff < 0.0 { "-" } else { "+" };
        let spread = match self.half_width() {
            Some(hw) => format!(" +- {}", fmt_count(hw.round() as u64)),
            None => String::new(),
        };
        Ok(format!("x{ratio:.4} ({sign}{}{spread})", fmt_count(diff.abs() as u64)))
    }

    /// The figures as JSON; `goal` is None for a count that has none (then `met` is null).
    /// `decided` is judged by `stop`, the goal that decided when counting stopped.
    pub fn json(&self, goal: Option<Goal>, stop: Goal) -> Result<Value> {
        Ok(json!({"counts": {"unpatched": self.counts[0], "patched": self.counts[1]},
                  "layouts": self.n(0),
                  "minaddr": (0..self.n(0) as u32).map(minaddr).collect::<Vec<_>>(),
                  "mean": {"unpatched": self.mean(0), "patched": self.mean(1)},
                  "min": {"unpatched": self.min(0), "patched": self.min(1)},
                  "max": {"unpatched": self.max(0), "patched": self.max(1)},
                  "diff": self.diff(), "diff_half_width_95": self.half_width(),
                  "ratio": self.ratio()?, "goal": goal.map(Goal::json),
                  "goal_text": goal.map(Goal::show), "met": goal.map(|g| self.met(g)),
                  "decided": self.decided(stop)}))
    }
}

/// Student's t, two-sided 95 % (the 0.975 quantile), for `df` degrees of freedom (df >= 1);
/// above 30, the normal quantile.
fn t_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        _ => 1.960,
    }
}

/// `1,234,567,890`, as valgrind prints it.
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_total_of_old_and_new_valgrind() {
        // valgrind 3.19 (bookworm), as run by `command`.
        let old = "==21805== Cachegrind, a cache and branch-prediction profiler\n\
                   ==21805== Command: rustc hello.rs\n==21805== \n\
                   --21805-- warning: L3 cache found, using its data for the LL simulation.\n\
                   ==21805== \n==21805== I   refs:      1,234,567,890\n";
        assert_eq!(parse_i_refs(old).unwrap(), 1_234_567_890);
        // valgrind 3.21 and later, with rustc's own output before it.
        let new = "warning: unused variable: `x`\n==7== \n==7== I refs:        127,665\n";
        assert_eq!(parse_i_refs(new).unwrap(), 127_665);
        // No pid prefix, no commas, trailing blanks and CR.
        assert_eq!(parse_i_refs("I refs: 42  \r\n").unwrap(), 42);
        assert_eq!(parse_i_refs("==1== I\trefs:\t0\n").unwrap(), 0);
        // The cache-simulation lines around it are not totals.
        let sim = "==9== I   refs:      1,000\n==9== I1  misses:        10\n\
                   ==9== D   refs:        500\n==9== LL refs:           7\n";
        assert_eq!(parse_i_refs(sim).unwrap(), 1000);
    }

    #[test]
    fn rejects_missing_repeated_and_garbled_totals() {
        let err = parse_i_refs("error: could not compile\n").unwrap_err().to_string();
        assert!(err.contains("no `I refs:` total") && err.contains("could not compile"), "{err}");
        assert!(parse_i_refs("").is_err());
        let two = "==1== I refs: 5\n==2== I refs: 6\n";
        assert!(parse_i_refs(two).unwrap_err().to_string().contains("2 `I refs:` totals"));
        for bad in ["==1== I refs: 1.5e9\n", "==1== I refs:\n", "==1== I refs: ,,\n"] {
            let err = parse_i_refs(bad).unwrap_err().to_string();
            assert!(err.contains("cannot read the instruction count"), "{bad:?}: {err}");
        }
        let huge = "==1== I refs: 99,999,999,999,999,999,999\n";
        assert!(parse_i_refs(huge).unwrap_err().to_string().contains("too large"));
        // Not valgrind lines: a pid that is not a number, `Ir`, a word starting with I.
        assert!(parse_i_refs("==x== I refs: 5\nIr refs: 5\nIrefs: 5\n").is_err());
    }

    #[test]
    fn goals_are_exact_at_the_boundary() {
        let at_most = Goal::AtMost { ppm: 5_000 };
        assert!(at_most.met(1_000_000, 1_005_000));
        assert!(!at_most.met(1_000_000, 1_005_001));
        assert!(at_most.met(1_000_000, 900_000));
        let within = Goal::Within { ppm: 1_000 };
        assert!(within.met(2_000_000, 2_002_000) && within.met(2_000_000, 1_998_000));
        assert!(!within.met(2_000_000, 2_002_001) && !within.met(2_000_000, 1_997_999));
        // Large counts do not overflow; zero does not panic.
        let max = u128::from(u64::MAX) * 10;
        assert!(within.met(max, max));
        assert!(!within.met(0, 1) && within.met(0, 0));
        assert_eq!(at_most.show(), "<= 1.005");
        assert_eq!(within.show(), "1.000 +- 0.001");
        assert_eq!(Goal::AtMost { ppm: 500 }.show(), "<= 1.0005");
        assert_eq!(Goal::Within { ppm: 0 }.show(), "1.000 +- 0.000");
        assert_eq!(at_most.json()["max_ratio"], 1.005);
    }

    #[test]
    fn samples_ratio_cells_and_json() {
        // One layout: the count itself, no interval, never decided.
        let one = Samples { counts: [vec![2_000], vec![1_999]] };
        assert_eq!(one.cell(1), "1,999");
        assert_eq!(one.change().unwrap(), "x0.9995 (-1)");
        assert_eq!(one.half_width(), None);
        assert!(!one.decided(Goal::Within { ppm: 1_000_000 }));
        // Several layouts: means, ranges, and two standard errors of the difference.
        let s =
            Samples { counts: [vec![1_000, 1_002, 998, 1_000], vec![1_010, 1_012, 1_008, 1_010]] };
        assert_eq!((s.mean(0), s.mean(1), s.diff()), (1_000.0, 1_010.0, 10.0));
        let hw = s.half_width().unwrap();
        // sd = sqrt(8 / 3) for both, n = 4, 6 degrees of freedom: 2.447 * sqrt(2 * (8 / 3) / 4).
        assert!((hw - 2.447 * (4.0f64 / 3.0).sqrt()).abs() < 1e-9, "{hw}");
        assert_eq!(s.cell(0), "1,000 (998-1,002)");
        assert_eq!(s.change().unwrap(), "x1.0100 (+10 +- 3)");
        // 10 +- 2.8 is entirely above 1.005 (limit 5) and entirely below 1.05 (limit 50).
        assert!(s.decided(Goal::AtMost { ppm: 5_000 }) && !s.met(Goal::AtMost { ppm: 5_000 }));
        assert!(s.decided(Goal::AtMost { ppm: 50_000 }) && s.met(Goal::AtMost { ppm: 50_000 }));
        // The interval 7.2..12.8 straddles a limit of 10 (1 % of 1,000): not decided.
        assert!(!s.decided(Goal::Within { ppm: 10_000 }) && s.met(Goal::Within { ppm: 10_000 }));
        let j = s.json(Some(Goal::AtMost { ppm: 5_000 }), Goal::AtMost { ppm: 5_000 }).unwrap();
        assert_eq!((j["layouts"].clone(), j["mean"]["patched"].clone()), (json!(4), json!(1010.0)));
        assert_eq!(j["counts"]["unpatched"][1], 1_002);
        assert_eq!((j["met"].clone(), j["decided"].clone()), (json!(false), json!(true)));
        assert_eq!(j["minaddr"][1], minaddr(1));
        let none = s.json(None, Goal::Within { ppm: 1_000 }).unwrap();
        assert!(none["goal"].is_null() && none["met"].is_null() && none["goal_text"].is_null());
        // The means are compared exactly, even when the layouts differ in number.
        let uneven = Samples { counts: [vec![3, 4], vec![4]] };
        assert!(Goal::Within { ppm: 0 }.met(7, 7) && !uneven.met(Goal::Within { ppm: 0 }));
        assert!(uneven.met(Goal::Within { ppm: 150_000 }));
        let none = Samples { counts: [vec![], vec![5]] };
        assert!(none.ratio().unwrap_err().to_string().contains("no instruction count"));
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1_234_567_890), "1,234,567,890");
    }

    #[test]
    fn student_t_narrows_with_layouts() {
        assert_eq!(
            (t_975(1), t_975(2), t_975(18), t_975(30), t_975(31)),
            (12.706, 4.303, 2.101, 2.042, 1.96)
        );
        assert!(t_975(0).is_infinite());
        // Two layouts each that agree closely still give a wide interval (t = 4.303).
        let two = Samples { counts: [vec![100, 102], vec![200, 202]] };
        assert!((two.half_width().unwrap() - 4.303 * 2f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn decided_intervals_per_goal() {
        let within = Goal::Within { ppm: 1_000 };
        // base 1e6: the limit is +-1,000.
        assert!(within.decided(1e6, -900.0, 900.0));
        assert!(within.decided(1e6, 1_001.0, 3_000.0) && within.decided(1e6, -3_000.0, -1_001.0));
        assert!(!within.decided(1e6, 500.0, 1_500.0) && !within.decided(1e6, -1_500.0, 0.0));
        let at_most = Goal::AtMost { ppm: 5_000 };
        assert!(at_most.decided(1e6, -9e9, 5_000.0) && at_most.decided(1e6, 5_001.0, 6_000.0));
        assert!(!at_most.decided(1e6, 4_000.0, 6_000.0));
    }

    #[test]
    fn command_moves_the_layout_by_pages() {
        let words = command("/s/bin/rustc", &["-O".into(), "a.rs".into()], 0);
        assert_eq!(
            words.join(" "),
            "/usr/bin/valgrind --aspace-minaddr=0x1000000 --tool=cachegrind --cache-sim=no \
             --cachegrind-out-file=/dev/null /s/bin/rustc -O a.rs"
        );
        assert!(!words.iter().any(|w| w.starts_with("--trace-children") || w == "-q"));
        // 0x9e3779b1 % 4096 = 0x9b1 pages; 3 * that % 4096 = 0xd13.
        assert_eq!(command("r", &[], 1)[1], "--aspace-minaddr=0x19b1000");
        assert_eq!(minaddr(3), 0x100_0000 + 0xd13 * 0x1000);
        // Ten layouts, ten different addresses, all in [16 MiB, 32 MiB).
        let mut seen: Vec<u64> = (0..10).map(minaddr).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10);
        assert!(seen.iter().all(|&a| (0x100_0000..0x200_0000).contains(&a)));
        assert!(minaddr(u32::MAX) < 0x200_0000);
    }
}
