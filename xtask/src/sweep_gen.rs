//! `sweep`'s generator: deterministic random `#[autodiff]` programs that check themselves.
//!
//! Program `i` of seed `s` depends only on `(s, i)` (its own splitmix64 stream), so a smaller
//! `--count` gives a prefix of a larger one. A program has 1-3 parameters drawn from a grammar
//! of types (scalars, arrays, slices, `Vec`s, structs, `Option`, an enum, a tuple, a `Box`),
//! each with an activity valid for its type and the mode, a mode (reverse, forward, or forward
//! over reverse: a forward-mode derivative of a function that calls a reverse-mode gradient),
//! a return shape (an `f64` result, or `()` with a `&mut f64` out-parameter) and, for an
//! `Active` result, a seed. Its body is a smooth function of every float the parameters reach,
//! with loops over the slices and `Vec`s. Its `main` calls the derivative, computes the same
//! quantity by central finite differences of the primal, checks that no `Const` argument
//! changed, prints `ok` or the mismatches and exits with status 3 on a mismatch. Under forward
//! over reverse it checks both: the gradient of `f` against differences of `f`, and the tangent
//! of `g` (which calls that gradient) against differences of `g`.
//!
//! One program in twelve (index 5 mod 12, so that a run of 12 has one) instead carries an
//! invalid activity (`Active` on a reference, `Duplicated` on a value, `Dual` in reverse mode,
//! `Active` or `Duplicated` in forward mode); rustc is expected to reject it, and its `main`
//! only names the derivative.
//!
//! Finite differences: the data are multiples of 1/64 in [-1, 1] and the steps powers of two
//! (2^-20, about 1e-6; 2^-10 where `f32` data are perturbed), so every perturbed point is
//! exact, also in `f32`. A derivative matches when it is within a relative 1e-4 of the finite
//! difference (absolute 1e-4 below magnitude 1).

use std::fmt::Write as _;

/// Step of the central differences for `f64` data (2^-20).
pub const STEP_F64: f64 = 1.0 / 1048576.0;
/// Step where `f32` data are perturbed (2^-10): `x ± h t` stays exact in `f32`.
pub const STEP_F32: f64 = 1.0 / 1024.0;
/// Program `i` carries an invalid activity when `i % 12` is this.
const INVALID_AT: usize = 5;
/// Relative tolerance of the comparison with finite differences.
pub const TOLERANCE: f64 = 1e-4;

/// splitmix64 (Steele, Lea, Flood 2014): tiny, and good enough to draw programs.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (the modulo bias is below 2^-50 for the small `n` used here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// A multiple of 1/`denom` in [-1, 1].
    fn dyadic(&mut self, denom: usize) -> f64 {
        (self.below(2 * denom + 1) as f64 - denom as f64) / denom as f64
    }
}

/// A parameter type of the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ty {
    F64,
    F32,
    /// `[f64; 3]` by value.
    Arr3,
    /// `&[f64]`.
    Slice,
    /// `&Vec<f64>`.
    VecRef,
    /// `&[f64; 3]`.
    ArrRef,
    /// `P2 { a: f64, b: f64 }` by value.
    Pair,
    /// `&P2`.
    PairRef,
    /// `&Sv`, `Sv { v: Vec<f64>, c: f64 }`.
    Holder,
    /// `&Vec<Vec<f64>>`.
    Nested,
    /// `Option<f64>` by value (always `Some`).
    Opt,
    /// `E2` by value, `enum E2 { A(f64), B(f64) }`.
    Enum,
    /// `(f64, f64)`.
    Tuple,
    /// `&Box<f64>`.
    BoxRef,
}

pub const TYS: [Ty; 14] = [
    Ty::F64,
    Ty::F32,
    Ty::Arr3,
    Ty::Slice,
    Ty::VecRef,
    Ty::ArrRef,
    Ty::Pair,
    Ty::PairRef,
    Ty::Holder,
    Ty::Nested,
    Ty::Opt,
    Ty::Enum,
    Ty::Tuple,
    Ty::BoxRef,
];

