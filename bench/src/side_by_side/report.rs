//! The report: one table (printed, and as Markdown and JSON files) and the targets of the
//! benchmark issue as pass/miss lines.
#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Measured, Row, Run, scenarios::Scenario};

impl Measured {
    fn rate(&self) -> f64 {
        self.outcome.sample.rate()
    }

    fn p50(&self) -> f64 {
        self.outcome.sample.quantile_ms(0.5)
    }

    fn p99(&self) -> f64 {
        self.outcome.sample.quantile_ms(0.99)
    }

    /// Server CPU milliseconds per successful request.
    pub(super) fn server_ms_per_request(&self) -> f64 {
        self.outcome.cpu.server * 1000.0 / (self.outcome.sample.ok.max(1) as f64)
    }

    /// The generator's CPU use in % of one core.
    fn generator_load(&self) -> f64 {
        self.outcome.cpu.generator * 100.0 / self.outcome.sample.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The server's CPU use in % of one core (its pinned core when pinned).
    fn server_load(&self) -> f64 {
        self.outcome.cpu.server * 100.0 / self.outcome.sample.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    pub(super) fn json(&self) -> Value {
        let mut value = self.outcome.sample.json();
        value["server_cpu_ms_per_request"] = json!(self.server_ms_per_request());
        value["generator_cpu_percent_of_one_core"] = json!(self.generator_load());
        value["server_cpu_percent_of_one_core"] = json!(self.server_load());
        if let Some(front) = self.outcome.cpu.front {
            value["of_it_nginx_cpu_ms_per_request"] = json!(front * 1000.0 / self.outcome.sample.ok.max(1) as f64);
        }
        value["server_peak_rss_kib_so_far"] = json!(self.peak_rss_kib);
        value["first_error"] = json!(self.outcome.first_error);
        value
    }
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        Some(self.ours.as_ref()?.rate() / self.peer.as_ref()?.rate())
    }

    /// How much more the peer's server spends per request than ours: the capacity ratio, which
    /// holds even when the load generator, not the server, limited the throughput.
    fn cpu_ratio(&self) -> Option<f64> {
        Some(self.peer.as_ref()?.server_ms_per_request() / self.ours.as_ref()?.server_ms_per_request())
    }

    /// Whether the load generator used (nearly) its whole core against us while our server did
    /// not: then our throughput is the generator's limit, not the server's.
    fn generator_bound(&self) -> bool {
        self.ours.as_ref().is_some_and(|m| m.generator_load() >= 90.0 && m.server_load() < 90.0)
    }

    /// What a target's line says about a (nearly) full core: the generator's alone, or ours
    /// too (then the throughput is our capacity and the ratio is the servers').
    fn saturation(&self) -> &'static str {
        if self.generator_bound() {
            "; the generator's core was saturated, so this is its limit, not ours"
        } else if self.ours.as_ref().is_some_and(|m| m.generator_load() >= 90.0) {
            "; the generator's core and ours were both saturated, so this is our capacity"
        } else {
            ""
        }
    }

    /// For a static document: the peer's server CPU per request over that of the cheapest answer
    /// measured on this machine — nginx's static file or ours, whichever cost less: no server
    /// measured here was further ahead of the peer by CPU per request.
    fn ceiling(&self) -> Option<f64> {
        let cheapest = self.floor.as_ref()?.server_ms_per_request().min(self.ours.as_ref()?.server_ms_per_request());
        Some(self.peer.as_ref()?.server_ms_per_request() / cheapest)
    }

    /// The target line's note on the ceiling, when nginx served the same bytes.
    fn ceiling_note(&self) -> String {
        match (self.floor.as_ref(), self.ceiling()) {
            (Some(floor), Some(ceiling)) => format!(
                "; nginx serving the same bytes as a static file needs {:.3} ms of CPU per request, so the cheapest answer measured here is {ceiling:.2}× cheaper than the peer's, the ceiling on this machine",
                floor.server_ms_per_request()
            ),
            _ => String::new(),
        }
    }

    fn p99_ratio(&self) -> Option<f64> {
        Some(self.ours.as_ref()?.p99() / self.peer.as_ref()?.p99())
    }
}

