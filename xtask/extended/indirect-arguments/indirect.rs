//! Derivatives of functions whose arguments the ABI passes through a pointer: arrays and a struct
//! of three `f64` by value, with `Dual` shadows in forward mode and `Const` in reverse mode, and a
//! Hessian-vector product (forward over reverse) whose outer function takes its point by value.

#![feature(autodiff)]

use std::autodiff::{autodiff_forward, autodiff_reverse};

// o(x) = x_0 x_1 x_2 + x_0^2
#[autodiff_forward(d_o, Dual, Dual)]
fn o(x: [f64; 3]) -> f64 {
    x[0] * x[1] * x[2] + x[0] * x[0]
}

#[derive(Clone, Copy)]
struct P3 {
    a: f64,
    b: f64,
    c: f64,
}

// p(q) = q_a q_b q_c + sin(q_c)
#[autodiff_forward(d_p, Dual, Dual)]
fn p(q: P3) -> f64 {
    q.a * q.b * q.c + q.c.sin()
}

// w(c, x) = c_0 x_0^2 + c_1 x_0 x_1 + c_2 x_1^2
#[autodiff_reverse(d_w, Const, Duplicated, Active)]
fn w(c: [f64; 3], x: &[f64; 2]) -> f64 {
    c[0] * x[0] * x[0] + c[1] * x[0] * x[1] + c[2] * x[1] * x[1]
}

// f(x) = x_0^2 x_1 + x_1 x_2^3
#[autodiff_reverse(d_f, Duplicated, Active)]
fn f(x: &[f64; 3]) -> f64 {
    x[0] * x[0] * x[1] + x[1] * x[2] * x[2] * x[2]
}

fn grad(x: &[f64; 3]) -> [f64; 3] {
    let mut g = [0.0; 3];
    d_f(x, &mut g, 1.0);
    g
}

// df/dx_1 = x_0^2 + x_2^3, at a point passed by value
#[autodiff_forward(d_g1, Dual, Dual)]
fn g1(x: [f64; 3]) -> f64 {
    grad(&x)[1]
}

fn check(what: &str, got: f64, want: f64, bad: &mut Vec<String>) {
    if (got - want).abs() > 1e-9 * want.abs().max(1.0) {
        bad.push(format!("{what}: got {got}, expected {want}"));
    }
}

fn main() {
    let mut bad = Vec::new();
    let (x, v) = ([1.5, -2.0, 0.75], [0.5, 1.25, -1.0]);

    let (y, dy) = d_o(x, v);
    check("o", y, o(x), &mut bad);
    let want = (x[1] * x[2] + 2.0 * x[0]) * v[0] + x[0] * x[2] * v[1] + x[0] * x[1] * v[2];
    check("o'", dy, want, &mut bad);

    let q = P3 { a: x[0], b: x[1], c: x[2] };
    let (y, dy) = d_p(q, P3 { a: v[0], b: v[1], c: v[2] });
    check("p", y, p(q), &mut bad);
    let want = q.b * q.c * v[0] + q.a * q.c * v[1] + (q.a * q.b + q.c.cos()) * v[2];
    check("p'", dy, want, &mut bad);

    let (c, z) = ([2.0, -3.0, 0.5], [1.25, -0.5]);
    let mut dz = [0.0; 2];
    let y = d_w(c, &z, &mut dz, 1.0);
    check("w", y, w(c, &z), &mut bad);
    check("dw/dx_0", dz[0], 2.0 * c[0] * z[0] + c[1] * z[1], &mut bad);
    check("dw/dx_1", dz[1], c[1] * z[0] + 2.0 * c[2] * z[1], &mut bad);

    // d/dv of df/dx_1 = 2 x_0 v_0 + 3 x_2^2 v_2
    let (y, dy) = d_g1(x, v);
    check("g1", y, x[0] * x[0] + x[2] * x[2] * x[2], &mut bad);
    check("g1'", dy, 2.0 * x[0] * v[0] + 3.0 * x[2] * x[2] * v[2], &mut bad);

    if bad.is_empty() {
        println!("ok");
    } else {
        eprintln!("{}", bad.join("\n"));
        std::process::exit(1);
    }
}
