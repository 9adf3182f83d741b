//! A home simulation as the live gateway's configuration document (`ipet-gateway --config-url`,
//! `HomeConfig` in crates/gateway/src/config.rs): the defense, the set-defense specification as
//! the job ran it with the home's plan (its sets by name and each set's cover-size profile, from
//! the job's stored traces: what `ipet simulate --spec-out` writes for the same captures), and the
//! device table with MACs, IPs and sets.
//!
//! Nothing new is stored: the plan is computed again from the job's parameters and its stored
//! per-device traces whenever it is asked for, the same function of the same input, so jobs
//! stored before this route existed serve their configuration too.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    codec::{decode_packets, decode_sections},
    params::{HomeParams, JobParams, TargetsSource},
};
use crate::{
    auth::Caller,
    error::{Error, ErrorCode, Result},
    store::{JobState, Store},
    traffic::{
        Packet,
        devices::{format_mac, parse_mac},
        set_defense::{SetDefenseKind, SetDefenseSpec},
    },
};

/// One device of the gateway's table: frames are matched by its MAC (or one of its IPs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GatewayDevice {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Its IP addresses in the captures (none: left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip: Vec<String>,
    /// Its anonymity set; absent for a device in no set (observed and passed untouched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub set: Option<String>,
}

/// Where a gateway fetches the `targets` defense's rows: `GET {url}/perturbations/{member}/
/// {generation}?model_set=...` (the set-targets model set the simulation drew from).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GatewayService {
    /// This service's base URL as the request reached it (`Host`, or `X-Forwarded-Host` and
    /// `X-Forwarded-Proto` behind a proxy).
    pub url: String,
    /// A generation index or `mix`, as the simulation drew.
    pub generation: String,
    /// The set-targets model set.
    pub model_set: String,
}

/// The live gateway's configuration document for a home, as `ipet-gateway --config FILE` or
/// `--config-url URL` reads it (the gateway's defaults for what is absent: `hold_queue`, `n`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GatewayConfig {
    /// The set defense (the gateway's `defense`: `supersequence`, `regulator` or `targets`).
    pub defense: SetDefenseKind,
    /// The specification as the simulation ran it, with the home's plan: `sets` by name in the
    /// order the simulation ran them (set i draws from the seed's stream i) and each set's
    /// `size_profiles` from its members' captured packets; `k` the job's. Its
    /// `release.deployment` is the job's: `ideal` (the default) means "as the gateway's `--mode`";
    /// `bridge` or `ap` is refused by a gateway run in the other mode.
    pub spec: SetDefenseSpec,
    /// The device table, set by set in the order of `spec.sets` (members in their order), then
    /// the devices in no set. Devices in no set that have no MAC are left out (the gateway
    /// matches frames by MAC; it passes frames of devices it does not know untouched, as it
    /// passes those of devices in no set), and named in the `X-Omitted-Devices` header.
    pub devices: Vec<GatewayDevice>,
    /// `targets` only: where the gateway fetches each set's target rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub service: Option<GatewayService>,
}

/// A home's gateway configuration and the devices left out of it (no MAC, in no set).
#[derive(Debug, Clone)]
pub struct GatewayPlan {
    pub config: GatewayConfig,
    pub omitted: Vec<String>,
}