/// A target of the issue and whether this run met it.
struct Target {
    text: String,
    met: Option<bool>,
}

fn targets(run: &Run) -> Vec<Target> {
    let row = |scenario: Scenario| run.rows.iter().find(|r| r.scenario == scenario);
    let mut targets = Vec::new();
    for (scenario, factor) in [
        (Scenario::ClientCredentials, 5.0),
        (Scenario::SsoFlow, 3.0),
        (Scenario::Refresh, 3.0),
        (Scenario::Discovery, 10.0),
        (Scenario::Jwks, 10.0),
    ] {
        let ratio = row(scenario).and_then(Row::ratio);
        let cpu = row(scenario).and_then(Row::cpu_ratio);
        let bound = row(scenario).map_or("", Row::saturation);
        let ceiling = row(scenario).map(Row::ceiling_note).unwrap_or_default();
        // Where the generator's core, not ours, set the throughput, requests/s measure the
        // generator; then the servers are compared by what a request costs them (issue #16, item 6).
        let target = if row(scenario).is_some_and(Row::generator_bound) {
            Target {
                text: format!(
                    "{}: ≥ {factor}× the peer's efficiency, judged by server CPU per request since the generator set the pace (the peer needs {}; requests/s: {}{bound}{ceiling})",
                    scenario.name(),
                    times(cpu),
                    times(ratio)
                ),
                met: cpu.map(|r| r >= factor),
            }
        } else {
            Target {
                text: format!(
                    "{}: ≥ {factor}× the peer's requests/s (is {}; server CPU per request: the peer needs {}{bound}{ceiling})",
                    scenario.name(),
                    times(ratio),
                    times(cpu)
                ),
                met: ratio.map(|r| r >= factor),
            }
        };
        targets.push(target);
    }
    for row in &run.rows {
        if let Some(ratio) = row.p99_ratio() {
            targets.push(Target {
                text: format!("{}: p99 ≤ ½ of the peer's (is {})", row.scenario.name(), times(Some(ratio))),
                met: Some(ratio <= 0.5),
            });
        }
    }
    let idle = run.peer_idle_rss_kib.map(|peer| run.ours_idle_rss_kib as f64 / peer.max(1) as f64);
    let idle_anon = run.peer_idle_anon_kib.map(|peer| run.ours_idle_anon_kib as f64 / peer.max(1) as f64);
    targets.push(Target {
        text: format!(
            "idle RSS after start ≤ ¼ of the peer's (is {}; anonymous memory alone, without mapped code: {})",
            times(idle),
            times(idle_anon)
        ),
        met: idle.map(|r| r <= 0.25),
    });
    let rss = run.peer_rss_kib.map(|peer| run.ours_rss_kib as f64 / peer.max(1) as f64);
    targets.push(Target {
        text: format!("server peak RSS over the whole bench below the peer's (is {})", times(rss)),
        met: rss.map(|r| r < 1.0),
    });
    // Read against the limit measured next to the flow's windows when there is one; the limit
    // of the bench's start and end is shown beside it.
    let far = run.limits.rs256_per_second();
    let near = run.sso_raw_rs256_per_second.is_some();
    let limit = sso_rs256_limit(run);
    let flows = row(Scenario::SsoFlow).and_then(|r| r.ours.as_ref()).map(Measured::rate);
    let issuance = flows.map(|rate| rate / limit);
    targets.push(Target {
        text: format!(
            "ID-token issuance (complete SSO flows/s, one RS256 ID token each) ≥ 60 % of the machine's RS256 limit on one core, {limit:.0} signatures/s{} (is {}{})",
            if near { " measured before and after each of our SSO windows" } else { "" },
            percent(issuance),
            match (near, flows) {
                (true, Some(rate)) => format!(
                    "; against the limit of the bench's start and end, {far:.0}/s: {}",
                    percent(Some(rate / far))
                ),
                _ => String::new(),
            }
        ),
        met: issuance.map(|share| share >= 0.6),
    });
    let cost = run.limits.aws_lc_per_second / run.limits.id_tokens_per_second;
    targets.push(Target {
        text: format!(
            "an RS256 ID token costs within 10 % of the raw RS256 signature (costs {:.0} % more)",
            (cost - 1.0) * 100.0
        ),
        met: Some(cost <= 1.1),
    });
    targets
}

