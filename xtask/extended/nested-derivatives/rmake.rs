//! Nested derivatives under fat LTO: a derivative of a function that reaches another derivative.
//!
//! `hvp.rs` is forward over reverse (a Hessian-vector product), with the inner reverse-mode
//! derivative reached along every path a user writes: directly, through one or two helper
//! functions, a closure, a generic function taking a closure, a trait method, and an indirect
//! call through a function pointer or a `dyn` method.
//! `second_order.rs` is a second derivative, forward over forward (with `Dual` and with
//! `DualOnly` returns) and reverse over forward, and an all-`Const` reverse-mode derivative called
//! from a forward-mode one (rust-lang/rust#160567).
//! `third_order.rs` is a third derivative, three derivatives deep: forward over forward over
//! reverse, and forward over forward over forward.
//! `cross_crate.rs` is `hvp.rs` with the inner derivative in another crate, `nested_lib.rs`,
//! reached directly or through a function of that crate.
//!
//! Enzyme lowers the `__enzyme_*` calls function by function in module order and, for each call,
//! first those of the function it differentiates, never those of its callees. The outer
//! derivative only works if the inner call was lowered first, so each program is built with the
//! outer derivative sorting first in the module and with the inner one sorting first (of three,
//! the outermost and the innermost), at opt-level=0 with debuginfo and at opt-level=3; the
//! outer-first programs are also built with 16 codegen units and twice into the same incremental
//! directory, and those of `hvp.rs` with `#[inline(never)]` helpers. `cross_crate.rs` is built at
//! both levels, its library with the same flags. Every build must compile and compute the
//! closed-form derivatives.
//! All cases run and the failures are reported together, each by name.

//@ needs-enzyme
//@ ignore-cross-compile

use run_make_support::{CompletedProcess, Rustc, cmd, cwd, rustc};

const PROGRAMS: &[(&str, &str, &[&str])] = &[
    (
        "hvp.rs",
        "path",
        &[
            "direct",
            "helper",
            "two-helpers",
            "closure",
            "generic",
            "method",
            "fn-pointer",
            "dyn",
            "registry",
        ],
    ),
    (
        "second_order.rs",
        "case",
        &["forward-forward", "dual-only", "reverse-forward", "const-reverse"],
    ),
    ("third_order.rs", "case", &["reverse-forward-forward", "forward-forward-forward"]),
];

const DEBUG: &[&str] = &["-Copt-level=0", "-Cdebuginfo=2"];
const RELEASE: &[&str] = &["-Copt-level=3"];

fn main() {
    let mut failed = Vec::new();
    for &(program, key, values) in PROGRAMS {
        for value in values {
            let selected = format!("{key}=\"{value}\"");
            for inner_first in [false, true] {
                let order = if inner_first { "inner-first" } else { "outer-first" };
                let cfgs: &[&str] =
                    if inner_first { &[&selected, "inner_first"] } else { &[&selected] };
                for (level, flags) in [("O0", DEBUG), ("O3", RELEASE)] {
                    let name = format!("{value}-{order}-{level}");
                    case(&mut failed, program, &name, cfgs, flags);
                }
            }
            // Each function in a codegen unit of its own, as far as they go.
            let flags = [DEBUG, &["-Ccodegen-units=16"]].concat();
            case(&mut failed, program, &format!("{value}-cgu16-O0"), &[&selected], &flags);
            // The second build reuses the codegen units the first one cached.
            let incremental = format!("-Cincremental=incr-{value}");
            let flags = [DEBUG, &[incremental.as_str()]].concat();
            for build in ["incr1", "incr2"] {
                case(&mut failed, program, &format!("{value}-{build}-O0"), &[&selected], &flags);
            }
            // The inliner must not be what makes it work.
            if key == "path" {
                let cfgs = [selected.as_str(), "noinline"];
                case(&mut failed, program, &format!("{value}-noinline-O0"), &cfgs, DEBUG);
            }
        }
    }
    for path in ["direct", "helper"] {
        for (level, flags) in [("O0", DEBUG), ("O3", RELEASE)] {
            cross_crate(&mut failed, path, level, flags);
        }
    }
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}

/// Builds `program` as `name` with autodiff and fat LTO (the only way Enzyme runs) and runs it;
/// it prints `ok` after checking its derivatives against their closed forms.
fn case(failed: &mut Vec<String>, program: &str, name: &str, cfgs: &[&str], flags: &[&str]) {
    let mut build = autodiff(program, flags);
    build.output(name);
    for cfg in cfgs {
        build.cfg(cfg);
    }
    build_and_run(failed, name, build);
}

/// `cross_crate.rs` with `--cfg path="{path}"`, its library built first with the same flags.
fn cross_crate(failed: &mut Vec<String>, path: &str, level: &str, flags: &[&str]) {
    let name = format!("cross-crate-{path}-{level}");
    let lib_dir = format!("lib-{level}");
    let lib = autodiff("nested_lib.rs", flags).crate_type("rlib").out_dir(&lib_dir).run_unchecked();
    if !lib.status().success() {
        failed.push(format!("{name}: the library does not compile: {}", first_error(&lib)));
        return;
    }
    let mut build = autodiff("cross_crate.rs", flags);
    build
        .cfg(&format!("path=\"{path}\""))
        .extern_("nested_lib", format!("{lib_dir}/libnested_lib.rlib"));
    build.output(&name);
    build_and_run(failed, &name, build);
}

/// A compilation of `program` with autodiff and fat LTO (the only way Enzyme runs) and `flags`.
fn autodiff(program: &str, flags: &[&str]) -> Rustc {
    let mut build = rustc();
    build.input(program).arg("-Zautodiff=Enable").arg("-Clto=fat").args(flags);
    build
}

/// The first error line a compilation printed.
fn first_error(out: &CompletedProcess) -> String {
    let stderr = out.stderr_utf8();
    stderr.lines().find(|l| l.starts_with("error")).unwrap_or("(no error line)").to_string()
}

/// Runs `build`, then the program it writes, `name`.
fn build_and_run(failed: &mut Vec<String>, name: &str, mut build: Rustc) {
    let built = build.run_unchecked();
    if !built.status().success() {
        failed.push(format!("{name}: does not compile: {}", first_error(&built)));
        return;
    }
    let ran = cmd(cwd().join(name)).run_unchecked();
    if !ran.status().success() || ran.stdout_utf8() != "ok\n" {
        failed.push(format!("{name}: wrong result: {}", ran.stderr_utf8().trim()));
    }
}
