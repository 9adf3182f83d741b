//! The gateway's configuration: the command line (host settings: ports, addresses, where the
//! configuration comes from; every flag with an environment fallback, as the service's) and the
//! home's configuration document (device table, sets, defense and knobs), TOML or JSON, from a
//! file or a URL. A document is checked whole before it replaces the running one; a bad one is
//! refused with an error naming its field and the running one stays.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result, anyhow, bail};
use ipet_traffic::{
    DeviceTable,
    devices::parse_mac,
    set_defense::{SetDefenseKind, SetDefenseSpec, SetSpec},
    shaper::Deployment,
};
use serde::{Deserialize, Serialize};

/// Where the shaper stands (docs/threat-model.md, "How the gateway emits cover").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Between each device and the observed link: transmits, and can hold, both directions.
    Bridge,
    /// The access point alone: devices' own uplink frames are on the air before it sees them.
    Ap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefenseName {
    /// Forward everything untouched (measures the testbed itself).
    PassThrough,
    Supersequence,
    Regulator,
    /// Per-device iPET rows fetched from the service.
    Ipet,
    /// Set-targets rows fetched from the service.
    Targets,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    pub name: String,
    pub mac: String,
    #[serde(default)]
    pub ip: Vec<String>,
    /// Anonymity set (devices without one are observed, counted and passed untouched).
    #[serde(default)]
    pub set: Option<String>,
}

/// Where rows come from for `ipet` and `targets`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceRows {
    /// Base URL of the ipet service, e.g. `http://192.168.1.2:8080`.
    pub url: String,
    /// Generation (`0`..`4` or `mix`).
    #[serde(default = "mix")]
    pub generation: String,
    /// Windows fetched per request.
    #[serde(default = "default_n")]
    pub n: usize,
    #[serde(default)]
    pub model_set: Option<String>,
}

fn mix() -> String {
    "mix".into()
}
fn default_n() -> usize {
    1000
}
fn default_hold_queue() -> usize {
    1024
}

/// iPET's slotted cover (per device, rows from the service).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IpetSettings {
    /// Slot length, seconds (the model set's omega).
    #[serde(default = "default_ipet_omega")]
    pub omega: f64,
    /// Seconds: real frames closer than this belong to one active period (`ipet simulate`'s
    /// --active-gap).
    #[serde(default = "default_active_gap")]
    pub active_gap: f64,
}

fn default_ipet_omega() -> f64 {
    0.1
}
fn default_active_gap() -> f64 {
    5.0
}

impl Default for IpetSettings {
    fn default() -> Self {
        Self { omega: default_ipet_omega(), active_gap: default_active_gap() }
    }
}

/// The home's configuration document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HomeConfig {
    pub defense: DefenseName,
    /// The set defense's specification, the data plane's [`SetDefenseSpec`] (the same document
    /// `ipet simulate` and `POST /simulations` read): omega, latency budget, regulator and
    /// target-row knobs, seed, size profiles, release (deployment and countermeasures). Its
    /// `defense` must name this document's; its `sets` default to the device table's `set`
    /// column; its deployment `ideal` means "as the gateway's --mode". None: the defaults.
    #[serde(default)]
    pub spec: Option<SetDefenseSpec>,
    /// Most real frames held per device and direction; beyond, frames are sent at once and
    /// counted as hold-queue overflows.
    #[serde(default = "default_hold_queue")]
    pub hold_queue: usize,
    pub devices: Vec<DeviceEntry>,
    #[serde(default)]
    pub service: Option<ServiceRows>,
    /// For `ipet`: its slot and active gap.
    #[serde(default)]
    pub ipet: Option<IpetSettings>,
}

/// A checked configuration, ready to run.
pub struct Checked {
    pub doc: HomeConfig,
    pub table: DeviceTable,
    /// Sets: name and member device ids.
    pub sets: Vec<(String, Vec<usize>)>,
    /// The set defense's specification, checked, with its sets and deployment filled in (None
    /// for pass-through).
    pub spec: Option<SetDefenseSpec>,
    /// Per device: whether the defense shapes its frames (a set's member; every device for ipet).
    pub shaped: Vec<bool>,
    pub omega_ns: i64,
}

