//! `ipet-gateway report`: scores a testbed run from what the observer captured.
//!
//! - Real frames are told apart, attributed and sized by the data plane's rules (the simulator's
//!   view); cover frames by their tag ([`crate::frame`]).
//! - Forwarding lag: each real frame as the observer saw it minus when its sender sent it (the
//!   senders' own taps, frames matched by content).
//! - Cover lag: each cover frame as observed minus when it was due (the receive time of the frame
//!   it mirrors, or its scheduled time).
//! - Slot conformance: on the gateway's home grid, the share of slots (with any traffic or a
//!   non-zero target) in which every member of a set shows the same packets and bytes per
//!   direction, equal to the target the gateway logged for that slot where it logged one.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fs::File,
    hash::{DefaultHasher, Hash, Hasher},
    path::PathBuf,
};

use anyhow::{Context, Result};
use ipet_traffic::Direction;
use pcap_file::{
    TsResolution,
    pcap::{PcapReader, RawPcapPacket},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{config::HomeConfig, frame, replay::write_pcap};

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The gateway's configuration document.
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, value_enum, default_value = "bridge")]
    pub mode: crate::config::Mode,
    /// The observer's captures (merged): frames as the observed link carries them.
    #[arg(long, num_args = 1.., required = true)]
    pub observer: Vec<PathBuf>,
    /// The senders' own captures (when each original left the device or the router).
    #[arg(long, num_args = 0..)]
    pub sent: Vec<PathBuf>,
    /// The gateway's decision log (JSON lines).
    #[arg(long)]
    pub decisions: Option<PathBuf>,
    /// The gateway's metrics textfile at exit.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// `ipet simulate`'s summary for the same input.
    #[arg(long)]
    pub sim: Option<PathBuf>,
    /// Measure the outage of a kill -9 test on the probe frames the observer saw.
    #[arg(long, default_value_t = false)]
    pub probe: bool,
    /// Extra JSON merged into the report (testbed settings).
    #[arg(long)]
    pub extra: Option<String>,
    /// Writes the observer's frames merged in one pcap here.
    #[arg(long)]
    pub merged: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
}

struct Obs {
    t: i64,
    data: Vec<u8>,
    /// Which capture it came from.
    file: usize,
}

fn read(paths: &[PathBuf]) -> Result<Vec<Obs>> {
    let mut v = Vec::new();
    for (file, p) in paths.iter().enumerate() {
        let Ok(f) = File::open(p) else { continue };
        let Ok(mut r) = PcapReader::new(std::io::BufReader::new(f)) else { continue };
        let tick = if r.header().ts_resolution == TsResolution::NanoSecond { 1 } else { 1000 };
        while let Some(Ok(RawPcapPacket { ts_sec, ts_frac, data, .. })) = r.next_raw_packet() {
            v.push(Obs {
                t: i64::from(ts_sec) * 1_000_000_000 + i64::from(ts_frac) * tick,
                data: data.into_owned(),
                file,
            });
        }
    }
    v.sort_by_key(|o| o.t);
    Ok(v)
}

fn digest(d: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    d.hash(&mut h);
    h.finish()
}

/// p50/p99/max in ms of `ns` (None when empty).
fn quantiles(ns: &mut [i64]) -> Value {
    if ns.is_empty() {
        return Value::Null;
    }
    ns.sort_unstable();
    let q = |p: f64| ns[((ns.len() - 1) as f64 * p).round() as usize] as f64 / 1e6;
    json!({"p50": q(0.5), "p99": q(0.99), "max": q(1.0), "n": ns.len()})
}

/// A histogram's quantile from Prometheus text (`name_bucket{le=...}` lines), in ms, linearly
/// interpolated inside the bucket.
fn hist_quantile(prom: &str, name: &str, p: f64) -> Option<f64> {
    let mut b: Vec<(f64, f64)> = Vec::new();
    for l in prom.lines().filter(|l| l.starts_with(&format!("{name}_bucket{{"))) {
        let le = l.split("le=\"").nth(1)?.split('"').next()?;
        let v: f64 = l.rsplit(' ').next()?.parse().ok()?;
        b.push((if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? }, v));
    }
    let total = b.last()?.1;
    if total == 0.0 {
        return None;
    }
    let want = p * total;
    let (mut lo, mut below) = (0.0, 0.0);
    for (le, c) in b {
        if c >= want {
            if !le.is_finite() {
                return Some(lo * 1e3);
            }
            let frac = if c > below { (want - below) / (c - below) } else { 1.0 };
            return Some((lo + frac * (le - lo)) * 1e3);
        }
        lo = le;
        below = c;
    }
    None
}

