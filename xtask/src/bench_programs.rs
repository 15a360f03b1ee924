//! The small programs `bench` compiles with both compilers. None of them is part of the series:
//! they measure what the series costs, they do not test it.

/// A program that does not use autodiff.
pub const HELLO: &str = r#"fn main() {
    println!("Hello, world!");
}
"#;

/// A no-autodiff cdylib with one C function.
pub const CDYLIB: &str = r#"#[unsafe(no_mangle)]
pub extern "C" fn bench_add(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}
"#;

/// A staticlib for the C program below.
pub const STATICLIB: &str = r#"#[unsafe(no_mangle)]
pub extern "C" fn bench_rust_sum(a: i32, b: i32) -> i32 {
    let v: Vec<i32> = vec![a, b];
    v.iter().sum()
}
"#;

/// C code using Enzyme's idiom: it defines every marker itself (strong definitions with the
/// default `-fno-common`) and links the Rust staticlib.
pub const C_MAIN: &str = r#"#include <stdio.h>

int enzyme_const;
int enzyme_out;
int enzyme_dup;
int enzyme_dupv;
int enzyme_dupnoneed;
int enzyme_dupnoneedv;
int enzyme_primal_return;
int enzyme_width;

int bench_rust_sum(int, int);

int main(void) {
    int markers = enzyme_const + enzyme_out + enzyme_dup + enzyme_dupv + enzyme_dupnoneed
        + enzyme_dupnoneedv + enzyme_primal_return + enzyme_width;
    printf("sum %d markers %d\n", bench_rust_sum(40, 2), markers);
    return 0;
}
"#;

/// What the C program prints when it links and runs correctly.
pub const C_MAIN_EXPECTED: &str = "sum 42 markers 0\n";

/// A small autodiff crate: reverse, forward and forward over reverse.
pub const AUTODIFF: &str = r#"#![feature(autodiff)]

use std::autodiff::{autodiff_forward, autodiff_reverse};
use std::hint::black_box;

#[autodiff_reverse(df, Duplicated, Duplicated)]
#[autodiff_forward(df_fwd, Dual, Dual)]
fn f(x: &[f64; 2], y: &mut f64) {
    *y = x[0] * x[0] + x[1] * x[0];
}

#[autodiff_forward(hvp, Dual, Dual, Dual, Dual)]
fn gradient(x: &[f64; 2], bx: &mut [f64; 2], y: &mut f64, by: &mut f64) {
    df(x, bx, y, by);
}

fn main() {
    let x = black_box([2.0, 2.0]);
    let (mut bx, mut y) = ([0.0; 2], 0.0);
    df(&x, &mut bx, &mut y, &mut 1.0);
    let mut dy = 0.0;
    df_fwd(&x, &[1.0, 0.0], &mut y, &mut dy);
    let (mut bx2, mut dbx) = ([0.0; 2], [0.0; 2]);
    let (mut y2, mut dy2, mut by, mut dby) = (0.0, 0.0, 1.0, 0.0);
    hvp(&x, &[1.0, 0.0], &mut bx2, &mut dbx, &mut y2, &mut dy2, &mut by, &mut dby);
    println!("bx {bx:?} dy {dy} dbx {dbx:?}");
}
"#;

/// Its output: the gradient [6, 2], the forward derivative 6 and the Hessian-vector product.
pub const AUTODIFF_EXPECTED: &str = "bx [6.0, 2.0] dy 6 dbx [2.0, 1.0]\n";

/// A debug build's autodiff program that 1.95.0 differentiates too: a fold with a closure in
/// reverse mode, a polynomial through a helper in forward and reverse mode.
pub const AUTODIFF_DEBUG: &str = r#"#![feature(autodiff)]

use std::autodiff::{autodiff_forward, autodiff_reverse};
use std::hint::black_box;

#[autodiff_reverse(d_prod, Duplicated, Active)]
fn prod(x: &[f64]) -> f64 {
    x.iter().fold(1.0, |acc, v| acc * v)
}

#[autodiff_forward(d_poly, Dual, Dual)]
#[autodiff_reverse(b_poly, Active, Active)]
fn poly(x: f64) -> f64 {
    square(x) * x + 2.0 * x
}

fn square(x: f64) -> f64 {
    x * x
}

fn main() {
    let x = black_box([1.5, -2.0, 0.5]);
    let mut dx = [0.0; 3];
    let p = d_prod(&x, &mut dx, 1.0);
    let (_, dp) = d_poly(black_box(2.0), 1.0);
    let (_, bp) = b_poly(black_box(2.0), 1.0);
    println!("p {p} dx {dx:?} dp {dp} bp {bp}");
}
"#;

/// Its output: the product -1.5 and its gradient (p / x_i), and 3 x^2 + 2 at x = 2 both ways.
pub const AUTODIFF_DEBUG_EXPECTED: &str = "p -1.5 dx [-1.0, 0.75, -3.0] dp 14 bp 14\n";
