//! Instruction counts for `bench`: the command line that runs a compiler under valgrind's
//! cachegrind (in the chroot: there are no hardware counters on this VM), the parser of the
//! `I refs:` total it prints, and the goals the patched/unpatched ratio is judged by. Counts
//! are exact integers, so a goal is checked without rounding.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// valgrind inside the chroot, and the Debian package that provides it (`env` installs it).
pub const VALGRIND: &str = "/usr/bin/valgrind";
pub const PACKAGE: &str = "valgrind";

/// `valgrind --tool=cachegrind ... PROGRAM ARGS`: only the instruction count (no cache
/// simulation, the per-line profile goes to /dev/null). Children are not traced (no
/// `--trace-children=yes`), so the linker rustc runs is not counted: the count is rustc's own
/// work, all its threads. No `-q`: it would also suppress the `I refs:` total.
pub fn command(program: &str, args: &[String]) -> Vec<String> {
    let mut words: Vec<String> = [
        VALGRIND,
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
    pub fn met(self, unpatched: u64, patched: u64) -> bool {
        let (u, p) = (u128::from(unpatched), u128::from(patched));
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
}

/// Parts per million as a decimal with at least three places: 1005000 -> `1.005`.
fn fmt_ppm(ppm: u64) -> String {
    let s = format!("{}.{:06}", ppm / 1_000_000, ppm % 1_000_000);
    let keep = s.trim_end_matches('0').len().max(s.len() - 3);
    s[..keep].to_string()
}

/// The counts of one compilation by both compilers (unpatched first), one per run.
#[derive(Debug, Clone)]
pub struct Samples {
    pub counts: [Vec<u64>; 2],
}

impl Samples {
    /// The least count of compiler `i`. Noise (thread scheduling under valgrind's serialized
    /// threads, spinning) only adds instructions, so the minimum is the least disturbed run.
    pub fn min(&self, i: usize) -> u64 {
        self.counts[i].iter().copied().min().unwrap_or(0)
    }

    pub fn max(&self, i: usize) -> u64 {
        self.counts[i].iter().copied().max().unwrap_or(0)
    }

    /// patched / unpatched of the minima; an error when there is nothing to divide by.
    pub fn ratio(&self) -> Result<f64> {
        let (u, p) = (self.min(0), self.min(1));
        if u == 0 {
            bail!("no instruction count for the unpatched compiler (valgrind counted 0)");
        }
        Ok(p as f64 / u as f64)
    }

    pub fn met(&self, goal: Goal) -> bool {
        goal.met(self.min(0), self.min(1))
    }

    /// The table cell of compiler `i`: the minimum, and the maximum after several runs.
    pub fn cell(&self, i: usize) -> String {
        if self.counts[i].len() > 1 {
            format!("{} (max {})", fmt_count(self.min(i)), fmt_count(self.max(i)))
        } else {
            fmt_count(self.min(i))
        }
    }

    /// `x1.0012 (+1,234,567)`: the ratio with four decimals and the difference of the minima.
    pub fn change(&self) -> Result<String> {
        let diff = i128::from(self.min(1)) - i128::from(self.min(0));
        let sign = if diff < 0 { "-" } else { "+" };
        Ok(format!("x{:.4} ({sign}{})", self.ratio()?, fmt_count(diff.unsigned_abs() as u64)))
    }

    pub fn json(&self, goal: Goal) -> Result<Value> {
        Ok(json!({"counts": {"unpatched": self.counts[0], "patched": self.counts[1]},
                  "min": {"unpatched": self.min(0), "patched": self.min(1)},
                  "max": {"unpatched": self.max(0), "patched": self.max(1)},
                  "ratio": self.ratio()?, "goal": goal.json(), "goal_text": goal.show(),
                  "met": self.met(goal)}))
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
        assert!(within.met(u64::MAX, u64::MAX));
        assert!(!within.met(0, 1) && within.met(0, 0));
        assert_eq!(at_most.show(), "<= 1.005");
        assert_eq!(within.show(), "1.000 +- 0.001");
        assert_eq!(Goal::AtMost { ppm: 500 }.show(), "<= 1.0005");
        assert_eq!(Goal::Within { ppm: 0 }.show(), "1.000 +- 0.000");
        assert_eq!(at_most.json()["max_ratio"], 1.005);
    }

    #[test]
    fn samples_ratio_cells_and_json() {
        let s = Samples { counts: [vec![1_000_300, 1_000_000], vec![1_004_000, 1_004_200]] };
        assert_eq!(
            (s.min(0), s.max(0), s.min(1), s.max(1)),
            (1_000_000, 1_000_300, 1_004_000, 1_004_200)
        );
        assert_eq!(s.change().unwrap(), "x1.0040 (+4,000)");
        assert!(s.met(Goal::AtMost { ppm: 5_000 }) && !s.met(Goal::Within { ppm: 1_000 }));
        assert_eq!(s.cell(0), "1,000,000 (max 1,000,300)");
        let one = Samples { counts: [vec![2_000], vec![1_999]] };
        assert_eq!(one.cell(1), "1,999");
        assert_eq!(one.change().unwrap(), "x0.9995 (-1)");
        let j = s.json(Goal::AtMost { ppm: 5_000 }).unwrap();
        assert_eq!(j["min"]["patched"], 1_004_000);
        assert_eq!(j["counts"]["unpatched"][0], 1_000_300);
        assert_eq!((j["met"].clone(), j["goal_text"].clone()), (json!(true), json!("<= 1.005")));
        let none = Samples { counts: [vec![], vec![5]] };
        assert!(none.ratio().unwrap_err().to_string().contains("no instruction count"));
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1_234_567_890), "1,234,567,890");
        let words = command("/s/bin/rustc", &["-O".into(), "a.rs".into()]);
        assert_eq!(
            words.join(" "),
            "/usr/bin/valgrind --tool=cachegrind --cache-sim=no \
             --cachegrind-out-file=/dev/null /s/bin/rustc -O a.rs"
        );
        assert!(!words.iter().any(|w| w.starts_with("--trace-children") || w == "-q"));
    }
}
