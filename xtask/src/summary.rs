//! The final table of a run: one row per step with its result, test counts, duration and
//! log file; and the column alignment that commands' other tables share.

use std::path::PathBuf;
use std::time::Duration;

use crate::cmd::fmt_duration;
use crate::compiletest::Counts;

pub struct Row {
    pub step: String,
    pub result: String,
    pub counts: Option<Counts>,
    pub duration: Duration,
    pub log: Option<PathBuf>,
}

/// Render rows as an aligned text table.
pub fn render(rows: &[Row]) -> String {
    let header = ["step", "result", "pass/fail/ign", "time", "log"].map(String::from);
    let mut cells = vec![header.to_vec()];
    for r in rows {
        cells.push(vec![
            r.step.clone(),
            r.result.clone(),
            r.counts.map_or("-".into(), fmt_counts),
            fmt_duration(r.duration),
            r.log.as_ref().map_or("-".into(), |l| l.display().to_string()),
        ]);
    }
    table(&cells)
}

/// `passed/failed/ignored`.
pub fn fmt_counts(c: Counts) -> String {
    format!("{}/{}/{}", c.passed, c.failed, c.ignored)
}

/// Align `cells` (the first row is the header, every row has as many cells) in columns two
/// spaces apart, with a rule under the header.
pub fn table(cells: &[Vec<String>]) -> String {
    let columns = cells.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            cells.iter().filter_map(|c| c.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, row) in cells.iter().enumerate() {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    out
}

/// Run `f` as a step named `name`, recording its result and time (its log is the one that
/// commands with `.step(name)` write).
pub fn step<T>(
    rows: &mut Vec<Row>,
    name: &str,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let start = std::time::Instant::now();
    let result = f();
    rows.push(Row {
        step: name.to_string(),
        result: if result.is_ok() { "ok" } else { "FAILED" }.to_string(),
        counts: None,
        duration: start.elapsed(),
        log: crate::cmd::log_path(name)
            .filter(|l| l.exists())
            .or_else(crate::cmd::default_log_path),
    });
    result
}

pub fn print(rows: &[Row]) {
    if !rows.is_empty() {
        println!("\n{}", render(rows));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let rows = [
            Row {
                step: "build".into(),
                result: "ok".into(),
                counts: None,
                duration: Duration::from_secs(90),
                log: None,
            },
            Row {
                step: "tests/ui/autodiff".into(),
                result: "FAILED".into(),
                counts: Some(Counts { passed: 3, failed: 1, ignored: 0 }),
                duration: Duration::from_secs(5),
                log: Some("/l.log".into()),
            },
        ];
        let t = render(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].starts_with("build              ok      -              1m30s"), "{t}");
        assert!(lines[3].ends_with("3/1/0          5.0s   /l.log"), "{t}");
    }
}
