//! `side-by-side --scaling`: the SSO code flow at 1, 8, 32 and 128 concurrent clients against
//! both peers, as a table and two SVG plots (complete flows/s and p99 over concurrency), written
//! to `scaling.{md,json}`, `scaling-throughput.svg` and `scaling-p99.svg`; then our refresh
//! grant with the refresh-token table as the sweep left it and with a million more rows.
#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::{fmt::Write as _, path::Path};

use sea_orm::{ConnectionTrait as _, DbBackend, Statement};
use serde_json::json;

use super::Measured;

/// The concurrencies of the sweep (`--smoke`: the first two).
pub(super) const CONCURRENCIES: [usize; 4] = [1, 8, 32, 128];

/// One concurrency's figures for both peers.
pub(super) struct Step {
    pub(super) concurrency: usize,
    pub(super) ours: Measured,
    pub(super) peer: Option<Measured>,
}

/// Our refresh grant with `rows` refresh tokens stored.
pub(super) struct Stored {
    pub(super) rows: u64,
    pub(super) measured: Measured,
}

/// Adds `count` refresh tokens to our database in one statement: copies of a stored one (the
/// sweep's flows left thousands) under random 43-character hashes, as real ones are keyed, and
/// in families of their own. Nobody can present them; they are the weight of a table that
/// holds a million citizens' tokens.
pub(super) async fn store_refresh_tokens(database_url: &str, count: u64) -> anyhow::Result<()> {
    let database = sea_orm::Database::connect(database_url).await?;
    let backend = database.get_database_backend();
    let random_hash = match backend {
        DbBackend::Postgres => "substr(md5(random()::text) || md5(random()::text), 1, 43)",
        _ => "substr(hex(randomblob(22)), 1, 43)",
    };
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
         INSERT INTO refresh_tokens (token_hash, family_id, environment, client_id, account_id, \"grant\", created_at, expires_at) \
         SELECT {random_hash}, {random_hash}, t.environment, t.client_id, t.account_id, t.\"grant\", t.created_at, t.expires_at \
         FROM n, (SELECT * FROM refresh_tokens LIMIT 1) t"
    );
    let inserted = database.execute(Statement::from_string(backend, sql)).await?.rows_affected();
    anyhow::ensure!(inserted == count, "stored {inserted} of {count} refresh tokens (none to copy?)");
    if backend == DbBackend::Postgres {
        // What autovacuum would do in the next minute anyway; done now, so that its work does
        // not run during the measurement and the planner knows the table's new size.
        database.execute(Statement::from_string(backend, "VACUUM ANALYZE refresh_tokens")).await?;
    }
    database.close().await?;
    Ok(())
}

/// How many refresh tokens our database holds.
pub(super) async fn refresh_token_rows(database_url: &str) -> anyhow::Result<u64> {
    let database = sea_orm::Database::connect(database_url).await?;
    let backend = database.get_database_backend();
    let row = database
        .query_one(Statement::from_string(backend, "SELECT COUNT(*) AS n FROM refresh_tokens"))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no count"))?;
    let rows: i64 = row.try_get("", "n")?;
    database.close().await?;
    Ok(u64::try_from(rows)?)
}