fn metric(prom: &str, name: &str) -> Option<f64> {
    prom.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?.rsplit(' ').next()?.parse().ok()
}

#[derive(Deserialize)]
struct Decision {
    set: String,
    emitted_slot: i64,
    target: [u64; 4],
}

pub fn report(a: &ReportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.config).with_context(|| format!("{}", a.config.display()))?;
    let cfg = HomeConfig::parse(&text, "config")?.check(a.mode)?;
    let names: Vec<String> = cfg.table.devices().iter().map(|d| d.name.clone()).collect();
    let observed = read(&a.observer)?;
    let sent = read(&a.sent)?;
    let prom = a.metrics.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    if let Some(m) = &a.merged {
        write_pcap(m, observed.iter().map(|o| (o.t, o.data.clone())))?;
    }
    // The replay's own peak rate: most frames its senders sent in any 1 s and any 100 ms.
    let sent_times: Vec<i64> = sent.iter().map(|o| o.t).collect();
    let sent_peak = json!({
        "per_s": crate::replay::peak(&sent_times, 1.0),
        "per_100ms_x10": crate::replay::peak(&sent_times, 0.1) * 10,
    });
    let mut sent_at: HashMap<u64, VecDeque<i64>> = HashMap::new();
    for s in &sent {
        sent_at.entry(digest(&s.data)).or_default().push_back(s.t);
    }
    // Per device and direction: real and cover packets and bytes; per (device, slot) the rows.
    let n = names.len();
    let mut real = vec![[(0u64, 0u64); 2]; n];
    let mut cover = vec![[(0u64, 0u64); 2]; n];
    let mut fwd_lag = [Vec::new(), Vec::new()];
    let mut cover_lag = Vec::new();
    let omega = cfg.omega_ns;
    let origin = metric(&prom, "ipet_gateway_slot_origin_seconds").map(|s| (s * 1e9).round() as i64).filter(|&o| o > 0);
    let mut rows: BTreeMap<(usize, i64), [u64; 4]> = BTreeMap::new();
    let mut unmatched = 0u64;
    // A frame a bridge flooded (its destination not yet learned) reaches several receivers:
    // counted once (the same bytes at another receiver within 5 ms).
    let mut recent: HashMap<u64, (i64, usize)> = HashMap::new();
    for o in &observed {
        let h = digest(&o.data);
        if recent.insert(h, (o.t, o.file)).is_some_and(|(t, f)| o.t - t < 5_000_000 && f != o.file) {
            continue;
        }
        let (dev, dir, size) = if let Some(tag) = frame::cover_tag(&o.data) {
            let d = tag.device as usize;
            if d >= n {
                continue;
            }
            cover[d][tag.direction.index()].0 += 1;
            cover[d][tag.direction.index()].1 += u64::from(tag.size);
            cover_lag.push(o.t - tag.due_ns.max(tag.mirrors_ns));
            (d, tag.direction, tag.size)
        } else if let Ok((d, dir, size)) = frame::classify(&o.data, &cfg.table) {
            real[d][dir.index()].0 += 1;
            real[d][dir.index()].1 += u64::from(size);
            match sent_at.get_mut(&h).and_then(VecDeque::pop_front) {
                Some(t) => fwd_lag[dir.index()].push(o.t - t),
                None => unmatched += 1,
            }
            (d, dir, size)
        } else {
            continue;
        };
        if let Some(origin) = origin {
            let r = rows.entry((dev, (o.t - origin).div_euclid(omega))).or_default();
            let c = 2 * dir.index();
            r[c] += 1;
            r[c + 1] += u64::from(size);
        }
    }
    // Targets the gateway logged, per (set, emitted slot).
    let mut targets: HashMap<(String, i64), [u64; 4]> = HashMap::new();
    if let Some(p) = &a.decisions
        && let Ok(t) = std::fs::read_to_string(p)
    {
        for l in t.lines() {
            if let Ok(d) = serde_json::from_str::<Decision>(l) {
                targets.insert((d.set, d.emitted_slot), d.target);
            }
        }
    }
    let mut sets_out = Vec::new();
    let (mut all_slots, mut all_ok) = (0u64, 0u64);
    // Per direction (in, out): slots with traffic or a target in that direction, and conforming.
    let mut by_dir = [(0u64, 0u64); 2];
    // Conformance is a set defense's promise; iPET and pass-through have no set targets.
    let set_sets: &[(String, Vec<usize>)] = if cfg.spec.is_some() { &cfg.sets } else { &[] };
    for (set, members) in set_sets {
        let mut slots: Vec<i64> = rows.keys().filter(|(d, _)| members.contains(d)).map(|&(_, s)| s).collect();
        slots.extend(targets.iter().filter(|((s, _), t)| s == set && t.iter().any(|&v| v > 0)).map(|((_, k), _)| *k));
        slots.sort_unstable();
        slots.dedup();
        let (mut ok, mut bytes_off) = (0u64, 0u64);
        let mut examples = Vec::new();
        for &k in &slots {
            let got: Vec<[u64; 4]> = members.iter().map(|&d| rows.get(&(d, k)).copied().unwrap_or_default()).collect();
            let want = targets.get(&(set.clone(), k)).copied();
            let same = got.windows(2).all(|w| w[0] == w[1]);
            let on_target = want.is_none_or(|t| got.iter().all(|g| *g == t));
            for (d, c) in by_dir.iter_mut().enumerate() {
                let r = 2 * d..2 * d + 2;
                let active = got.iter().any(|g| g[r.clone()].iter().any(|&v| v > 0))
                    || want.is_some_and(|t| t[r.clone()].iter().any(|&v| v > 0));
                if active {
                    c.0 += 1;
                    let ok = got.windows(2).all(|w| w[0][r.clone()] == w[1][r.clone()])
                        && want.is_none_or(|t| got.iter().all(|g| g[r.clone()] == t[r.clone()]));
                    c.1 += u64::from(ok);
                }
            }
            if same && on_target {
                ok += 1;
            } else {
                if examples.len() < 5 {
                    examples.push(json!({"slot": k, "target": want, "members": got}));
                }
                let reference =
                    want.unwrap_or_else(|| got.iter().copied().max_by_key(|g| g[1] + g[3]).unwrap_or_default());
                bytes_off += got.iter().map(|g| g[1].abs_diff(reference[1]) + g[3].abs_diff(reference[3])).sum::<u64>();
            }
        }
        all_slots += slots.len() as u64;
        all_ok += ok;
        sets_out.push(json!({
            "set": set,
            "members": members.iter().map(|&d| names[d].clone()).collect::<Vec<_>>(),
            "slots": slots.len(),
            "conforming": ok,
            "share": if slots.is_empty() { Value::Null } else { json!(ok as f64 / slots.len() as f64) },
            "mismatched_bytes": bytes_off,
            "mismatches": examples,
        }));
    }
    let sum = |v: &[[(u64, u64); 2]]| v.iter().flatten().fold((0u64, 0u64), |(p, b), &(q, c)| (p + q, b + c));
    let (rp, rb) = sum(&real);
    let (cp, cb) = sum(&cover);
    let ratio = |c: u64, r: u64| if r == 0 { Value::Null } else { json!(c as f64 / r as f64) };
    let sim: Option<Value> =
        a.sim.as_ref().and_then(|p| std::fs::read(p).ok()).and_then(|b| serde_json::from_slice(&b).ok());
    let sim_ratio = sim.as_ref().and_then(|s| {
        let t = s.get("total")?;
        let t = t.get("total").unwrap_or(t);
        let f = |k: &str| t.get(k)?.as_f64();
        Some(json!({
            "bytes": f("dummy_bytes")? / f("real_bytes")?,
            "packets": f("dummy_packets")? / f("real_packets")?,
            "real_packets": f("real_packets")?, "dummy_packets": f("dummy_packets")?,
            "real_bytes": f("real_bytes")?, "dummy_bytes": f("dummy_bytes")?,
        }))
    });
    let mut all_fwd: Vec<i64> = fwd_lag.iter().flatten().copied().collect();
    let reaction = if cover_lag.is_empty() { quantiles(&mut all_fwd.clone()) } else { quantiles(&mut cover_lag) };
    let per_device: Vec<Value> = (0..n)
        .map(|d| {
            json!({"device": names[d], "real": {"in": real[d][0], "out": real[d][1]}, "cover": {"in": cover[d][0], "out": cover[d][1]}})
        })
        .collect();
    let mut gap = Value::Null;
    if a.probe {
        // The observer capture that saw the most probes (one receiver's view).
        let mut best: Vec<i64> = Vec::new();
        for p in &a.observer {
            let t: Vec<i64> =
                read(std::slice::from_ref(p))?.iter().filter(|o| frame::is_probe(&o.data)).map(|o| o.t).collect();
            if t.len() > best.len() {
                best = t;
            }
        }
        let worst = best.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        gap = json!({"probes_seen": best.len(), "longest_gap_ms": worst as f64 / 1e6});
    }
    // Hold time added to real frames: from the wire (sent by the device or router -> seen by the
    // receiver, the forwarding delay included) where the gateway held frames, else 0; the
    // gateway's own histogram beside it.
    let holds = crate::defend::holds(&cfg);
    let mut held: Vec<i64> = (0..2).filter(|&d| holds[d]).flat_map(|d| fwd_lag[d].iter().copied()).collect();
    let wire_hold = if held.is_empty() { json!({"p50": 0.0, "p99": 0.0, "max": 0.0}) } else { quantiles(&mut held) };
    let hold = json!({
        "p50": wire_hold.get("p50"),
        "p99": wire_hold.get("p99"),
        "max": wire_hold.get("max"),
        "frames_held": metric(&prom, "ipet_gateway_hold_seconds_count"),
        "gateway_histogram": {
            "p50": hist_quantile(&prom, "ipet_gateway_hold_seconds", 0.5),
            "p99": hist_quantile(&prom, "ipet_gateway_hold_seconds", 0.99),
        },
    });
    let mut report = json!({
        "defense": format!("{:?}", cfg.doc.defense),
        "frames_observed": observed.len(),
        "real": {"packets": rp, "bytes": rb},
        "cover": {"packets": cp, "bytes": cb},
        "reaction_lag_ms": reaction,
        "forward_lag_ms": {"in": quantiles(&mut fwd_lag[0]), "out": quantiles(&mut fwd_lag[1]), "all": quantiles(&mut all_fwd)},
        "cover_lag_ms": quantiles(&mut cover_lag),
        "gateway_reaction_lag_ms": {"p50": hist_quantile(&prom, "ipet_gateway_reaction_lag_seconds", 0.5), "p99": hist_quantile(&prom, "ipet_gateway_reaction_lag_seconds", 0.99)},
        "slot_conformance": if all_slots == 0 { Value::Null } else { json!(all_ok as f64 / all_slots as f64) },
        "slot_conformance_sets": sets_out,
        "slot_conformance_by_direction": {
            "in": if by_dir[0].0 == 0 { Value::Null } else { json!(by_dir[0].1 as f64 / by_dir[0].0 as f64) },
            "out": if by_dir[1].0 == 0 { Value::Null } else { json!(by_dir[1].1 as f64 / by_dir[1].0 as f64) },
        },
        "cover_ratio": {"bytes": ratio(cb, rb), "packets": ratio(cp, rp), "simulated": sim_ratio},
        "hold_ms": hold,
        "hold_overflows": metric(&prom, "ipet_gateway_hold_overflows_total"),
        "drops": metric(&prom, "ipet_gateway_socket_drops_total"),
        "send_failures": metric(&prom, "ipet_gateway_send_failures_total"),
        "config_age_s": metric(&prom, "ipet_gateway_config_age_seconds"),
        "unmatched_real_frames": unmatched,
        "sent_frames": sent.len(),
        "sent_peak_frames": sent_peak,
        "kill_gap": gap,
        "devices": per_device,
    });
    if let (Some(extra), Some(obj)) = (&a.extra, report.as_object_mut())
        && let Ok(Value::Object(e)) = serde_json::from_str::<Value>(extra)
    {
        obj.extend(e);
    }
    // CPU per 1,000 frames the gateway handled (received, plus cover sent).
    let handled = metric(&prom, "ipet_gateway_frames_seen_total").unwrap_or(0.0) + cp as f64;
    if let Some(obj) = report.as_object_mut()
        && let Some(cpu) = obj.get("gateway_cpu_s").and_then(Value::as_f64)
        && handled > 0.0
    {
        obj.insert("frames_handled".into(), json!(handled));
        obj.insert("cpu_ms_per_1000_frames".into(), json!(cpu * 1e3 / handled * 1e3));
    }
    std::fs::write(&a.out, serde_json::to_vec_pretty(&report)?)?;
    println!("{}", serde_json::to_string(&report)?);
    let _ = Direction::In;
    Ok(())
}
