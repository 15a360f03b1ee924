//! Reading test output as rendered by bootstrap: the `test result:` summary lines, the
//! per-test lines of compiletest (`test [run-make] tests/run-make/autodiff/NAME ... ok`) and
//! those of the library's libtest binaries and doctests, which cargo runs one after the other
//! under its `Running ...`/`Doc-tests ...` headers.

/// Totals of one or more `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        let Some(outcome) = parse_outcome(result) else { continue };
        out.push((name.to_string(), outcome));
    }
    out
}

/// The outcome a result column starts with (`ok (1.20s)`, `FAILED`, `F`, `ignored, reason`,
/// `benchmarked`); also reads back what `Outcome`'s `Display` writes.
pub fn parse_outcome(result: &str) -> Option<Outcome> {
    match result.split_whitespace().next().unwrap_or("") {
        "ok" | "benchmarked" => Some(Outcome::Passed),
        "FAILED" | "F" => Some(Outcome::Failed),
        r if r.starts_with("ignored") => Some(Outcome::Ignored),
        _ => None,
    }
}

/// Every per-test line of `x test library/...` (`test NAME ... ok|FAILED|ignored`), named
/// `[LABEL] NAME` after the test binary that ran it, because the binaries (coretests,
/// alloctests' unit and integration tests, the doctests of each crate) reuse names. The label
/// comes from cargo's header (`binary_label`) last seen before the binary's `running N tests`
/// line; rustdoc prints several of those (merged doctests, then standalone ones) under one
/// header. Cargo writes its headers to stderr while bootstrap renders the tests' stdout, so
/// a header can land inside the previous binary's failure report: headers are recognized
/// everywhere, while `test ... ok` lines inside a failing test's captured output are not
/// results. (A binary that exits before bootstrap renders its first line would take the next
/// header's label; the names then show up as present on one side only.)
pub fn libtest_outcomes(text: &str) -> Vec<(String, Outcome)> {
    let mut out = Vec::new();
    let mut header: Option<String> = None;
    let mut label = String::from("library");
    let mut in_captured_output = false;
    for line in text.lines().map(strip_ansi) {
        let line = line.trim();
        if let Some(l) = binary_label(line) {
            header = Some(l);
            continue;
        }
        if in_captured_output {
            // Bootstrap closes each section; plain libtest output only has `failures:` after.
            in_captured_output = !(line.starts_with("---- ") && line.ends_with(" stdout end ----")
                || line == "failures:"
                || line.starts_with("test result: "));
            continue;
        }
        if line.starts_with("---- ") && line.ends_with(" stdout ----") {
            in_captured_output = true;
            continue;
        }
        if let Some(count) = line.strip_prefix("running ")
            && count.split_whitespace().next().is_some_and(|n| n.parse::<u64>().is_ok())
        {
            if let Some(h) = &header {
                label.clone_from(h);
            }
            continue;
        }
        let Some((name, result)) = line.strip_prefix("test ").and_then(|l| l.split_once(" ... "))
        else {
            continue;
        };
        let Some(outcome) = parse_outcome(result) else { continue };
        out.push((format!("[{label}] {name}"), outcome));
    }
    out
}