impl HomeConfig {
    /// Parses TOML or JSON (told by the first non-blank character).
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| anyhow!("{origin}: {e}"))
        } else {
            toml::from_str(text).map_err(|e| anyhow!("{origin}: {e}"))
        }
    }

    /// Checks every field; errors name the field (`devices[2].mac: ...`). `mode`: the gateway's
    /// deployment, which the spec's release must agree with.
    pub fn check(self, mode: Mode) -> Result<Checked> {
        if self.hold_queue == 0 || self.hold_queue > 1 << 20 {
            bail!("hold_queue: {} must be in 1..=1048576", self.hold_queue);
        }
        if self.devices.is_empty() {
            bail!("devices: the table is empty");
        }
        let mut entries = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            if d.name.trim().is_empty() {
                bail!("devices[{i}].name: empty");
            }
            let mac = parse_mac(&d.mac).ok_or_else(|| anyhow!("devices[{i}].mac: {:?} is not a MAC address", d.mac))?;
            let mut ips = Vec::new();
            for (j, ip) in d.ip.iter().enumerate() {
                ips.push(ip.parse::<IpAddr>().map_err(|_| anyhow!("devices[{i}].ip[{j}]: {ip:?} is not an address"))?);
            }
            entries.push((d.name.clone(), Some(mac), ips));
        }
        let table = DeviceTable::new(entries).map_err(|e| anyhow!("devices: {e}"))?;
        let mut sets: Vec<(String, Vec<usize>)> = Vec::new();
        let mut set_of = vec![None; self.devices.len()];
        for (i, d) in self.devices.iter().enumerate() {
            if let Some(s) = d.set.as_ref().filter(|s| !s.trim().is_empty()) {
                let k = match sets.iter().position(|(n, _)| n == s) {
                    Some(k) => k,
                    None => {
                        sets.push((s.clone(), Vec::new()));
                        sets.len() - 1
                    }
                };
                sets[k].1.push(i);
                set_of[i] = Some(k);
            }
        }
        match self.defense {
            DefenseName::PassThrough => {}
            DefenseName::Ipet | DefenseName::Targets => {
                let s = self
                    .service
                    .as_ref()
                    .ok_or_else(|| anyhow!("service: {:?} needs rows from the service", self.defense))?;
                if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
                    bail!("service.url: {:?} is not an http(s) URL", s.url);
                }
                if s.n == 0 || s.n > 50_000 {
                    bail!("service.n: {} must be in 1..=50000", s.n);
                }
            }
            DefenseName::Supersequence | DefenseName::Regulator => {}
        }
        let kind = match self.defense {
            DefenseName::PassThrough | DefenseName::Ipet => None,
            DefenseName::Supersequence => Some(SetDefenseKind::Supersequence),
            DefenseName::Regulator => Some(SetDefenseKind::Regulator),
            DefenseName::Targets => Some(SetDefenseKind::Targets),
        };
        let ipet = self.ipet.clone().unwrap_or_default();
        if self.defense == DefenseName::Ipet
            && !(ipet.omega.is_finite()
                && ipet.omega > 0.0
                && ipet.active_gap.is_finite()
                && ipet.active_gap >= ipet.omega)
        {
            bail!("ipet: need omega > 0 and active_gap >= omega (got {} and {})", ipet.omega, ipet.active_gap);
        }
        let spec = match kind {
            None => None,
            Some(kind) => {
                // Sets from the table's `set` column, or else from the spec (`ipet simulate
                // --spec-out` writes the home's sets and size profiles there).
                if sets.is_empty()
                    && let Some(given) = self.spec.as_ref().and_then(|s| s.sets.as_ref())
                {
                    for (i, g) in given.iter().enumerate() {
                        let mut members = Vec::new();
                        for (j, name) in g.members.iter().enumerate() {
                            let d =
                                self.devices.iter().position(|d| &d.name == name).ok_or_else(|| {
                                    anyhow!("spec.sets[{i}].members[{j}]: no device {name:?} in devices")
                                })?;
                            if set_of[d].is_some() {
                                bail!("spec.sets[{i}].members[{j}]: {name:?} is in two sets");
                            }
                            set_of[d] = Some(i);
                            members.push(d);
                        }
                        sets.push((g.name.clone(), members));
                    }
                }
                if sets.is_empty() {
                    bail!("devices[*].set: {:?} needs at least one anonymity set", self.defense);
                }
                let mut spec = match self.spec.clone() {
                    Some(s) => s,
                    None => serde_json::from_value(serde_json::json!({"defense": kind}))
                        .map_err(|e| anyhow!("spec: {e}"))?,
                };
                if spec.defense != kind {
                    bail!("spec.defense: {:?} differs from defense {:?}", spec.defense.name(), kind.name());
                }
                match &spec.sets {
                    None => {
                        spec.sets = Some(
                            sets.iter()
                                .map(|(n, m)| SetSpec {
                                    name: n.clone(),
                                    members: m.iter().map(|&d| self.devices[d].name.clone()).collect(),
                                })
                                .collect(),
                        )
                    }
                    Some(given) => {
                        let same = given.len() == sets.len()
                            && given.iter().zip(&sets).all(|(g, (n, m))| {
                                &g.name == n && g.members.iter().eq(m.iter().map(|&d| &self.devices[d].name))
                            });
                        if !same {
                            bail!("spec.sets: differ from the device table's set column (give one or the other)");
                        }
                    }
                }
                let want = match mode {
                    Mode::Bridge => Deployment::Bridge,
                    Mode::Ap => Deployment::Ap,
                };
                match spec.release.deployment {
                    Deployment::Ideal => spec.release.deployment = want,
                    d if d != want => {
                        bail!("spec.release.deployment: {:?} on a gateway run with --mode {:?}", d.name(), mode)
                    }
                    _ => {}
                }
                // Lag is what the wire does here, not a setting: the live shaper ignores modelled lag.
                if let Some(p) = spec.size_profiles.iter().find(|p| !sets.iter().any(|(n, _)| *n == p.set)) {
                    bail!("spec.size_profiles: {:?} names no set", p.set);
                }
                spec.check().map_err(|e| anyhow!("spec: {e}"))?;
                Some(spec)
            }
        };
        let omega_ns = match (&spec, self.defense) {
            (Some(s), _) => (s.omega * 1e9).round() as i64,
            (None, DefenseName::Ipet) => (ipet.omega * 1e9).round() as i64,
            _ => 100_000_000,
        };
        let shaped = match self.defense {
            DefenseName::PassThrough => vec![false; set_of.len()],
            DefenseName::Ipet => vec![true; set_of.len()],
            _ => set_of.iter().map(Option::is_some).collect(),
        };
        Ok(Checked { doc: self, table, sets, spec, shaped, omega_ns })
    }
}

