//! Arguments that the ABI passes through a pointer, under autodiff with fat LTO: `indirect.rs`
//! differentiates functions of a `[f64; 3]` and of a struct of three `f64` passed by value (`Dual`
//! in forward mode, `Const` in reverse mode), and a Hessian-vector product whose outer function
//! takes its point by value.
//!
//! rustc describes every argument to Enzyme with a type tree. Such a value is passed as a pointer
//! to it, so the tree of the parameter must be that of a pointer to the value; the tree of the
//! value itself makes Enzyme stop ("Illegal updateAnalysis", or "Canonicalization failed" for the
//! struct). The program is built at opt-level=0 with debuginfo, at opt-level=3 and with 16
//! codegen units, and must compile and compute the closed forms.

//@ needs-enzyme
//@ ignore-cross-compile

use run_make_support::{cmd, cwd, rustc};

fn main() {
    let builds: &[(&str, &[&str])] = &[
        ("O0", &["-Copt-level=0", "-Cdebuginfo=2"]),
        ("O3", &["-Copt-level=3"]),
        ("cgu16-O3", &["-Copt-level=3", "-Ccodegen-units=16"]),
    ];
    let mut failed = Vec::new();
    for &(name, flags) in builds {
        let built = rustc()
            .input("indirect.rs")
            .arg("-Zautodiff=Enable")
            .arg("-Clto=fat")
            .args(flags)
            .output(name)
            .run_unchecked();
        if !built.status().success() {
            let stderr = built.stderr_utf8();
            let error = stderr.lines().find(|l| l.starts_with("error")).unwrap_or("(no error)");
            let cause = stderr
                .lines()
                .find(|l| l.contains("Illegal updateAnalysis") || l.contains("LLVM ERROR"));
            failed.push(format!("{name}: does not compile: {error} {}", cause.unwrap_or("")));
            continue;
        }
        let ran = cmd(cwd().join(name)).run_unchecked();
        if !ran.status().success() || ran.stdout_utf8() != "ok\n" {
            failed.push(format!("{name}: wrong result: {}", ran.stderr_utf8().trim()));
        }
    }
    assert!(failed.is_empty(), "failed builds:\n{}", failed.join("\n"));
}