/// The RS256 limit the SSO flow is judged against: the one measured next to its windows when
/// there is one, else the one of the bench's start and end.
fn sso_rs256_limit(run: &Run) -> f64 {
    run.sso_raw_rs256_per_second
        .map_or_else(|| run.limits.rs256_per_second(), |raw| run.limits.rs256_per_second_at(raw))
}

/// What the SSO flow's two targets leave for everything in it but the ID token's signature
/// (three HTTP requests, the stores, the claims): 3× the peer bounds our flow's CPU by a third of
/// the peer's, 60 % of the RS256 limit by the signature's cost over 0.6. Where the signature is
/// slow, the first bound is the tighter one; where it is fast, the second. The ceiling: how many
/// times the peer's flows/s a flow of nothing but its signature would reach — where that is
/// below 3×, no work outside the signature can meet the target.
fn sso_budget(run: &Run) -> Option<String> {
    let row = run.rows.iter().find(|r| r.scenario == Scenario::SsoFlow)?;
    let ours = row.ours.as_ref()?.server_ms_per_request();
    let signature = 1000.0 / sso_rs256_limit(run);
    let for_limit = signature / 0.6 - signature;
    let peer = row.peer.as_ref().map(Measured::server_ms_per_request);
    Some(format!(
        "SSO flow: our server CPU per flow {ours:.3} ms, of it one RS256 signature at the machine's limit {signature:.3} ms, the rest {:.3} ms. The rest may be at most {for_limit:.3} ms for 60 % of the RS256 limit{}.",
        ours - signature,
        peer.map_or_else(String::new, |peer| format!(
            " and at most {:.3} ms for 3× the peer; a flow of nothing but the signature would be {:.2}× the peer by server CPU per flow, the ceiling on this machine",
            peer / 3.0 - signature,
            peer / signature
        ))
    ))
}

/// What nginx serving the static documents cost next to ours and the peer's, or why it did not
/// run; `None` when no static document was measured.
fn static_floor(run: &Run) -> Option<String> {
    if let Some(reason) = &run.floor_missing {
        return Some(format!("Static documents: not also served by nginx ({reason}), so no ceiling for them."));
    }
    let measured: Vec<String> = run
        .rows
        .iter()
        .filter_map(|row| {
            let floor = row.floor.as_ref()?;
            Some(format!(
                "{} {:.3} ms of CPU per request (ours {}, the peer's {}; ceiling {})",
                row.scenario.name(),
                floor.server_ms_per_request(),
                cell(row.ours.as_ref(), |m| format!("{:.3} ms", m.server_ms_per_request())),
                cell(row.peer.as_ref(), |m| format!("{:.3} ms", m.server_ms_per_request())),
                times(row.ceiling()),
            ))
        })
        .collect();
    (!measured.is_empty()).then(|| {
        format!(
            "Static documents from nginx (one worker, pinned like the servers, the same bytes, `Content-Type` and `Cache-Control` as static files, measured in turn with both): {}. Most of such a request's cost is the kernel's loopback TCP, which every server pays; the ceiling is the peer's CPU per request over the cheaper of nginx and ours.",
            measured.join("; ")
        )
    })
}

fn times(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "not measured".to_owned(), |r| format!("{r:.2}×"))
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "not measured".to_owned(), |s| format!("{:.0} %", s * 100.0))
}