/// The label of a test binary from cargo's header before it: `Running unittests lib.rs
/// (.../deps/alloctests-0123abcd)` is `alloctests unittests lib.rs` (without the hash, which
/// may differ between build directories), `Doc-tests core` is `core doctests`.
/// ``Running `rustc ...` `` (cargo -v) is not a header.
fn binary_label(line: &str) -> Option<String> {
    let line = line.trim();
    if let Some(krate) = line.strip_prefix("Doc-tests ") {
        let krate = krate.trim();
        return (!krate.is_empty()).then(|| format!("{krate} doctests"));
    }
    let rest = line.strip_prefix("Running ")?.trim();
    if rest.is_empty() || rest.starts_with('`') {
        return None;
    }
    let (what, exe) = match rest.rsplit_once(" (") {
        Some((what, exe)) => (what.trim(), exe.trim_end_matches(')')),
        None => ("", rest),
    };
    let file = exe.rsplit('/').next().unwrap_or(exe);
    let bin = match file.rsplit_once('-') {
        Some((bin, hash)) if !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit()) => bin,
        _ => file,
    };
    Some(if what.is_empty() { bin.to_string() } else { format!("{bin} {what}") })
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

    #[test]
    fn reads_outcome_words() {
        for o in [Outcome::Passed, Outcome::Failed, Outcome::Ignored] {
            assert_eq!(parse_outcome(&o.to_string()), Some(o), "Display reads back");
        }
        assert_eq!(parse_outcome("ok (0.20s)"), Some(Outcome::Passed));
        assert_eq!(parse_outcome("ignored, needs-enzyme"), Some(Outcome::Ignored));
        assert_eq!(parse_outcome("benchmarked"), Some(Outcome::Passed));
        assert_eq!(parse_outcome("has been running for a long time"), None);
        assert_eq!(parse_outcome(""), None);
    }

    #[test]
    fn labels_test_binaries() {
        let deps = "/c/work/build/x86_64-unknown-linux-gnu/stage1-std/release/deps";
        let label = |l: &str| binary_label(l);
        assert_eq!(
            label(&format!("     Running unittests lib.rs ({deps}/alloctests-3f2a9c0d1e4b5a67)"))
                .as_deref(),
            Some("alloctests unittests lib.rs")
        );
        assert_eq!(
            label(&format!("     Running tests/lib.rs ({deps}/alloctests-0011223344556677)"))
                .as_deref(),
            Some("alloctests tests/lib.rs")
        );
        assert_eq!(label("   Doc-tests core").as_deref(), Some("core doctests"));
        assert_eq!(label("Running target/debug/deps/foo-0a1b").as_deref(), Some("foo"));
        assert_eq!(
            label("Running tests/x.rs (deps/no-hash-here)").as_deref(),
            Some("no-hash-here tests/x.rs")
        );
        assert_eq!(label("     Running `rustc --crate-name core`"), None, "cargo -v command lines");
        assert_eq!(label("test running ... ok"), None);
        assert_eq!(label("Doc-tests"), None);
    }

    const LIBRARY_LOG: &str = "\
   Compiling alloctests v0.0.0 (/c/work/tree/library/alloctests)
    Finished `release` profile [optimized] target(s) in 1m 02s
     Running unittests lib.rs (/c/build/deps/alloctests-3f2a9c0d1e4b5a67)

running 2 tests
test vec::tests::push ... ok
test btree::map::tests::insert ... ignored, slow under miri
\u{1b}[0m\u{1b}[0m\u{1b}[1m\u{1b}[32m     Running\u{1b}[0m tests/lib.rs (/c/deps/alloctests-0011223344556677)

test result: ok. 1 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s


running 2 tests
test vec::tests::push ... FAILED
test string::test_from ... ok (0.01s)

failures:

---- vec::tests::push stdout ----
test inner::case ... ok
     Running tests/lib.rs (/c/build/deps/coretests-8899aabbccddeeff)
thread 'vec::tests::push' panicked at library/alloctests/tests/vec.rs:10:5
---- vec::tests::push stdout end ----

failures:
    vec::tests::push

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.02s


running 1 test
test num::u8_add ... ok
   Doc-tests core

running 2 tests
test library/core/src/lib.rs - (line 12) ... ok
test library/core/src/num/mod.rs - num::u8::checked_add (line 700) ... ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 3.10s


running 1 tests
test library/core/src/ptr/mod.rs - ptr (line 5) - compile fail ... ok
all doctests ran in 9.20s; merged doctests compilation took 6.00s
";

    #[test]
    fn labels_library_tests_by_binary() {
        let o = libtest_outcomes(LIBRARY_LOG);
        let names: Vec<(&str, Outcome)> = o.iter().map(|(n, o)| (n.as_str(), *o)).collect();
        assert_eq!(
            names,
            [
                ("[alloctests unittests lib.rs] vec::tests::push", Outcome::Passed),
                ("[alloctests unittests lib.rs] btree::map::tests::insert", Outcome::Ignored),
                ("[alloctests tests/lib.rs] vec::tests::push", Outcome::Failed),
                ("[alloctests tests/lib.rs] string::test_from", Outcome::Passed),
                // The header arrived inside the failure report and still names the next binary.
                ("[coretests tests/lib.rs] num::u8_add", Outcome::Passed),
                ("[core doctests] library/core/src/lib.rs - (line 12)", Outcome::Passed),
                (
                    "[core doctests] library/core/src/num/mod.rs - num::u8::checked_add (line 700)",
                    Outcome::Passed
                ),
                // rustdoc's second `running` line (standalone doctests) keeps the header.
                (
                    "[core doctests] library/core/src/ptr/mod.rs - ptr (line 5) - compile fail",
                    Outcome::Passed
                ),
            ]
        );
        assert_eq!(summary(LIBRARY_LOG), Some(Counts { passed: 4, failed: 1, ignored: 1 }));
        assert!(outcomes(LIBRARY_LOG).is_empty(), "compiletest names start with `[`");
        assert_eq!(lookup(&o, "vec::tests::push"), Some(Outcome::Failed), "the worse of two");
        assert_eq!(
            libtest_outcomes("test early ... ok\n"),
            [("[library] early".to_string(), Outcome::Passed)],
            "no header yet"
        );
    }
}
