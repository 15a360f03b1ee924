//! Reading compiletest output as rendered by bootstrap: the `test result:` summary lines and
//! the per-test lines (`test [run-make] tests/run-make/autodiff/NAME ... ok|FAILED|ignored`).

/// Totals of one or more `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Passed,
    Failed,
    Ignored,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Passed => "ok",
            Outcome::Failed => "FAILED",
            Outcome::Ignored => "ignored",
        })
    }
}

/// Drop ANSI colour sequences (`ESC [ ... m`) in case the output was coloured.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Sum of every `test result: ok|FAILED. N passed; M failed; K ignored; ...` line, or
/// `None` if there is none (the suite did not run, e.g. the build failed first).
pub fn summary(text: &str) -> Option<Counts> {
    let mut total: Option<Counts> = None;
    for line in text.lines().map(strip_ansi) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else { continue };
        let mut c = Counts::default();
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(kind), Some(n)) = (words.next(), words.next()) else { continue };
            let Ok(n) = n.parse::<u64>() else { continue };
            match kind {
                "passed" => c.passed = n,
                "failed" => c.failed = n,
                "ignored" => c.ignored = n,
                _ => {}
            }
        }
        let t = total.get_or_insert_with(Counts::default);
        t.passed += c.passed;
        t.failed += c.failed;
        t.ignored += c.ignored;
    }
    total
}

/// Every per-test line: verbose (`test NAME ... ok`), terse failures (`NAME ... F`) and CI
/// failures (`   NAME ... FAILED`). Names look like `[ui] tests/ui/autodiff/x.rs#rev`.
pub fn outcomes(text: &str) -> Vec<(String, Outcome)> {
    let mut out = Vec::new();
    for line in text.lines().map(strip_ansi) {
        let line = line.trim();
        let line = line.strip_prefix("test ").unwrap_or(line);
        let Some((name, result)) = line.split_once(" ... ") else { continue };
        if !name.starts_with('[') {
            continue;
        }
        let outcome = match result.split_whitespace().next().unwrap_or("") {
            "ok" => Outcome::Passed,
            "FAILED" | "F" => Outcome::Failed,
            r if r.starts_with("ignored") => Outcome::Ignored,
            _ => continue,
        };
        out.push((name.to_string(), outcome));
    }
    out
}

/// The outcome of the test called `query`: a path (`tests/ui/autodiff/x.rs`), a file name
/// (`x.rs`, `x`) or a run-make directory name, optionally with `#REVISION` for one revision.
/// Without one, revisions are folded: any failure wins.
pub fn lookup(outcomes: &[(String, Outcome)], query: &str) -> Option<Outcome> {
    let (q, revision) = split_revision(query.trim_end_matches('/'));
    let matches = |name: &str| {
        let name = name.split_once("] ").map_or(name, |(_, p)| p);
        let (path, rev) = split_revision(name);
        (revision.is_none() || rev == revision)
            && (path == q
                || path.ends_with(&format!("/{q}"))
                || path.ends_with(&format!("/{q}.rs")))
    };
    let found: Vec<Outcome> =
        outcomes.iter().filter(|(n, _)| matches(n)).map(|(_, o)| *o).collect();
    if found.contains(&Outcome::Failed) {
        Some(Outcome::Failed)
    } else if found.contains(&Outcome::Passed) {
        Some(Outcome::Passed)
    } else {
        found.first().copied()
    }
}

/// `x.rs#rev` into the test and its revision.
pub fn split_revision(name: &str) -> (&str, Option<&str>) {
    match name.split_once('#') {
        Some((path, rev)) => (path, Some(rev)),
        None => (name, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
running 3 tests
test [run-make] tests/run-make/autodiff/rlib ... ok
test [run-make] tests/run-make/autodiff/type-trees ... FAILED
test [run-make] tests/run-make/autodiff/other ... ignored, needs-enzyme
test [ui] tests/ui/autodiff/visibility.rs#std_autodiff ... ok (1.20s)
test [ui] tests/ui/autodiff/visibility.rs#no_std_autodiff ... FAILED
\u{1b}[31m[ui] tests/ui/autodiff/bad.rs ... F\u{1b}[0m

test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 10 filtered out; finished in 4.50s

test result: \u{1b}[32mok\u{1b}[0m. 5 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out
";

    #[test]
    fn sums_summary_lines() {
        assert_eq!(summary(LOG), Some(Counts { passed: 7, failed: 1, ignored: 3 }));
        assert_eq!(summary("error: could not compile `rustc_codegen_llvm`\n"), None);
    }

    #[test]
    fn finds_named_tests() {
        let o = outcomes(LOG);
        assert_eq!(o.len(), 6);
        assert_eq!(lookup(&o, "rlib"), Some(Outcome::Passed));
        assert_eq!(lookup(&o, "type-trees"), Some(Outcome::Failed));
        assert_eq!(lookup(&o, "other"), Some(Outcome::Ignored));
        assert_eq!(lookup(&o, "visibility"), Some(Outcome::Failed), "any failed revision wins");
        assert_eq!(lookup(&o, "visibility#std_autodiff"), Some(Outcome::Passed));
        assert_eq!(lookup(&o, "visibility.rs#no_std_autodiff"), Some(Outcome::Failed));
        assert_eq!(lookup(&o, "visibility#nope"), None);
        assert_eq!(lookup(&o, "tests/ui/autodiff/bad.rs"), Some(Outcome::Failed));
        assert_eq!(lookup(&o, "missing"), None);
        assert_eq!(lookup(&o, "lib"), None, "a suffix of a name is not the name");
    }
}
