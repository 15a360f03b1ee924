//! A nested derivative of functions of slices under fat LTO: `slices.rs` computes a Hessian-vector
//! product, forward mode over a reverse-mode gradient, of a function of `&[f64]`.
//!
//! A slice is passed as two LLVM parameters, a pointer and a length. The type trees that rustc
//! gives Enzyme for the function it differentiates must go to the parameters they describe, one
//! argument after another; shifted by the slice's length, they make Enzyme stop with "Illegal
//! updateAnalysis" when it differentiates the gradient again for the outer derivative.
//! The program is built at opt-level=0 with debuginfo, at opt-level=3 and with 16 codegen units,
//! and must compile and compute the closed-form gradient and Hessian-vector products.

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
            .input("slices.rs")
            .arg("-Zautodiff=Enable")
            .arg("-Clto=fat")
            .args(flags)
            .output(name)
            .run_unchecked();
        if !built.status().success() {
            let stderr = built.stderr_utf8();
            let error = stderr.lines().find(|l| l.starts_with("error")).unwrap_or("(no error)");
            let cause = stderr.lines().find(|l| l.contains("Illegal updateAnalysis"));
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