/// Command line of `ipet-gateway run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The home's configuration (TOML or JSON). SIGHUP reads it again.
    #[arg(long, env = "IPET_GATEWAY_CONFIG", required_unless_present = "config_url")]
    pub config: Option<PathBuf>,
    /// Or a URL serving the same document (fetched with the token), re-fetched every
    /// --config-refresh-secs and on SIGHUP; unreachable: the last good one stays (its age is
    /// exported), kept across restarts in --state-dir.
    #[arg(long, env = "IPET_GATEWAY_CONFIG_URL")]
    pub config_url: Option<String>,
    #[arg(long, env = "IPET_GATEWAY_CONFIG_REFRESH_SECS", default_value_t = 300)]
    pub config_refresh_secs: u64,
    /// Bearer token for the service (config URL and rows).
    #[arg(long, env = "IPET_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token (first line).
    #[arg(long, env = "IPET_GATEWAY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Where the last good configuration and rows are kept.
    #[arg(long, env = "IPET_GATEWAY_STATE_DIR", default_value = "/var/lib/ipet-gateway")]
    pub state_dir: PathBuf,
    #[arg(long, env = "IPET_GATEWAY_MODE", value_enum, default_value = "bridge")]
    pub mode: Mode,
    /// Device-side ports (bridge mode: one per device or a switch; ap mode: the radio side).
    #[arg(long = "device-port", env = "IPET_GATEWAY_DEVICE_PORTS", value_delimiter = ',', required = true)]
    pub device_ports: Vec<String>,
    /// The uplink port (to the router / the internet).
    #[arg(long, env = "IPET_GATEWAY_UPLINK")]
    pub uplink: String,
    /// Prometheus endpoint (`GET /metrics`); empty: none.
    #[arg(long, env = "IPET_GATEWAY_METRICS_ADDR", default_value = "127.0.0.1:9187")]
    pub metrics_addr: String,
    /// Also write the metrics to this file every second (node_exporter textfile collector).
    #[arg(long, env = "IPET_GATEWAY_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
    /// SCHED_FIFO priority for the packet and timing threads (0: default scheduler).
    #[arg(long, env = "IPET_GATEWAY_RT_PRIORITY", default_value_t = 0)]
    pub rt_priority: i32,
    /// Microseconds at each end of a slot kept free of emissions: a frame decided for a slot but
    /// due within this of its end is sent that much earlier (within this of its start, later),
    /// so that the send latency does not carry it into the next slot (0: send at the decided
    /// times exactly).
    #[arg(long, env = "IPET_GATEWAY_SLOT_GUARD_US", default_value_t = 2000)]
    pub slot_guard_us: i64,
    /// Socket receive buffer per port, bytes.
    #[arg(long, env = "IPET_GATEWAY_RCVBUF", default_value_t = 8 << 20)]
    pub rcvbuf: usize,
    /// Log as JSON lines (else human-readable).
    #[arg(long, env = "IPET_GATEWAY_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
    /// Write every slot's per-set targets and emissions as JSON lines here (the testbed's
    /// conformance check reads it).
    #[arg(long, env = "IPET_GATEWAY_DECISION_LOG")]
    pub decision_log: Option<PathBuf>,
}