fn cell(measured: Option<&Measured>, value: impl Fn(&Measured) -> String) -> String {
    measured.map_or_else(|| "–".to_owned(), value)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map(|m| m.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    format!("{model}, {cores} cores")
}

/// Prints the report and writes `side-by-side.json` and `side-by-side.md` to the output folder.
pub(super) fn write(run: &Run) -> anyhow::Result<()> {
    let date = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let mut md = String::new();
    writeln!(md, "# servicekonto vs node oidc-provider, {date}\n")?;
    writeln!(
        md,
        "Machine: {}. servicekonto on {}; {}. {} workers, {:.0} s per scenario and peer in {} rounds (ours, peer, peer, ours, …) after {} s of unmeasured warm-up each; server CPU counted while the load runs{}.\n",
        machine(),
        run.backends,
        if run.pinned {
            "both servers pinned to core 1, the load generator to core 0".to_owned()
        } else {
            "not pinned (needs `taskset` and two cores)".to_owned()
        },
        run.options.concurrency,
        run.options.seconds,
        run.options.rounds,
        run.options.warmup,
        if run.options.smoke { " (smoke mode: the figures mean nothing)" } else { "" },
    )?;
    if let Some(reason) = &run.peer_missing {
        writeln!(md, "The peer did not run: {reason}.\n")?;
    }
    writeln!(
        md,
        "| scenario | ours req/s | peer req/s | ours/peer | ours p50 ms | peer p50 ms | ours p99 ms | peer p99 ms | errors ours/peer | server CPU ms/req ours/peer | server CPU % ours/peer | generator CPU % ours/peer | peak RSS MiB so far ours/peer |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in &run.rows {
        let (ours, peer) = (row.ours.as_ref(), row.peer.as_ref());
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {}/{} | {}/{} | {}/{} | {}/{} |",
            row.scenario.name(),
            cell(ours, |m| format!("{:.0}", m.rate())),
            cell(peer, |m| format!("{:.0}", m.rate())),
            row.ratio().map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×")),
            cell(ours, |m| format!("{:.2}", m.p50())),
            cell(peer, |m| format!("{:.2}", m.p50())),
            cell(ours, |m| format!("{:.2}", m.p99())),
            cell(peer, |m| format!("{:.2}", m.p99())),
            cell(ours, |m| m.outcome.sample.errors.to_string()),
            cell(peer, |m| m.outcome.sample.errors.to_string()),
            cell(ours, |m| format!("{:.3}", m.server_ms_per_request())),
            cell(peer, |m| format!("{:.3}", m.server_ms_per_request())),
            cell(ours, |m| format!("{:.0}", m.server_load())),
            cell(peer, |m| format!("{:.0}", m.server_load())),
            cell(ours, |m| format!("{:.0}", m.generator_load())),
            cell(peer, |m| format!("{:.0}", m.generator_load())),
            cell(ours, |m| format!("{:.0}", m.peak_rss_kib as f64 / 1024.0)),
            cell(peer, |m| format!("{:.0}", m.peak_rss_kib as f64 / 1024.0)),
        )?;
    }
    let fronted: Vec<String> = run
        .rows
        .iter()
        .filter_map(|row| {
            let ours = row.ours.as_ref()?;
            let share = ours.outcome.cpu.front? / ours.outcome.cpu.server.max(f64::EPSILON);
            Some(format!("{} {:.0} %", row.scenario.name(), share * 100.0))
        })
        .collect();
    if !fronted.is_empty() {
        writeln!(md, "\nOf our server CPU, nginx in front of the two nodes took: {}.", fronted.join(", "))?;
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    writeln!(
        md,
        "\nServer RSS idle after start: servicekonto {:.1} MiB ({:.1} MiB of it anonymous memory, the rest mapped code), oidc-provider {}. Peak over the bench: servicekonto {:.1} MiB, oidc-provider {}.\n",
        mib(run.ours_idle_rss_kib),
        mib(run.ours_idle_anon_kib),
        run.peer_idle_rss_kib.zip(run.peer_idle_anon_kib).map_or_else(
            || "not measured".to_owned(),
            |(kib, anon)| format!("{:.1} MiB ({:.1} MiB anonymous)", mib(kib), mib(anon))
        ),
        mib(run.ours_rss_kib),
        run.peer_rss_kib.map_or_else(|| "not measured".to_owned(), |kib| format!("{:.1} MiB", mib(kib)))
    )?;
    writeln!(
        md,
        "RS256 on one core (means of a measurement before and one after the scenarios): our ID tokens {:.0}/s (claims, header, signature); aws-lc raw signatures with the parsed key held {:.0}/s; OpenSSL (`openssl speed rsa2048`) {}. The machine's limit is the best of these: {:.0}/s.\n",
        run.limits.id_tokens_per_second,
        run.limits.aws_lc_per_second,
        run.limits
            .openssl_per_second
            .map_or_else(|| "not measured (no openssl command)".to_owned(), |s| format!("{s:.0}/s")),
        run.limits.rs256_per_second(),
    )?;
    if let Some(statics) = static_floor(run) {
        writeln!(md, "{statics}\n")?;
    }
    if let Some(budget) = sso_budget(run) {
        writeln!(md, "{budget}\n")?;
    }
    let logins = run.rows.iter().find(|r| r.scenario == Scenario::PasswordLogin).and_then(|r| r.ours.as_ref());
    writeln!(
        md,
        "Password logins: {} /s against {:.1} argon2id hashes/s on one core ({}): {} of the hashing limit. The peer has no password login of its own.\n",
        logins.map_or_else(|| "not measured".to_owned(), |m| format!("{:.1}", m.rate())),
        run.limits.argon2_per_second,
        run.limits.argon2,
        percent(logins.map(|m| m.rate() / run.limits.argon2_per_second)),
    )?;
    writeln!(md, "## Targets\n")?;
    let targets = targets(run);
    for target in &targets {
        let mark = match target.met {
            Some(true) => "pass",
            Some(false) => "MISS",
            None => "n/a ",
        };
        writeln!(md, "- {mark} — {}", target.text)?;
    }
    for row in &run.rows {
        for (who, measured) in [("servicekonto", &row.ours), ("oidc-provider", &row.peer)] {
            if let Some(error) = measured.as_ref().and_then(|m| m.outcome.first_error.as_ref()) {
                writeln!(md, "\nFirst error of {who} in \"{}\": {error}", row.scenario.name())?;
            }
        }
    }
    println!("{md}");

    let scenarios: Vec<Value> = run
        .rows
        .iter()
        .map(|row| {
            json!({
                "scenario": row.scenario.name(),
                "servicekonto": row.ours.as_ref().map(Measured::json),
                "oidc_provider": row.peer.as_ref().map(Measured::json),
                "throughput_ratio": row.ratio(),
                "server_cpu_per_request_ratio_peer_over_ours": row.cpu_ratio(),
                "generator_bound": row.generator_bound(),
                "p99_ratio": row.p99_ratio(),
                "nginx_static_file": row.floor.as_ref().map(Measured::json),
                "ceiling_peer_over_cheapest_cpu_per_request": row.ceiling(),
            })
        })
        .collect();
    let report = json!({
        "date": date,
        "machine": machine(),
        "backends": run.backends,
        "pinned": run.pinned,
        "smoke": run.options.smoke,
        "concurrency": run.options.concurrency,
        "seconds_per_scenario": run.options.seconds,
        "rounds": run.options.rounds,
        "warmup_seconds_per_scenario_and_peer": run.options.warmup,
        "server_cpu_counted": "while the load runs, not during a scenario's setup",
        "peer_missing": run.peer_missing,
        "nginx_static_files_missing": run.floor_missing,
        "scenarios": scenarios,
        "peak_rss_kib": { "servicekonto": run.ours_rss_kib, "oidc_provider": run.peer_rss_kib },
        "idle_rss_kib": { "servicekonto": run.ours_idle_rss_kib, "oidc_provider": run.peer_idle_rss_kib },
        "idle_anon_kib": { "servicekonto": run.ours_idle_anon_kib, "oidc_provider": run.peer_idle_anon_kib },
        "limits": {
            "rs256_id_tokens_per_second_one_core": run.limits.id_tokens_per_second,
            "rs256_aws_lc_raw_per_second_one_core": run.limits.aws_lc_per_second,
            "rs256_openssl_per_second_one_core": run.limits.openssl_per_second,
            "rs256_machine_limit_per_second_one_core": run.limits.rs256_per_second(),
            "rs256_machine_limit_next_to_sso_per_second_one_core":
                run.sso_raw_rs256_per_second.map(|raw| run.limits.rs256_per_second_at(raw)),
            "argon2id_hashes_per_second_one_core": run.limits.argon2_per_second,
            "argon2id_parameters": run.limits.argon2,
        },
        "targets": targets.iter().map(|t| json!({ "target": t.text, "met": t.met })).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(&run.options.out)?;
    std::fs::write(run.options.out.join("side-by-side.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(run.options.out.join("side-by-side.md"), md)?;
    Ok(())
}