/// Writes the sweep's tables and plots to `out` and prints the tables.
pub(super) fn write(steps: &[Step], stored: &[Stored], out: &Path, heading: &str) -> anyhow::Result<()> {
    let mut md = format!("## How cost grows: SSO code flow by concurrency\n\n{heading}\n\n");
    md.push_str("| concurrent clients | ours flows/s | peer flows/s | ours/peer | ours p99 ms | peer p99 ms | server CPU ms/flow ours/peer |\n");
    md.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut rows = Vec::new();
    for step in steps {
        let (ours, peer) = (&step.ours, step.peer.as_ref());
        let ours_rate = ours.outcome.sample.rate();
        let peer_rate = peer.map(|p| p.outcome.sample.rate());
        writeln!(
            md,
            "| {} | {:.0} | {} | {} | {:.2} | {} | {:.3}/{} |",
            step.concurrency,
            ours_rate,
            peer_rate.map_or_else(|| "–".to_owned(), |r| format!("{r:.0}")),
            peer_rate.map_or_else(|| "–".to_owned(), |r| format!("{:.2}×", ours_rate / r)),
            ours.outcome.sample.quantile_ms(0.99),
            peer.map_or_else(|| "–".to_owned(), |p| format!("{:.2}", p.outcome.sample.quantile_ms(0.99))),
            ours.server_ms_per_request(),
            peer.map_or_else(|| "–".to_owned(), |p| format!("{:.3}", p.server_ms_per_request())),
        )?;
        rows.push(json!({
            "concurrency": step.concurrency,
            "servicekonto": ours.json(),
            "oidc_provider": peer.map(Measured::json),
        }));
    }
    md.push_str("\n![complete SSO flows per second by concurrency](scaling-throughput.svg)\n");
    md.push_str("![p99 of a complete SSO flow by concurrency](scaling-p99.svg)\n");
    md.push_str("\n## Our refresh grant by stored refresh tokens\n\n");
    md.push_str("| refresh tokens stored | grants/s | p50 ms | p99 ms | server CPU ms/grant | errors |\n|---:|---:|---:|---:|---:|---:|\n");
    let mut by_rows = Vec::new();
    for Stored { rows, measured } in stored {
        let sample = &measured.outcome.sample;
        writeln!(
            md,
            "| {rows} | {:.0} | {:.2} | {:.2} | {:.3} | {} |",
            sample.rate(),
            sample.quantile_ms(0.5),
            sample.quantile_ms(0.99),
            measured.server_ms_per_request(),
            sample.errors,
        )?;
        by_rows.push(json!({ "refresh_tokens_stored": rows, "servicekonto": measured.json() }));
    }
    println!("{md}");
    let series = |value: &dyn Fn(&Measured) -> f64| -> Vec<(&'static str, Vec<(usize, f64)>)> {
        let mut series = vec![("servicekonto", steps.iter().map(|s| (s.concurrency, value(&s.ours))).collect())];
        if steps.iter().all(|s| s.peer.is_some()) {
            series.push((
                "oidc-provider",
                steps.iter().filter_map(|s| Some((s.concurrency, value(s.peer.as_ref()?)))).collect(),
            ));
        }
        series
    };
    let levels: Vec<usize> = steps.iter().map(|s| s.concurrency).collect();
    let throughput = chart("Complete SSO flows per second", "flows/s", &levels, &series(&|m| m.outcome.sample.rate()));
    let p99 = chart("p99 of a complete SSO flow", "ms", &levels, &series(&|m| m.outcome.sample.quantile_ms(0.99)));
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("scaling.md"), md)?;
    let report = json!({ "sso_by_concurrency": rows, "refresh_by_stored_tokens": by_rows });
    std::fs::write(out.join("scaling.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(out.join("scaling-throughput.svg"), throughput)?;
    std::fs::write(out.join("scaling-p99.svg"), p99)?;
    Ok(())
}

/// A line chart over the concurrency `levels` (evenly spaced, as they grow by factors), y from
/// zero.
fn chart(title: &str, unit: &str, levels: &[usize], series: &[(&str, Vec<(usize, f64)>)]) -> String {
    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 360.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 150.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 50.0;
    let colours = ["#1f6feb", "#d1242f"];
    let max = series.iter().flat_map(|(_, points)| points.iter().map(|(_, y)| *y)).fold(0.0_f64, f64::max);
    let top = nice_ceiling(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| LEFT + plot_w * (i as f64) / (levels.len().saturating_sub(1).max(1) as f64);
    let y = |v: f64| TOP + plot_h * (1.0 - v / top);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"22\" font-size=\"15\">{title}</text>\n"
    );
    for tick in 0..=4 {
        let value = top * f64::from(tick) / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{value:.0}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            y(value) + 4.0,
            y = y(value),
        );
    }
    for (i, concurrency) in levels.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{concurrency}</text>",
            x(i),
            TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">concurrent clients</text>\
         <text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">{unit}</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
    );
    for (index, ((name, points), colour)) in series.iter().zip(colours).enumerate() {
        let path: Vec<String> = points
            .iter()
            .filter_map(|(c, v)| Some(format!("{:.1},{:.1}", x(levels.iter().position(|k| k == c)?), y(*v))))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        let legend_y = TOP + 20.0 * index as f64 + 10.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{legend_y:.1}\" y2=\"{legend_y:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">{name}</text>",
            WIDTH - RIGHT + 10.0,
            WIDTH - RIGHT + 30.0,
            WIDTH - RIGHT + 36.0,
            legend_y + 4.0,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `value`.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|f| f * magnitude).find(|c| *c >= value).unwrap_or(10.0 * magnitude)
}

#[cfg(test)]
mod tests {
    use super::{chart, nice_ceiling};

    #[test]
    fn the_axis_ends_at_a_round_value_above_the_largest() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(1234.0), 2000.0);
        assert_eq!(nice_ceiling(2000.0), 2000.0);
        assert_eq!(nice_ceiling(4100.0), 5000.0);
    }

    #[test]
    fn a_chart_draws_a_line_per_series() {
        let series = [("a", vec![(1, 10.0), (8, 20.0), (32, 30.0), (128, 25.0)]), ("b", vec![(1, 5.0), (8, 6.0)])];
        let svg = chart("title", "unit", &[1, 8, 32, 128], &series);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">a</text>") && svg.contains(">b</text>"));
    }
}