impl RunArgs {
    pub fn token(&self) -> Result<Option<String>> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        match &self.token_file {
            Some(p) => {
                let s = std::fs::read_to_string(p).with_context(|| format!("token file {}", p.display()))?;
                Ok(s.lines().next().map(|l| l.trim().to_string()))
            }
            None => Ok(None),
        }
    }
}

/// Reads a configuration: from the file, or the URL (falling back to the cached copy).
/// Returns the document and when it was obtained (ns; the cache file's time when cached).
pub fn load(args: &RunArgs) -> Result<(Checked, i64)> {
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc = HomeConfig::parse(&text, &path.display().to_string())?;
        return Ok((doc.check(args.mode)?, crate::sys::now_ns()));
    }
    let url = args.config_url.as_deref().ok_or_else(|| anyhow!("no --config nor --config-url"))?;
    let cache = args.state_dir.join("config.json");
    match fetch_text(url, args.token()?.as_deref()) {
        Ok(text) => {
            let checked = HomeConfig::parse(&text, url)?.check(args.mode)?;
            let _ = std::fs::create_dir_all(&args.state_dir);
            let _ = std::fs::write(&cache, serde_json::to_vec_pretty(&checked.doc)?);
            Ok((checked, crate::sys::now_ns()))
        }
        Err(e) => {
            let text = std::fs::read_to_string(&cache)
                .with_context(|| format!("{url} unreachable ({e:#}) and no cached configuration"))?;
            let age = std::fs::metadata(&cache)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(crate::sys::now_ns(), |d| d.as_nanos() as i64);
            tracing::warn!(url, error = %format!("{e:#}"), "configuration URL unreachable: using the cached one");
            Ok((HomeConfig::parse(&text, &cache.display().to_string())?.check(args.mode)?, age))
        }
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into()
}

pub fn fetch_text(url: &str, token: Option<&str>) -> Result<String> {
    let mut req = agent().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().with_context(|| format!("GET {url}"))?;
    Ok(resp.body_mut().read_to_string()?)
}