/// The gateway configuration of the caller's home simulation `id` (404 `unknown_job` for none or
/// another's; 409 `not_a_home_simulation` for a one-device job, `job_not_finished` until it has
/// succeeded, `missing_mac` or `targets_not_served` when a gateway cannot run it). `service_url`:
/// this service's base URL, for `targets`.
pub async fn home_gateway_config(store: &Store, caller: &Caller, id: Uuid, service_url: &str) -> Result<GatewayPlan> {
    let record = store
        .get_simulation(id, caller.owner_filter())
        .await?
        .ok_or_else(|| Error::not_found(ErrorCode::UnknownJob, format!("no simulation job {id}")))?;
    let params = match JobParams::from_stored(&record.params)? {
        JobParams::Home(p) => p,
        JobParams::Device(p) => {
            return Err(Error::Conflict {
                code: ErrorCode::NotAHomeSimulation,
                message: format!(
                    "simulation {id} defended one device ({}); a gateway configuration comes from a home's \
                     simulation (POST /simulations with `defense` and the home's captures and device table)",
                    p.device
                ),
            });
        }
    };
    if record.status != JobState::Succeeded {
        let why = record.error.map(|e| format!(": {e}")).unwrap_or_default();
        return Err(Error::Conflict {
            code: ErrorCode::JobNotFinished,
            message: format!(
                "simulation {id} is {}{why}; its gateway configuration is served once it has succeeded",
                record.status
            ),
        });
    }
    let trace = store
        .get_simulation_trace(id)
        .await?
        .ok_or_else(|| Error::Internal(format!("simulation {id} has no stored trace")))?;
    let url = service_url.to_string();
    tokio::task::spawn_blocking(move || gateway_config(&params, &trace, &url))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

/// The gateway configuration of a home job from its parameters and stored traces (one section
/// per device of its table). Blocking.
pub fn gateway_config(params: &HomeParams, trace: &[u8], service_url: &str) -> Result<GatewayPlan> {
    let sections = decode_sections(trace)?;
    if sections.len() != params.devices.len() {
        return Err(Error::Internal("the stored traces do not match the device table".into()));
    }
    let packets: Vec<Vec<Packet>> = sections.iter().map(|s| decode_packets(s)).collect::<Result<_>>()?;
    let names = params.names();
    let partition = params.partition()?;
    let mut spec = params.settings.clone();
    spec.k = spec.k.or(Some(params.k));
    spec.record_plan(&partition, &names, &packets);

    // Each device's MAC and IPs, as its packets were selected by.
    let addresses: Vec<(Option<String>, Vec<String>)> = params
        .devices
        .iter()
        .map(|d| {
            let mut mac = None;
            let mut ips = Vec::new();
            for a in &d.addresses {
                match parse_mac(a) {
                    Some(m) if mac.is_none() => mac = Some(format_mac(&m)),
                    Some(_) => {}
                    None => ips.push(a.clone()),
                }
            }
            (mac, ips)
        })
        .collect();
    let without_mac: Vec<&str> = partition
        .sets
        .iter()
        .flat_map(|s| s.members.iter())
        .filter(|&&d| addresses[d].0.is_none())
        .map(|&d| names[d].as_str())
        .collect();
    if !without_mac.is_empty() {
        return Err(Error::Conflict {
            code: ErrorCode::MissingMac,
            message: format!(
                "set members without a MAC address: {} (the gateway matches frames by MAC); submit the home's \
                 captures with a device table that has a `mac` column",
                without_mac.join(", ")
            ),
        });
    }
    let service = match (&params.targets, spec.defense) {
        (Some(TargetsSource::Generation { model_set, generation, .. }), SetDefenseKind::Targets) => {
            Some(GatewayService {
                url: service_url.trim_end_matches('/').to_string(),
                generation: generation.to_string(),
                model_set: model_set.clone(),
            })
        }
        (Some(TargetsSource::PerturbationJob { .. } | TargetsSource::UploadedSchedule { .. }), _) => {
            return Err(Error::Conflict {
                code: ErrorCode::TargetsNotServed,
                message: "this simulation's target rows are a fixed schedule; a gateway fetches each set's rows from \
                          a served set-targets model set: simulate with `generation` and ?model_set="
                    .into(),
            });
        }
        _ => None,
    };

    // Set by set (so that the table's set column and spec.sets name the same sets in the same
    // order, members too), then the devices in no set.
    let in_sets = partition.sets.iter().flat_map(|s| s.members.iter().map(move |&d| (d, Some(s.name.clone()))));
    let in_none = (0..names.len()).filter(|d| !partition.sets.iter().any(|s| s.members.contains(d))).map(|d| (d, None));
    let mut devices = Vec::new();
    let mut omitted = Vec::new();
    for (d, set) in in_sets.chain(in_none) {
        match &addresses[d].0 {
            Some(mac) => devices.push(GatewayDevice {
                name: names[d].clone(),
                mac: mac.clone(),
                ip: addresses[d].1.clone(),
                set,
            }),
            None => omitted.push(names[d].clone()),
        }
    }
    Ok(GatewayPlan { config: GatewayConfig { defense: spec.defense, spec, devices, service }, omitted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        jobs::{
            codec::{encode_packets, encode_sections},
            params::{HomeDevice, HomeSet},
        },
        models::GenerationChoice,
        traffic::{CaptureStats, Direction, Transport},
    };

    /// Four devices: d0 (MAC, IP), d1 (MAC), d2 (IP only, in no set), d3 (MAC and IP), and the
    /// set {d3, d0, d1} in that order.
    fn home(defense: &str, targets: Option<TargetsSource>, addresses_of_d1: &[&str]) -> (HomeParams, Vec<u8>) {
        let addresses: [Vec<String>; 4] = [
            vec!["F4:B8:5E:FF:2B:1B".into(), "10.0.0.1".into()],
            addresses_of_d1.iter().map(|a| a.to_string()).collect(),
            vec!["10.0.0.3".into()],
            vec!["10.0.0.4".into(), "02:00:00:00:00:04".into()],
        ];
        let packets: Vec<Vec<Packet>> = (0..4)
            .map(|d| {
                (0..10)
                    .map(|i| Packet {
                        time_ns: i * 100_000_000 + d,
                        size: 60 + 10 * d as u32 + i as u32,
                        direction: if i % 3 == 0 { Direction::In } else { Direction::Out },
                        transport: Transport::Tcp,
                    })
                    .collect()
            })
            .collect();
        let params = HomeParams {
            settings: serde_json::from_value(serde_json::json!({"defense": defense, "seed": 7})).expect("spec"),
            targets,
            k: 3,
            devices: (0..4)
                .map(|d| HomeDevice { name: format!("d{d}"), addresses: addresses[d].clone(), packets: 10 })
                .collect(),
            sets: vec![HomeSet { name: "set-1".into(), members: vec!["d3".into(), "d0".into(), "d1".into()] }],
            excluded: vec![],
            trace_names: vec!["t.pcap".into()],
            capture: CaptureStats::default(),
        };
        let sections: Vec<Vec<u8>> = packets.iter().map(|p| encode_packets(p)).collect();
        (params, encode_sections(&sections))
    }

    #[test]
    fn devices_set_by_set_with_their_addresses_and_the_plan_in_the_spec() {
        let (params, trace) = home("regulator", None, &["02:00:00:00:00:02"]);
        let plan = gateway_config(&params, &trace, "http://x").expect("config");
        let c = &plan.config;
        assert_eq!(c.defense, SetDefenseKind::Regulator);
        let names: Vec<&str> = c.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["d3", "d0", "d1"], "the set's members in its order; d2 has no MAC");
        assert_eq!(plan.omitted, ["d2"]);
        assert_eq!(c.devices[1].mac, "f4:b8:5e:ff:2b:1b");
        assert_eq!(c.devices[1].ip, ["10.0.0.1"]);
        assert_eq!(c.devices[0].ip, ["10.0.0.4"]);
        assert!(c.devices.iter().all(|d| d.set.as_deref() == Some("set-1")));
        let sets = c.spec.sets.as_ref().expect("sets");
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].members, ["d3", "d0", "d1"]);
        assert_eq!(c.spec.size_profiles.len(), 1);
        let p = &c.spec.size_profiles[0];
        let total: u64 = p.incoming.iter().chain(&p.outgoing).map(|(_, n)| n).sum();
        assert_eq!(total, 30, "the members' packets, not d2's");
        assert_eq!((c.spec.k, c.spec.seed), (Some(3), Some(7)));
        assert!(c.service.is_none());
    }

    #[test]
    fn a_member_without_a_mac_is_refused() {
        let (params, trace) = home("supersequence", None, &["10.0.0.2"]);
        let e = gateway_config(&params, &trace, "http://x").expect_err("d1 has no MAC");
        assert_eq!(e.code(), "missing_mac");
        assert!(e.to_string().contains("d1"), "{e}");
    }

    #[test]
    fn targets_name_the_service_and_fixed_schedules_are_refused() {
        let from_generators = TargetsSource::Generation {
            model_set: "tj-oconnor-2021-sets".into(),
            generation: GenerationChoice::Mix,
            chunk: 64,
        };
        let (params, trace) = home("targets", Some(from_generators), &["02:00:00:00:00:02"]);
        let plan = gateway_config(&params, &trace, "https://ipet.example/").expect("config");
        assert_eq!(
            plan.config.service,
            Some(GatewayService {
                url: "https://ipet.example".into(),
                generation: "mix".into(),
                model_set: "tj-oconnor-2021-sets".into()
            })
        );
        let fixed = TargetsSource::UploadedSchedule { rows: 40 };
        let (params, trace) = home("targets", Some(fixed), &["02:00:00:00:00:02"]);
        let e = gateway_config(&params, &trace, "http://x").expect_err("fixed rows");
        assert_eq!(e.code(), "targets_not_served");
    }
}