impl Ty {
    /// The type in the differentiated function's signature.
    pub fn sig(self) -> &'static str {
        match self {
            Ty::F64 => "f64",
            Ty::F32 => "f32",
            Ty::Arr3 => "[f64; 3]",
            Ty::Slice => "&[f64]",
            Ty::VecRef => "&Vec<f64>",
            Ty::ArrRef => "&[f64; 3]",
            Ty::Pair => "P2",
            Ty::PairRef => "&P2",
            Ty::Holder => "&Sv",
            Ty::Nested => "&Vec<Vec<f64>>",
            Ty::Opt => "Option<f64>",
            Ty::Enum => "E2",
            Ty::Tuple => "(f64, f64)",
            Ty::BoxRef => "&Box<f64>",
        }
    }

    /// The owned value `main` holds (the referent of a reference).
    fn owned(self) -> &'static str {
        match self {
            Ty::F64 => "f64",
            Ty::F32 => "f32",
            Ty::Arr3 | Ty::ArrRef => "[f64; 3]",
            Ty::Slice | Ty::VecRef => "Vec<f64>",
            Ty::Pair | Ty::PairRef => "P2",
            Ty::Holder => "Sv",
            Ty::Nested => "Vec<Vec<f64>>",
            Ty::Opt => "Option<f64>",
            Ty::Enum => "E2",
            Ty::Tuple => "(f64, f64)",
            Ty::BoxRef => "Box<f64>",
        }
    }

    pub fn is_ref(self) -> bool {
        self.sig().starts_with('&')
    }

    pub fn is_scalar(self) -> bool {
        matches!(self, Ty::F64 | Ty::F32)
    }

    /// How `main` passes its owned value `var` as this parameter (by-value types are `Copy`).
    fn pass(self, var: &str) -> String {
        match self {
            Ty::Slice => format!("&{var}[..]"),
            t if t.is_ref() => format!("&{var}"),
            _ => var.to_string(),
        }
    }

    /// How a reverse-mode shadow `var` (owned) is passed.
    fn pass_mut(self, var: &str) -> String {
        match self {
            Ty::Slice => format!("&mut {var}[..]"),
            _ => format!("&mut {var}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Const,
    Active,
    Duplicated,
    Dual,
}

impl Act {
    pub fn name(self) -> &'static str {
        match self {
            Act::Const => "Const",
            Act::Active => "Active",
            Act::Duplicated => "Duplicated",
            Act::Dual => "Dual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Reverse,
    Forward,
    /// `g` (forward mode) calls `f`'s reverse-mode gradient.
    ForwardOverReverse,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Reverse => "reverse",
            Mode::Forward => "forward",
            Mode::ForwardOverReverse => "forward-over-reverse",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// `-> f64`, `Active` (reverse) or `Dual` (forward).
    Scalar,
    /// `-> ()` with a last parameter `out: &mut f64`, `Duplicated` or `Dual`.
    Out,
}

impl Ret {
    pub fn name(self) -> &'static str {
        match self {
            Ret::Scalar => "f64",
            Ret::Out => "&mut f64 out",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub ty: Ty,
    /// The activity in `f`'s attribute (reverse mode for forward-over-reverse).
    pub act: Act,
    /// The float data at the point of differentiation, in `flat` order.
    pub data: Vec<f64>,
    /// The tangent (forward and forward-over-reverse), in `flat` order.
    pub tangent: Vec<f64>,
    /// Lengths: `[len]` of a slice, `Vec` or `Sv::v`; the rows of `&Vec<Vec<f64>>`.
    pub rows: Vec<usize>,
    /// `E2::B` rather than `E2::A`.
    pub variant_b: bool,
    /// The template of the loop or expression that reads the parameter in the body.
    pub read: usize,
}

impl Param {
    pub fn slots(&self) -> usize {
        self.data.len()
    }

    /// The activity in `g`'s (forward-mode) attribute under forward-over-reverse.
    fn outer_act(&self) -> Act {
        if self.act == Act::Const { Act::Const } else { Act::Dual }
    }
}

/// One generated program: what it was drawn as, and its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// `p000`, `p001`, ...
    pub id: String,
    pub mode: Mode,
    pub ret: Ret,
    /// The seed (`dret`) of an `Active` result.
    pub seed: Option<f64>,
    pub params: Vec<Param>,
    /// The invalid activity the program carries (rustc should reject it), if any:
    /// `(kind, detail)`, e.g. `("Active on a reference", "x1: &[f64] Active")`.
    pub invalid: Option<(String, String)>,
    pub source: String,
}

impl Program {
    /// `mode`, `return`, `seed`, `type`, `activity`, `validity` and their values, each once.
    pub fn features(&self) -> Vec<(&'static str, String)> {
        let mut out =
            vec![("mode", self.mode.name().to_string()), ("return", self.ret.name().into())];
        out.push(("seed", self.seed.map_or("-".into(), |s| format!("{s:?}"))));
        for p in &self.params {
            out.push(("type", p.ty.sig().to_string()));
            out.push(("activity", p.act.name().to_string()));
        }
        out.push((
            "validity",
            self.invalid.as_ref().map_or("valid".into(), |(kind, _)| format!("invalid: {kind}")),
        ));
        out.sort();
        out.dedup();
        out
    }

    /// One line: `reverse, f64 (Active, seed 2.5): x0: &[f64] Duplicated, x1: f64 Const`.
    pub fn summary(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .enumerate()
            .map(|(k, p)| format!("x{k}: {} {}", p.ty.sig(), p.act.name()))
            .collect();
        let seed = self.seed.map_or(String::new(), |s| format!(", seed {s:?}"));
        format!("{}, returns {}{seed}: {}", self.mode.name(), self.ret.name(), params.join(", "))
    }
}

/// The stream of program `index` under `seed`.
fn stream(seed: u64, index: usize) -> SplitMix64 {
    let mut mix = SplitMix64::new(seed ^ (index as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    SplitMix64::new(mix.next_u64())
}

/// Programs `0..count` of `seed`.
pub fn generate(seed: u64, count: usize) -> Vec<Program> {
    (0..count).map(|i| program(seed, i)).collect()
}

/// Program `index` of `seed`.
pub fn program(seed: u64, index: usize) -> Program {
    let mut rng = stream(seed, index);
    let invalid = index % 12 == INVALID_AT;
    let mode = match rng.below(100) {
        _ if invalid => rng.pick(&[Mode::Reverse, Mode::Forward]),
        0..45 => Mode::Reverse,
        45..78 => Mode::Forward,
        _ => Mode::ForwardOverReverse,
    };
    let ret = if rng.chance(70) { Ret::Scalar } else { Ret::Out };
    let seed_value = match (mode, ret) {
        (Mode::Forward, _) | (_, Ret::Out) => None,
        _ => Some(rng.pick(&[1.0, 1.0, 2.5, -0.75])),
    };
    let n = 1 + rng.below(3);
    let mut params: Vec<Param> = (0..n).map(|_| draw_param(&mut rng, mode)).collect();
    if !params.iter().any(|p| p.act != Act::Const) {
        // Something must be differentiated: activate one that can be, or make the last one an `f64`.
        match params.iter_mut().find(|p| mode == Mode::Forward || p.ty.is_ref() || p.ty.is_scalar())
        {
            Some(p) => p.act = active_act(mode, p.ty),
            None => {
                let last = params.last_mut().expect("at least one parameter");
                *last = Param {
                    ty: Ty::F64,
                    act: active_act(mode, Ty::F64),
                    data: last.data[..1].to_vec(),
                    tangent: last.tangent[..1].to_vec(),
                    rows: Vec::new(),
                    variant_b: false,
                    read: 0,
                };
            }
        }
    }
    let invalid = invalid.then(|| make_invalid(&mut rng, mode, &mut params));
    let mut prog = Program {
        id: format!("p{index:03}"),
        mode,
        ret,
        seed: seed_value,
        params,
        invalid,
        source: String::new(),
    };
    let combine = draw_combination(&mut rng, prog.params.len());
    prog.source = render(&prog, seed, index, &combine);
    prog
}

/// The activity that differentiates a parameter of type `ty` in `mode`.
fn active_act(mode: Mode, ty: Ty) -> Act {
    match mode {
        Mode::Forward => Act::Dual,
        _ if ty.is_ref() => Act::Duplicated,
        _ => Act::Active,
    }
}

fn draw_param(rng: &mut SplitMix64, mode: Mode) -> Param {
    let ty = rng.pick(&TYS);
    let can_differentiate = mode == Mode::Forward || ty.is_ref() || ty.is_scalar();
    let act = if can_differentiate && rng.chance(70) { active_act(mode, ty) } else { Act::Const };
    let rows = match ty {
        Ty::Slice | Ty::VecRef | Ty::Holder => vec![2 + rng.below(4)],
        Ty::Nested => (0..2 + rng.below(2)).map(|_| 1 + rng.below(3)).collect(),
        _ => Vec::new(),
    };
    let slots = match ty {
        Ty::F64 | Ty::F32 | Ty::Opt | Ty::Enum | Ty::BoxRef => 1,
        Ty::Pair | Ty::PairRef | Ty::Tuple => 2,
        Ty::Arr3 | Ty::ArrRef => 3,
        Ty::Slice | Ty::VecRef | Ty::Nested => rows.iter().sum(),
        Ty::Holder => rows[0] + 1,
    };
    let data = (0..slots).map(|_| rng.dyadic(64)).collect();
    let tangent = (0..slots).map(|_| rng.dyadic(16)).collect();
    let variant_b = rng.chance(50);
    let read = rng.below(5);
    Param { ty, act, data, tangent, rows, variant_b, read }
}

/// Give one parameter an activity rustc must reject; returns `(kind, detail)`.
fn make_invalid(rng: &mut SplitMix64, mode: Mode, params: &mut [Param]) -> (String, String) {
    let k = rng.below(params.len());
    let p = &mut params[k];
    let (act, kind) = match mode {
        Mode::Forward if rng.chance(50) => (Act::Active, "Active in forward mode"),
        Mode::Forward => (Act::Duplicated, "Duplicated in forward mode"),
        _ if rng.chance(30) => (Act::Dual, "Dual in reverse mode"),
        _ if p.ty.is_ref() => (Act::Active, "Active on a reference"),
        _ => (Act::Duplicated, "Duplicated on a value"),
    };
    p.act = act;
    (kind.to_string(), format!("x{k}: {} {}", p.ty.sig(), act.name()))
}

/// How the body combines the per-parameter values `a0..`: a term per parameter and a product
/// of each neighbouring pair.
fn draw_combination(rng: &mut SplitMix64, n: usize) -> Vec<String> {
    let mut terms = Vec::new();
    for k in 0..n {
        let c = rng.pick(&[0.5, 0.75, 1.25, -0.5]);
        terms.push(match rng.below(4) {
            0 => format!("{c:?} * a{k}"),
            1 => format!("({c:?} * a{k}).sin()"),
            2 => format!("(0.25 * a{k}).exp()"),
            _ => format!("{c:?} * a{k} * a{k}"),
        });
    }
    for k in 1..n {
        let c = rng.pick(&[0.5, 0.3, -0.4]);
        terms.push(match rng.below(2) {
            0 => format!("{c:?} * a{} * a{k}", k - 1),
            _ => format!("({c:?} * a{} * a{k}).cos()", k - 1),
        });
    }
    terms
}

/// Statements that read parameter `x{k}` into `a{k}: f64`.
fn read_param(k: usize, p: &Param) -> String {
    let x = format!("x{k}");
    let a = format!("a{k}");
    let slice_loop = |x: &str| match p.read {
        0 => format!(
            "    let mut {a}: f64 = 0.0;\n    for (i, v) in {x}.iter().enumerate() {{\n        \
             {a} += v * v * (0.5 + 0.125 * i as f64);\n    }}\n"
        ),
        1 => format!(
            "    let mut {a}: f64 = 0.0;\n    for v in {x}.iter() {{\n        let v = *v;\n        \
             {a} += (0.7 * v).sin() + 0.5 * v;\n    }}\n"
        ),
        2 => format!(
            "    let mut {a}: f64 = 0.0;\n    for i in 0..{x}.len() {{\n        \
             {a} += {x}[i] * 0.4 + 0.2 * (0.5 * {x}[i]).exp();\n    }}\n"
        ),
        3 => format!(
            "    let mut {a}: f64 = {x}[0];\n    for i in 1..{x}.len() {{\n        \
             {a} += {x}[i - 1] * {x}[i];\n    }}\n"
        ),
        _ => format!(
            "    let mut {a}: f64 = 1.0;\n    for v in {x}.iter() {{\n        \
             {a} *= 1.0 + 0.3 * v;\n    }}\n"
        ),
    };
    match p.ty {
        Ty::F64 => format!("    let {a}: f64 = {x};\n"),
        Ty::F32 => format!("    let {a}: f64 = {x} as f64;\n"),
        Ty::Arr3 | Ty::ArrRef | Ty::Slice | Ty::VecRef => slice_loop(&x),
        Ty::Pair | Ty::PairRef => format!("    let {a}: f64 = {x}.a * {x}.b + 0.5 * {x}.a;\n"),
        Ty::Holder => format!(
            "    let mut {a}: f64 = {x}.c;\n    for v in {x}.v.iter() {{\n        \
             {a} += v * {x}.c + 0.25 * v * v;\n    }}\n"
        ),
        Ty::Nested => format!(
            "    let mut {a}: f64 = 0.0;\n    for (r, row) in {x}.iter().enumerate() {{\n        \
             for v in row.iter() {{\n            {a} += (r as f64 + 1.0) * 0.5 * v * v + 0.1 * v;\n        \
             }}\n    }}\n"
        ),
        Ty::Opt => format!(
            "    let {a}: f64 = match {x} {{\n        Some(v) => v * v + 0.5 * v,\n        \
             None => 0.0,\n    }};\n"
        ),
        Ty::Enum => format!(
            "    let {a}: f64 = match {x} {{\n        E2::A(v) => (0.8 * v).sin() + v,\n        \
             E2::B(v) => 0.5 * v * v - v,\n    }};\n"
        ),
        Ty::Tuple => format!("    let {a}: f64 = {x}.0 * {x}.1 + 0.3 * {x}.1;\n"),
        Ty::BoxRef => format!("    let {a}: f64 = **{x} * 1.5 + (**{x} * 0.5).sin();\n"),
    }
}

/// `fn make_k(v: &[f64]) -> Owned`, `fn flat_k(x: &Owned) -> Vec<f64>` and, for shadows read
/// inside `g`, `fn wsum_k(x: &Owned) -> f64` (a weighted sum of the flat data).
fn helpers(k: usize, p: &Param, wsum: bool) -> String {
    let owned = p.ty.owned();
    let (make, flat) = match p.ty {
        Ty::F64 => ("v[0]".to_string(), "vec![*x]".to_string()),
        Ty::F32 => ("v[0] as f32".into(), "vec![*x as f64]".into()),
        Ty::Arr3 | Ty::ArrRef => ("[v[0], v[1], v[2]]".into(), "x.to_vec()".into()),
        Ty::Slice | Ty::VecRef => ("v.to_vec()".into(), "x.clone()".into()),
        Ty::Pair | Ty::PairRef => ("P2 { a: v[0], b: v[1] }".into(), "vec![x.a, x.b]".into()),
        Ty::Holder => {
            let n = p.rows[0];
            (
                format!("Sv {{ v: v[..{n}].to_vec(), c: v[{n}] }}"),
                "let mut f = x.v.clone();\n    f.push(x.c);\n    f".into(),
            )
        }
        Ty::Nested => {
            let mut start = 0;
            let rows: Vec<String> = p
                .rows
                .iter()
                .map(|len| {
                    let r = format!("v[{start}..{}].to_vec()", start + len);
                    start += len;
                    r
                })
                .collect();
            (format!("vec![{}]", rows.join(", ")), "x.concat()".into())
        }
        Ty::Opt => ("Some(v[0])".into(), "x.iter().copied().collect()".into()),
        Ty::Enum => (
            format!("E2::{}(v[0])", if p.variant_b { "B" } else { "A" }),
            "match x {\n        E2::A(v) | E2::B(v) => vec![*v],\n    }".into(),
        ),
        Ty::Tuple => ("(v[0], v[1])".into(), "vec![x.0, x.1]".into()),
        Ty::BoxRef => ("Box::new(v[0])".into(), "vec![**x]".into()),
    };
    let mut s = format!(
        "fn make_{k}(v: &[f64]) -> {owned} {{\n    {make}\n}}\n\n\
         fn flat_{k}(x: &{owned}) -> Vec<f64> {{\n    {flat}\n}}\n\n"
    );
    if wsum {
        // Without allocating: `g` is differentiated, and reads the shadows with these.
        let body = match p.ty {
            Ty::F64 => "*x".to_string(),
            Ty::F32 => "*x as f64".into(),
            Ty::Arr3 | Ty::ArrRef | Ty::Slice | Ty::VecRef => "let mut s: f64 = 0.0;\n    \
                 for (i, v) in x.iter().enumerate() {\n        s += v * (0.5 + 0.25 * i as f64);\n    \
                 }\n    s"
                .into(),
            Ty::Pair | Ty::PairRef => "0.5 * x.a - 0.75 * x.b".into(),
            Ty::Holder => "let mut s: f64 = 0.25 * x.c;\n    for (i, v) in x.v.iter().enumerate() \
                 {\n        s += v * (0.5 + 0.25 * i as f64);\n    }\n    s"
                .into(),
            Ty::Nested => "let mut s: f64 = 0.0;\n    for (r, row) in x.iter().enumerate() {\n        \
                 for v in row.iter() {\n            s += v * (0.5 + 0.25 * r as f64);\n        }\n    \
                 }\n    s"
                .into(),
            Ty::Opt => "x.unwrap_or(0.0)".into(),
            Ty::Enum => "match x {\n        E2::A(v) | E2::B(v) => *v,\n    }".into(),
            Ty::Tuple => "x.0 - 0.5 * x.1".into(),
            Ty::BoxRef => "**x".into(),
        };
        let _ = write!(s, "fn wsum_{k}(x: &{owned}) -> f64 {{\n    {body}\n}}\n\n");
    }
    s
}

/// `[a, b, c]` with every float written as a Rust literal.
fn array(values: &[f64]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", items.join(", "))
}

/// `let PAT = CALL;` for a call returning `names` (nothing: `CALL;`; one: no tuple).
fn bind(names: &[String], call: &str) -> String {
    match names.len() {
        0 => format!("{call};"),
        1 => format!("let {} = {call};", names[0]),
        _ => format!("let ({}) = {call};", names.join(", ")),
    }
}

fn render(prog: &Program, seed: u64, index: usize, combine: &[String]) -> String {
    let ps = &prog.params;
    let mut s = String::new();
    let _ = writeln!(s, "//! Generated by `cargo xtask sweep --seed {seed}` (program {index}).");
    let _ = writeln!(s, "//! {}", prog.summary());
    match &prog.invalid {
        Some((kind, detail)) => {
            let _ = writeln!(s, "//! Invalid ({kind}: {detail}): rustc should reject it.");
        }
        None => {
            let _ = writeln!(
                s,
                "//! Checks the derivative against central finite differences of the primal \
                 and that no Const argument changes; prints `ok`, or the mismatches and exits \
                 with status 3."
            );
        }
    }
    s.push_str(
        "\n#![feature(autodiff)]\n#![allow(dead_code, unused_imports, unused_mut, unused_variables)]\n\n\
         use std::autodiff::{autodiff_forward, autodiff_reverse};\n\n",
    );
    let uses = |t: &[Ty]| ps.iter().any(|p| t.contains(&p.ty));
    if uses(&[Ty::Pair, Ty::PairRef]) {
        s.push_str("#[derive(Clone, Copy, Debug)]\nstruct P2 {\n    a: f64,\n    b: f64,\n}\n\n");
    }
    if uses(&[Ty::Holder]) {
        s.push_str("#[derive(Clone, Debug)]\nstruct Sv {\n    v: Vec<f64>,\n    c: f64,\n}\n\n");
    }
    if uses(&[Ty::Enum]) {
        s.push_str("#[derive(Clone, Copy, Debug)]\nenum E2 {\n    A(f64),\n    B(f64),\n}\n\n");
    }

    // f: the differentiated function.
    let out = prog.ret == Ret::Out;
    let f_mode = if prog.mode == Mode::Forward { "forward" } else { "reverse" };
    let mut acts: Vec<&str> = ps.iter().map(|p| p.act.name()).collect();
    match (prog.mode, prog.ret) {
        (Mode::Forward, Ret::Out) => acts.push("Dual"),
        (Mode::Forward, Ret::Scalar) => acts.push("Dual"),
        (_, Ret::Out) => acts.push("Duplicated"),
        (_, Ret::Scalar) => acts.push("Active"),
    }
    let mut sig: Vec<String> =
        ps.iter().enumerate().map(|(k, p)| format!("x{k}: {}", p.ty.sig())).collect();
    if out {
        sig.push("out: &mut f64".into());
    }
    let ret_ty = if out { "" } else { " -> f64" };
    let _ = writeln!(s, "#[autodiff_{f_mode}(d_f, {})]", acts.join(", "));
    let _ = writeln!(s, "fn f({}){ret_ty} {{", sig.join(", "));
    for (k, p) in ps.iter().enumerate() {
        s.push_str(&read_param(k, p));
    }
    let _ = writeln!(s, "    let r: f64 = {};", combine.join(" + "));
    s.push_str(if out { "    *out = r;\n}\n\n" } else { "    r\n}\n\n" });

    // The reverse call of `f` from `g` (forward over reverse) or from `main`: its arguments
    // with `pass(k)` for the primal and `shadow(k)` for a Duplicated shadow, and the names
    // bound to what it returns.
    let rev_call =
        |pass: &dyn Fn(usize) -> String, shadow: &dyn Fn(usize) -> String, o: (&str, &str)| {
            let mut args = Vec::new();
            let mut names = Vec::new();
            if !out {
                names.push("y".to_string());
            }
            for (k, p) in ps.iter().enumerate() {
                args.push(pass(k));
                match p.act {
                    Act::Duplicated => args.push(shadow(k)),
                    Act::Active => names.push(format!("g{k}")),
                    _ => {}
                }
            }
            if out {
                args.push(format!("&mut {}", o.0));
                args.push(format!("&mut {}", o.1));
            } else {
                args.push("SEED".into());
            }
            (format!("d_f({})", args.join(", ")), names)
        };

    if prog.mode == Mode::ForwardOverReverse && prog.invalid.is_none() {
        // g: a function of the same parameters that calls f's gradient; differentiated forward.
        let mut gacts: Vec<&str> = ps.iter().map(|p| p.outer_act().name()).collect();
        gacts.push("Dual");
        let _ = writeln!(s, "#[autodiff_forward(d_g, {})]", gacts.join(", "));
        let _ = writeln!(s, "fn g({}){ret_ty} {{", sig.join(", "));
        for (k, p) in ps.iter().enumerate() {
            if p.act == Act::Duplicated {
                let _ = writeln!(s, "    let mut d{k} = make_{k}(&[0.0; {}]);", p.slots());
            }
        }
        if out {
            s.push_str("    let mut o: f64 = 0.0;\n    let mut od: f64 = 1.0;\n");
        }
        let (call, names) =
            rev_call(&|k| format!("x{k}"), &|k| ps[k].ty.pass_mut(&format!("d{k}")), ("o", "od"));
        let _ = writeln!(s, "    {}", bind(&names, &call));
        let _ = writeln!(s, "    let mut r: f64 = 0.25 * {};", if out { "o" } else { "y" });
        for (k, p) in ps.iter().enumerate() {
            let c = [0.7, -0.4, 1.1][k % 3];
            match p.act {
                Act::Duplicated => {
                    let _ = writeln!(s, "    r += {c:?} * wsum_{k}(&d{k});");
                }
                Act::Active => {
                    let _ = writeln!(s, "    r += {c:?} * (g{k} as f64);");
                }
                _ => {}
            }
        }
        s.push_str(if out { "    *out = r;\n}\n\n" } else { "    r\n}\n\n" });
    }

    for (k, p) in ps.iter().enumerate() {
        let wsum = prog.mode == Mode::ForwardOverReverse && p.act == Act::Duplicated;
        s.push_str(&helpers(k, p, wsum));
    }

    if let Some((kind, _)) = &prog.invalid {
        let _ = write!(
            s,
            "fn main() {{\n    // Expected: rustc rejects the activities ({kind}).\n    \
             std::hint::black_box(d_f as *const ());\n    println!(\"compiled\");\n}}\n"
        );
        return s;
    }

    for (k, p) in ps.iter().enumerate() {
        let _ = writeln!(s, "const V{k}: [f64; {}] = {};", p.slots(), array(&p.data));
    }
    let reverse = prog.mode != Mode::Forward;
    let forward = prog.mode != Mode::Reverse;
    // The parameters whose data the forward-mode derivative is taken along.
    let dual = |p: &Param| match prog.mode {
        Mode::Forward => p.act == Act::Dual,
        _ => p.act != Act::Const,
    };
    if forward {
        for (k, p) in ps.iter().enumerate().filter(|(_, p)| dual(p)) {
            let _ = writeln!(s, "const T{k}: [f64; {}] = {};", p.slots(), array(&p.tangent));
        }
    }
    if let Some(seed) = prog.seed {
        let _ = writeln!(s, "const SEED: f64 = {seed:?};");
    }
    let step = |p: &Param| if p.ty == Ty::F32 { STEP_F32 } else { STEP_F64 };
    if reverse {
        let steps: Vec<f64> = ps.iter().map(step).collect();
        let _ = writeln!(s, "const STEPS: [f64; {}] = {};", ps.len(), array(&steps));
    }
    if forward {
        let h = ps.iter().filter(|p| dual(p)).map(step).fold(STEP_F64, f64::max);
        let _ = writeln!(s, "const H: f64 = {h:?};");
    }
    let _ = writeln!(s, "const TOLERANCE: f64 = {TOLERANCE:?};\n");

    // eval_f, eval_g: the primals at flat data `v`.
    let primals: &[&str] = if prog.mode == Mode::ForwardOverReverse { &["f", "g"] } else { &["f"] };
    for primal in primals {
        let _ = writeln!(s, "fn eval_{primal}(v: &[Vec<f64>]) -> f64 {{");
        for k in 0..ps.len() {
            let _ = writeln!(s, "    let p{k} = make_{k}(&v[{k}]);");
        }
        let mut args: Vec<String> =
            ps.iter().enumerate().map(|(k, p)| p.ty.pass(&format!("p{k}"))).collect();
        if out {
            args.push("&mut out".into());
            let _ = write!(
                s,
                "    let mut out = 0.0;\n    {primal}({});\n    out\n}}\n\n",
                args.join(", ")
            );
        } else {
            let _ = write!(s, "    {primal}({})\n}}\n\n", args.join(", "));
        }
    }
    s.push_str(
        "fn close(got: f64, want: f64) -> bool {\n    \
         (got - want).abs() <= TOLERANCE * got.abs().max(want.abs()).max(1.0)\n}\n\n",
    );

    s.push_str("fn main() {\n    let mut bad: Vec<String> = Vec::new();\n");
    let bases: Vec<String> = (0..ps.len()).map(|k| format!("V{k}.to_vec()")).collect();
    let _ = writeln!(s, "    let base: Vec<Vec<f64>> = vec![{}];", bases.join(", "));
    // Each check in a block of its own: set up the arguments, call the derivative, check that
    // the Const arguments did not change and that the primal result is right.
    let open_block = |s: &mut String, what: &str| {
        let _ = writeln!(s, "    // {what}\n    {{");
        for (k, p) in ps.iter().enumerate() {
            let _ = writeln!(s, "        let p{k} = make_{k}(&base[{k}]);");
            if p.act == Act::Const {
                let _ = writeln!(s, "        let c{k} = flat_{k}(&p{k});");
            }
        }
    };
    let after_call = |s: &mut String, primal: &str, label: &str| {
        for (k, _) in ps.iter().enumerate().filter(|(_, p)| p.act == Act::Const) {
            let _ = writeln!(
                s,
                "        if flat_{k}(&p{k}) != c{k} {{\n            \
                 bad.push(format!(\"{label}: Const argument x{k} changed: {{:?}} -> {{:?}}\", c{k}, flat_{k}(&p{k})));\n        }}"
            );
        }
        let _ = write!(
            s,
            "        let want = eval_{primal}(&base);\n        if !close(y, want) {{\n            \
             bad.push(format!(\"{label}: primal: the derivative returned {{y:e}}, the function {{want:e}}\"));\n        }}\n"
        );
    };
    if reverse {
        open_block(&mut s, "The reverse-mode gradient of f against finite differences of f.");
        for (k, p) in ps.iter().enumerate().filter(|(_, p)| p.act == Act::Duplicated) {
            let _ = writeln!(s, "        let mut d{k} = make_{k}(&[0.0; {}]);", p.slots());
        }
        if out {
            s.push_str("        let mut out: f64 = 0.0;\n        let mut dout: f64 = 1.0;\n");
        }
        let (call, names) = rev_call(
            &|k| ps[k].ty.pass(&format!("p{k}")),
            &|k| ps[k].ty.pass_mut(&format!("d{k}")),
            ("out", "dout"),
        );
        let _ = writeln!(s, "        {}", bind(&names, &call));
        if out {
            s.push_str("        let y = out;\n");
        }
        after_call(&mut s, "f", "d_f");
        s.push_str("        let mut grads: Vec<(usize, usize, f64)> = Vec::new();\n");
        for (k, p) in ps.iter().enumerate() {
            match p.act {
                Act::Duplicated => {
                    let _ = writeln!(
                        s,
                        "        for (j, g) in flat_{k}(&d{k}).into_iter().enumerate() {{\n            \
                         grads.push(({k}, j, g));\n        }}"
                    );
                }
                Act::Active => {
                    let _ = writeln!(s, "        grads.push(({k}, 0, g{k} as f64));");
                }
                _ => {}
            }
        }
        let seed = if out { "1.0" } else { "SEED" };
        let _ = write!(
            s,
            "        for (k, j, g) in grads {{\n            \
             let (mut plus, mut minus) = (base.clone(), base.clone());\n            \
             plus[k][j] += STEPS[k];\n            minus[k][j] -= STEPS[k];\n            \
             let fd = {seed} * (eval_f(&plus) - eval_f(&minus)) / (2.0 * STEPS[k]);\n            \
             if !close(g, fd) {{\n                \
             bad.push(format!(\"d_f: d/dx{{k}}[{{j}}]: autodiff {{g:e}}, finite differences {{fd:e}}\"));\n            \
             }}\n        }}\n    }}\n"
        );
    }
    if forward {
        let (d, primal) =
            if prog.mode == Mode::ForwardOverReverse { ("d_g", "g") } else { ("d_f", "f") };
        open_block(
            &mut s,
            &format!(
                "The forward-mode derivative of {primal} against finite differences of {primal}."
            ),
        );
        let mut args = Vec::new();
        let mut dirs = Vec::new();
        for (k, p) in ps.iter().enumerate() {
            args.push(p.ty.pass(&format!("p{k}")));
            if dual(p) {
                let _ = writeln!(s, "        let t{k} = make_{k}(&T{k});");
                args.push(p.ty.pass(&format!("t{k}")));
                dirs.push(format!("flat_{k}(&t{k})"));
            } else {
                dirs.push(format!("vec![0.0; {}]", p.slots()));
            }
        }
        let _ = writeln!(s, "        let dir: Vec<Vec<f64>> = vec![{}];", dirs.join(", "));
        if out {
            s.push_str("        let mut out: f64 = 0.0;\n        let mut tout: f64 = 0.0;\n");
            args.push("&mut out".into());
            args.push("&mut tout".into());
            let _ = writeln!(
                s,
                "        {d}({});\n        let (y, dy) = (out, tout);",
                args.join(", ")
            );
        } else {
            let _ = writeln!(s, "        let (y, dy) = {d}({});", args.join(", "));
        }
        after_call(&mut s, primal, d);
        let _ = write!(
            s,
            "        let shifted = |sign: f64| -> Vec<Vec<f64>> {{\n            \
             base.iter()\n                .zip(&dir)\n                \
             .map(|(b, t)| b.iter().zip(t).map(|(b, t)| b + sign * H * t).collect())\n                \
             .collect()\n        }};\n        \
             let fd = (eval_{primal}(&shifted(1.0)) - eval_{primal}(&shifted(-1.0))) / (2.0 * H);\n        \
             if !close(dy, fd) {{\n            \
             bad.push(format!(\"{d}: tangent: autodiff {{dy:e}}, finite differences {{fd:e}}\"));\n        \
             }}\n    }}\n"
        );
    }
    s.push_str(
        "    if bad.is_empty() {\n        println!(\"ok\");\n    } else {\n        \
         for b in &bad {\n            println!(\"{b}\");\n        }\n        \
         std::process::exit(3);\n    }\n}\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // The first outputs of splitmix64 seeded with 1234567 (the reference implementation).
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn same_seed_same_programs() {
        let a = generate(7, 30);
        assert_eq!(a, generate(7, 30));
        assert_eq!(generate(7, 10), a[..10], "a smaller count is a prefix");
        let b = generate(8, 30);
        assert_ne!(
            a.iter().map(|p| &p.source).collect::<Vec<_>>(),
            b.iter().map(|p| &p.source).collect::<Vec<_>>()
        );
    }

    #[test]
    fn programs_look_like_rust() {
        for p in generate(1, 200) {
            let s = &p.source;
            assert!(s.contains("#[autodiff_") && s.contains("fn main()"), "{}", p.id);
            assert!(s.contains("#![feature(autodiff)]"), "{}", p.id);
            let opens = s.matches(['(', '[', '{']).count();
            let closes = s.matches([')', ']', '}']).count();
            assert_eq!(opens, closes, "unbalanced brackets in {}:\n{s}", p.id);
            assert!((1..=3).contains(&p.params.len()), "{}", p.id);
            if p.invalid.is_none() {
                assert!(s.contains("eval_f(") && s.contains("close("), "{}", p.id);
                assert!(p.params.iter().any(|q| q.act != Act::Const), "{}", p.id);
                if p.mode == Mode::ForwardOverReverse {
                    assert!(s.contains("#[autodiff_forward(d_g,") && s.contains("d_f("));
                }
            } else {
                assert!(s.contains("d_f as *const ()"), "{}", p.id);
            }
        }
    }

    #[test]
    fn activities_follow_the_rules() {
        let progs = generate(3, 300);
        let mut invalid = 0;
        for p in &progs {
            let valid_for = |q: &Param| match p.mode {
                Mode::Forward => matches!(q.act, Act::Const | Act::Dual),
                _ => match q.act {
                    Act::Const => true,
                    Act::Active => q.ty.is_scalar(),
                    Act::Duplicated => q.ty.is_ref(),
                    Act::Dual => false,
                },
            };
            let bad = p.params.iter().filter(|q| !valid_for(q)).count();
            match p.invalid {
                Some(_) => {
                    invalid += 1;
                    assert_eq!(bad, 1, "{}: {}", p.id, p.summary());
                }
                None => assert_eq!(bad, 0, "{}: {}", p.id, p.summary()),
            }
            assert_eq!(p.seed.is_some(), p.mode != Mode::Forward && p.ret == Ret::Scalar);
            for q in &p.params {
                assert!(q.data.iter().chain(&q.tangent).all(|v| v.abs() <= 1.0));
                assert_eq!(q.data.len(), q.tangent.len());
            }
        }
        assert_eq!(invalid, 25, "one in twelve of 300");
        let modes = |m: Mode| progs.iter().filter(|p| p.mode == m).count();
        assert!(modes(Mode::Reverse) > 50 && modes(Mode::Forward) > 50);
        assert!(modes(Mode::ForwardOverReverse) > 20);
        for t in TYS {
            assert!(progs.iter().any(|p| p.params.iter().any(|q| q.ty == t)), "{t:?} never drawn");
        }
    }

    #[test]
    fn calling_convention_of_a_reverse_program() {
        // Find a reverse program with a Duplicated slice and an Active scalar, and check the call.
        let p = (0..50_000)
            .map(|i| program(11, i))
            .find(|p| {
                p.mode == Mode::Reverse
                    && p.invalid.is_none()
                    && p.ret == Ret::Scalar
                    && p.params.len() == 2
                    && p.params[0].ty == Ty::Slice
                    && p.params[0].act == Act::Duplicated
                    && p.params[1].ty == Ty::F64
                    && p.params[1].act == Act::Active
            })
            .expect("no such program in the first 50000");
        assert!(
            p.source.contains("#[autodiff_reverse(d_f, Duplicated, Active, Active)]"),
            "{}",
            p.source
        );
        assert!(p.source.contains("fn f(x0: &[f64], x1: f64) -> f64 {"), "{}", p.source);
        assert!(
            p.source.contains("        let (y, g1) = d_f(&p0[..], &mut d0[..], p1, SEED);\n"),
            "{}",
            p.source
        );
    }
}