pub fn fetch_bytes(url: &str, token: Option<&str>) -> Result<Vec<u8>> {
    let mut req = agent().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().with_context(|| format!("GET {url}"))?;
    Ok(resp.body_mut().with_config().limit(512 << 20).read_to_vec()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
defense = "supersequence"
[[devices]]
name = "cam-1"
mac = "f4:b8:5e:ff:2b:1b"
set = "cams"
[[devices]]
name = "cam-2"
mac = "f4:b8:5e:35:67:b0"
set = "cams"
[[devices]]
name = "tv"
mac = "00:11:22:33:44:55"
"#;

    #[test]
    fn sets_may_come_from_the_spec() {
        let no_column = GOOD.replace("set = \"cams\"\n", "");
        let doc = format!(
            "[spec]\ndefense = \"supersequence\"\n[[spec.sets]]\nname = \"s\"\nmembers = [\"cam-2\", \"tv\"]\n{}",
            no_column.replace("defense = \"supersequence\"\n", "")
        );
        let doc = format!("defense = \"supersequence\"\n{doc}");
        let c = HomeConfig::parse(&doc, "t").expect("parse").check(Mode::Bridge).expect("check");
        assert_eq!(c.sets, vec![("s".to_string(), vec![1, 2])]);
        assert_eq!(c.shaped, vec![false, true, true]);
        let bad = doc.replace("\"tv\"]", "\"radio\"]");
        let e = HomeConfig::parse(&bad, "t").expect("parse").check(Mode::Bridge).err().expect("unknown member");
        assert!(e.to_string().starts_with("spec.sets[0].members[1]:"), "{e}");
    }

    #[test]
    fn a_good_configuration_is_taken() {
        let c = HomeConfig::parse(GOOD, "t").expect("parse").check(Mode::Bridge).expect("check");
        assert_eq!(c.sets, vec![("cams".to_string(), vec![0, 1])]);
        assert_eq!(c.shaped, vec![true, true, false]);
        assert_eq!(c.omega_ns, 100_000_000);
        let spec = c.spec.expect("spec");
        assert_eq!(spec.release.deployment, Deployment::Bridge);
        assert_eq!(spec.sets.expect("sets")[0].members, vec!["cam-1", "cam-2"]);
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn an_unreachable_config_url_falls_back_to_the_last_good_copy_with_its_age() {
        use clap::Parser;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().to_str().expect("utf-8");
        // Port 9 on loopback: nothing listens (connection refused at once).
        let args = |url: &str| {
            Cli::parse_from(["t", "--config-url", url, "--state-dir", state, "--device-port", "x", "--uplink", "y"]).run
        };
        let e = load(&args("http://127.0.0.1:9/config")).err().expect("no cache yet");
        assert!(format!("{e:#}").contains("no cached configuration"), "{e:#}");
        let doc = HomeConfig::parse(GOOD, "t").expect("parse");
        std::fs::write(dir.path().join("config.json"), serde_json::to_vec(&doc).expect("json")).expect("write");
        let (c, at) = load(&args("http://127.0.0.1:9/config")).expect("cached");
        assert_eq!(c.doc, doc);
        let age_s = (crate::sys::now_ns() - at) as f64 / 1e9;
        assert!((0.0..60.0).contains(&age_s), "age {age_s} s: the cache file's time");
    }

    #[test]
    fn errors_name_the_field() {
        let bad_mac = GOOD.replace("00:11:22:33:44:55", "00:11:22");
        let e = HomeConfig::parse(&bad_mac, "t").expect("parse").check(Mode::Bridge).err().expect("bad mac");
        assert!(e.to_string().starts_with("devices[2].mac:"), "{e}");
        let omega = GOOD.replace(
            "[[devices]]\nname = \"cam-1\"",
            "[spec]\ndefense = \"supersequence\"\nomega = -1\n[[devices]]\nname = \"cam-1\"",
        );
        let e = HomeConfig::parse(&omega, "t").expect("parse").check(Mode::Bridge).err().expect("omega");
        assert!(e.to_string().starts_with("spec:"), "{e}");
        let ap = GOOD.replace(
            "[[devices]]\nname = \"cam-1\"",
            "[spec]\ndefense = \"supersequence\"\n[spec.release]\ndeployment = \"ap\"\n[[devices]]\nname = \"cam-1\"",
        );
        let e = HomeConfig::parse(&ap, "t").expect("parse").check(Mode::Bridge).err().expect("deployment");
        assert!(e.to_string().starts_with("spec.release.deployment:"), "{e}");
        assert!(HomeConfig::parse(&ap, "t").expect("parse").check(Mode::Ap).is_ok());
        let e = HomeConfig::parse(&GOOD.replace("supersequence", "nope"), "t").expect_err("defense");
        assert!(e.to_string().contains("defense"), "{e}");
        let e = HomeConfig::parse(&format!("colour = 1\n{GOOD}"), "t").expect_err("unknown");
        assert!(e.to_string().contains("colour"), "{e}");
        let no_sets = GOOD.replace("set = \"cams\"", "");
        let e = HomeConfig::parse(&no_sets, "t").expect("parse").check(Mode::Bridge).err().expect("sets");
        assert!(e.to_string().contains("set"), "{e}");
    }
}
