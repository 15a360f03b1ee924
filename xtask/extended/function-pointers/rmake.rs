//! Derivatives through calls of function pointers and `dyn` objects under fat LTO.
//!
//! `newton.rs` solves Kepler's equation by Newton's method with the residual and its derivative
//! reached through function pointers (rust-lang/rust#152724: a `while` loop on the step size, and
//! a `for` loop with a data-dependent `break`) or `dyn Fn` closures that capture a value of the
//! differentiated function, and with function pointers or `dyn Fn` objects passed to the
//! differentiated function as `Const` arguments. It checks forward-mode tangents, reverse-mode
//! gradients and the primal values both return against central finite differences.
//! `nested.rs` is a Hessian-vector product whose outer function reaches the inner derivative only
//! through a `Const` function pointer or `dyn` argument, in both module orders; a `Const`
//! function pointer chosen at run time must be a compile error that names the function.
//! `run_time.rs` calls a function pointer chosen at run time inside the differentiated function
//! and uses its result: reverse mode must compute the closed form, and forward mode, for which
//! Enzyme computes wrong values there, must be a compile error that names the function.
//!
//! Enzyme differentiates an indirect call by the pointer's shadow: a `Const` pointer made the
//! tangent zero at every opt-level, and at opt-level=0 forward mode built the shadow of a known
//! function with a different return type than the indirect call expects, so primal and tangent
//! came out wrong, without an error. Every case is built at opt-level=0 with debuginfo and at
//! opt-level=3 and must compute the right numbers. All cases run and the failures are reported
//! together, each by name.

//@ needs-enzyme
//@ ignore-cross-compile

use run_make_support::{CompletedProcess, cmd, cwd, rustc};

const DEBUG: &[&str] = &["-Copt-level=0", "-Cdebuginfo=2"];
const RELEASE: &[&str] = &["-Copt-level=3"];

fn main() {
    let mut failed = Vec::new();
    for case in ["fn-pointer", "for-break", "dyn-fn", "const-fn-pointer", "const-dyn-fn"] {
        let selected = format!("case=\"{case}\"");
        for (level, flags) in [("O0", DEBUG), ("O3", RELEASE)] {
            let name = format!("newton-{case}-{level}");
            build_and_run(&mut failed, "newton.rs", &name, &[&selected], flags);
        }
        // The inliner must not be what makes it work.
        let name = format!("newton-{case}-noinline-O3");
        build_and_run(&mut failed, "newton.rs", &name, &[&selected, "noinline"], RELEASE);
    }
    for case in ["fn-pointer", "dyn"] {
        let selected = format!("case=\"{case}\"");
        for inner_first in [false, true] {
            let order = if inner_first { "inner-first" } else { "outer-first" };
            let cfgs: &[&str] =
                if inner_first { &[&selected, "inner_first"] } else { &[&selected] };
            for (level, flags) in [("O0", DEBUG), ("O3", RELEASE)] {
                let name = format!("nested-{case}-{order}-{level}");
                build_and_run(&mut failed, "nested.rs", &name, cfgs, flags);
            }
        }
    }
    // A pointer chosen at run time cannot be folded in: a compile error that names the function,
    // never a zero derivative.
    for (level, flags) in [("O0", DEBUG), ("O3", RELEASE)] {
        let name = format!("nested-run-time-fn-pointer-{level}");
        let cfgs = ["case=\"run-time-fn-pointer\""];
        expect_error(&mut failed, "nested.rs", &name, &cfgs, flags, "nested::gradient");
    }
    // Through a pointer chosen at run time inside the differentiated function: reverse mode
    // computes it; forward mode must be a compile error that names the function.
    for (level, flags) in [("O0", DEBUG), ("O3", RELEASE)] {
        let name = format!("run-time-reverse-{level}");
        build_and_run(&mut failed, "run_time.rs", &name, &["mode=\"reverse\""], flags);
        let name = format!("run-time-forward-{level}");
        expect_error(
            &mut failed,
            "run_time.rs",
            &name,
            &["mode=\"forward\""],
            flags,
            "run_time::f",
        );
    }
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}

/// Builds `program` as `name` with autodiff and fat LTO, the only way Enzyme runs.
fn build(program: &str, name: &str, cfgs: &[&str], flags: &[&str]) -> CompletedProcess {
    let mut build = rustc();
    build.input(program).arg("-Zautodiff=Enable").arg("-Clto=fat").args(flags).output(name);
    for cfg in cfgs {
        build.cfg(cfg);
    }
    build.run_unchecked()
}

/// Builds `program` as `name` and runs it; it prints `ok` after checking its derivatives.
fn build_and_run(
    failed: &mut Vec<String>,
    program: &str,
    name: &str,
    cfgs: &[&str],
    flags: &[&str],
) {
    let built = build(program, name, cfgs, flags);
    if !built.status().success() {
        let stderr = built.stderr_utf8();
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error") || l.contains("panicked"))
            .unwrap_or("(no error line)");
        failed.push(format!("{name}: does not compile: {error}"));
        return;
    }
    let ran = cmd(cwd().join(name)).run_unchecked();
    if !ran.status().success() || ran.stdout_utf8() != "ok\n" {
        failed.push(format!("{name}: wrong result: {}", ran.stderr_utf8().trim()));
    }
}

/// Builds `program` as `name`, which must fail with an error that names `function`.
fn expect_error(
    failed: &mut Vec<String>,
    program: &str,
    name: &str,
    cfgs: &[&str],
    flags: &[&str],
    function: &str,
) {
    let built = build(program, name, cfgs, flags);
    let stderr = built.stderr_utf8();
    if built.status().success() || !stderr.contains(&format!("cannot differentiate `{function}`")) {
        failed.push(format!("{name}: compiles, or without naming the function: {stderr}"));
    }
}
