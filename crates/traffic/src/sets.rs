//! Anonymity sets: which devices of a home share one defended traffic pattern.
//!
//! A set hides its members from each other (they all emit the same per-slot target); sets may
//! still be told apart. Where a set comes from:
//! - the device table's `set` column, or an override naming the sets ([`parse_sets`]): devices
//!   with the same name are one set, whatever its size (the operator's choice);
//! - every device left unassigned that has traffic is grouped by [`cluster`] into sets of at least
//!   `k` devices.
//!
//! Devices without a single kept packet have nothing to hide and no profile: they are left out
//! of every set and reported ([`SetPartition::excluded`]), unless a set defense specification
//! names them ([`SilentDevices::Covered`]): its sets are a gateway's configuration, and a gateway
//! covers for every member it is configured with, whether or not it sends.
//!
//! ## Clustering
//!
//! The cost of a set is the padding its supersequence needs (the plainest set defense: every
//! member sends, per slot and direction, the largest packets and bytes of any member), counted on
//! the home's slot grid and normalised to the home's real traffic:
//! `padded bytes / real bytes + padded packets / real packets`. Devices are sorted by their volume
//! profile (mean bytes per active slot, both directions; ties by name), and the partition into
//! CONTIGUOUS groups of this order with every group of size >= k that minimises the summed cost is
//! found exactly by dynamic programming over the sorted order. A supersequence's padding only
//! grows when a group grows (the maximum over more members is no smaller), so the optimum uses
//! groups of k to 2k - 1 devices and only those are tried: O(n k) group costs, each a merge of the
//! members' active slots. Sorting by volume first is the approximation (a 1-D order instead of all
//! partitions); it puts heavy senders (cameras) with heavy senders, where padding to the set's
//! maximum is cheap. Up to [`EXACT_MAX`] devices no order is assumed: every partition into groups
//! of k to 2k - 1 (one group of all when fewer than 2k) is tried by dynamic programming over
//! subsets, so devices whose bursts coincide end up together whatever their volumes. On the
//! in-repo week both searches give the same sets ({3 cameras} {4 hubs and locks}, the cheapest of
//! all 56 two-set partitions: docs/evaluation/cheaper-protection.md).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    devices::DeviceTable,
    packet::{Direction, Packet},
};
use crate::error::{Error, ErrorCode, Result};

/// Default minimum set size for clustering.
pub const DEFAULT_K: usize = 3;

/// Homes of up to this many devices (left to cluster) are partitioned exactly; larger ones in
/// the volume order (see the module doc). 3^10 subset pairs at most.
pub const EXACT_MAX: usize = 10;

/// One anonymity set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnonymitySet {
    /// The name from the table or override, or `auto-N` for a set formed by clustering.
    pub name: String,
    /// Device ids (positions in the device table), ascending.
    pub members: Vec<usize>,
}

/// The home's devices in sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetPartition {
    pub sets: Vec<AnonymitySet>,
    /// Device ids without any kept packet: in no set, not defended (unless named by a
    /// specification's sets: [`SilentDevices::Covered`]).
    pub excluded: Vec<usize>,
}

impl SetPartition {
    /// The set holding a device.
    pub fn set_of(&self, device: usize) -> Option<&AnonymitySet> {
        self.sets.iter().find(|s| s.members.contains(&device))
    }
}

/// Parses a sets override, `a,b,c;d,e` (sets separated by `;`, member names by `,`), into one
/// optional set name per device of the table (`set-1`, `set-2`, ... in the order given). Unknown
/// or repeated names are refused; devices not named stay unassigned.
pub fn parse_sets(spec: &str, table: &DeviceTable) -> Result<Vec<Option<String>>> {
    let bad = |m: String| Error::invalid(ErrorCode::InvalidSets, m);
    let mut assigned: Vec<Option<String>> = vec![None; table.len()];
    let groups: Vec<&str> = spec.split(';').map(str::trim).filter(|g| !g.is_empty()).collect();
    if groups.is_empty() {
        return Err(bad(format!("{spec:?} names no set; write sets as `a,b,c;d,e`")));
    }
    for (i, group) in groups.iter().enumerate() {
        for name in group.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let d = table
                .by_name(name)
                .ok_or_else(|| bad(format!("set {}: {name:?} is not in the device table", i + 1)))?;
            if let Some(prev) = &assigned[d.id] {
                return Err(bad(format!("{name:?} is named in two sets ({prev} and set-{})", i + 1)));
            }
            assigned[d.id] = Some(format!("set-{}", i + 1));
        }
    }
    Ok(assigned)
}

/// Per device, its traffic per active slot of the home grid (slot -> [in_p, in_b, out_p, out_b]).
fn slot_profile(packets: &[Packet], origin_ns: i64, omega_ns: i64) -> Vec<(i64, [f64; 4])> {
    let mut out: Vec<(i64, [f64; 4])> = Vec::new();
    for p in packets {
        let slot = (p.time_ns - origin_ns).div_euclid(omega_ns);
        let col = match p.direction {
            Direction::In => 0,
            Direction::Out => 2,
        };
        match out.last_mut() {
            Some((s, v)) if *s == slot => {
                v[col] += 1.0;
                v[col + 1] += f64::from(p.size);
            }
            _ => {
                let mut v = [0.0; 4];
                v[col] = 1.0;
                v[col + 1] = f64::from(p.size);
                out.push((slot, v));
            }
        }
    }
    out
}

/// The normalised supersequence padding of a group (see the module doc).
fn group_cost(profiles: &[&[(i64, [f64; 4])]], real_packets: f64, real_bytes: f64) -> f64 {
    let mut merged: BTreeMap<i64, ([f64; 4], [f64; 4])> = BTreeMap::new();
    for prof in profiles {
        for (slot, v) in prof.iter() {
            let e = merged.entry(*slot).or_insert(([0.0; 4], [0.0; 4]));
            for (c, &x) in v.iter().enumerate() {
                e.0[c] = e.0[c].max(x);
                e.1[c] += x;
            }
        }
    }
    let n = profiles.len() as f64;
    let (mut pad_p, mut pad_b) = (0.0, 0.0);
    for (max, sum) in merged.values() {
        pad_p += n * (max[0] + max[2]) - (sum[0] + sum[2]);
        pad_b += n * (max[1] + max[3]) - (sum[1] + sum[3]);
    }
    pad_p / real_packets.max(1.0) + pad_b / real_bytes.max(1.0)
}

/// Groups `devices` (ids with traffic) into sets of at least `k` (see the module doc).
/// `packets[id]` are the device's packets in time order; the grid starts at `origin_ns`.
pub fn cluster(
    devices: &[usize],
    packets: &[Vec<Packet>],
    k: usize,
    origin_ns: i64,
    omega_ns: i64,
    names: &[String],
) -> Result<Vec<Vec<usize>>> {
    if k == 0 {
        return Err(Error::invalid(ErrorCode::InvalidSetSize, "k must be at least 1"));
    }
    if devices.len() < k {
        return Err(Error::invalid(
            ErrorCode::InvalidSetSize,
            format!(
                "k = {k} but only {} device(s) with traffic are left to group into sets of at least k",
                devices.len()
            ),
        ));
    }
    let profiles: Vec<Vec<(i64, [f64; 4])>> =
        devices.iter().map(|&d| slot_profile(&packets[d], origin_ns, omega_ns)).collect();
    let real_packets: f64 = profiles.iter().flatten().map(|(_, v)| v[0] + v[2]).sum();
    let real_bytes: f64 = profiles.iter().flatten().map(|(_, v)| v[1] + v[3]).sum();
    if devices.len() <= EXACT_MAX {
        return Ok(exact_partition(devices, &profiles, k, real_packets, real_bytes));
    }
    let volume = |i: usize| {
        let p = &profiles[i];
        p.iter().map(|(_, v)| v[1] + v[3]).sum::<f64>() / p.len().max(1) as f64
    };
    let mut order: Vec<usize> = (0..devices.len()).collect();
    order.sort_by(|&a, &b| volume(a).total_cmp(&volume(b)).then_with(|| names[devices[a]].cmp(&names[devices[b]])));
    let n = order.len();
    // best[j]: the cheapest partition of order[..j]; from[j]: where its last group starts.
    let mut best = vec![f64::INFINITY; n + 1];
    let mut from = vec![0usize; n + 1];
    best[0] = 0.0;
    for j in k..=n {
        let lo = j.saturating_sub(2 * k - 1);
        for i in lo..=j - k {
            if !best[i].is_finite() {
                continue;
            }
            let group: Vec<&[(i64, [f64; 4])]> = order[i..j].iter().map(|&o| profiles[o].as_slice()).collect();
            let c = best[i] + group_cost(&group, real_packets, real_bytes);
            if c < best[j] {
                best[j] = c;
                from[j] = i;
            }
        }
    }
    if !best[n].is_finite() {
        // Unreachable for n >= k (one group of all is always allowed when n < 2k; otherwise
        // groups of k..2k-1 tile any n >= k), but a clear error beats a panic.
        return Err(Error::invalid(
            ErrorCode::InvalidSetSize,
            format!("no partition of {n} devices into sets of >= {k}"),
        ));
    }
    let mut groups = Vec::new();
    let mut j = n;
    while j > 0 {
        let i = from[j];
        let mut g: Vec<usize> = order[i..j].iter().map(|&o| devices[o]).collect();
        g.sort_unstable();
        groups.push(g);
        j = i;
    }
    groups.sort();
    Ok(groups)
}

/// The cheapest partition of `devices` into groups of `k..2k - 1` (or one group of all when
/// there are fewer than `2k`), over every partition: dynamic programming over subsets, each
/// group's cost computed once. Ties go to the first found (subsets in ascending bit order), so
/// the result is deterministic.
fn exact_partition(
    devices: &[usize],
    profiles: &[Vec<(i64, [f64; 4])>],
    k: usize,
    real_packets: f64,
    real_bytes: f64,
) -> Vec<Vec<usize>> {
    let n = devices.len();
    let full: usize = (1 << n) - 1;
    let allowed = |size: usize| if n < 2 * k { size == n } else { (k..2 * k).contains(&size) };
    let mut cost = vec![f64::NAN; 1 << n];
    let mut best = vec![f64::INFINITY; 1 << n];
    let mut pick = vec![0usize; 1 << n];
    best[0] = 0.0;
    for mask in 1..=full {
        // The group holding the lowest device of `mask`, and the best partition of the rest.
        let low = mask & mask.wrapping_neg();
        let rest = mask ^ low;
        let mut sub = rest;
        loop {
            let group = sub | low;
            let size = group.count_ones() as usize;
            if allowed(size) && best[mask ^ group].is_finite() {
                if cost[group].is_nan() {
                    let members: Vec<&[(i64, [f64; 4])]> =
                        (0..n).filter(|i| group >> i & 1 == 1).map(|i| profiles[i].as_slice()).collect();
                    cost[group] = group_cost(&members, real_packets, real_bytes);
                }
                let c = best[mask ^ group] + cost[group];
                if c < best[mask] {
                    best[mask] = c;
                    pick[mask] = group;
                }
            }
            if sub == 0 {
                break;
            }
            sub = (sub - 1) & rest;
        }
    }
    let mut groups = Vec::new();
    let mut mask = full;
    while mask != 0 && best[mask].is_finite() {
        let g = pick[mask];
        let mut members: Vec<usize> = (0..n).filter(|i| g >> i & 1 == 1).map(|i| devices[i]).collect();
        members.sort_unstable();
        groups.push(members);
        mask ^= g;
    }
    groups.sort();
    groups
}

/// What becomes of a device named to a set that has no kept packet in the captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilentDevices {
    /// Left out of every set and reported: sets from the table's `set` column or an override,
    /// which assign the devices of the captures at hand.
    Excluded,
    /// A member of the set that names it, sent cover like the others: the sets of a set defense
    /// specification, a gateway's configuration (the gateway covers for every member it is
    /// configured with, so its simulation must too).
    Covered,
}

/// The home's sets: named ones from `assigned` (one entry per device of the table: the table's
/// `set` column, an override or a specification's sets), the unassigned devices with traffic
/// clustered into sets of at least `k`, devices without packets excluded unless `silent` keeps
/// the named ones. A named set is held to `k` too: one with fewer members (with traffic, where
/// silent devices are excluded) is refused (400 `invalid_set_size`; a set of one hides nothing),
/// so that `k` is the least set size whichever way the sets were made.
pub fn form_sets(
    table: &DeviceTable,
    assigned: &[Option<String>],
    packets: &[Vec<Packet>],
    k: usize,
    omega_ns: i64,
    silent: SilentDevices,
) -> Result<SetPartition> {
    if k == 0 {
        return Err(Error::invalid(ErrorCode::InvalidSetSize, "k must be at least 1"));
    }
    if table.devices().iter().all(|d| packets[d.id].is_empty()) {
        return Err(Error::invalid(ErrorCode::NoPackets, "no device of the table has a kept packet in the captures"));
    }
    let kept = |d: usize| !packets[d].is_empty() || (silent == SilentDevices::Covered && assigned[d].is_some());
    let excluded: Vec<usize> = table.devices().iter().map(|d| d.id).filter(|&d| !kept(d)).collect();
    let defended = table.len() - excluded.len();
    let what = match silent {
        SilentDevices::Excluded => "device(s) with traffic",
        SilentDevices::Covered => "device(s) with traffic or named by the specification",
    };
    if k > defended {
        return Err(Error::invalid(
            ErrorCode::InvalidSetSize,
            format!("k = {k} is larger than the {defended} {what} in the captures"),
        ));
    }
    let mut sets: Vec<AnonymitySet> = Vec::new();
    let mut unassigned = Vec::new();
    for d in table.devices().iter().map(|d| d.id).filter(|d| !excluded.contains(d)) {
        match &assigned[d] {
            Some(name) => match sets.iter_mut().find(|s| &s.name == name) {
                Some(s) => s.members.push(d),
                None => sets.push(AnonymitySet { name: name.clone(), members: vec![d] }),
            },
            None => unassigned.push(d),
        }
    }
    if let Some(small) = sets.iter().find(|s| s.members.len() < k) {
        let names: Vec<&str> = small.members.iter().map(|&d| table.devices()[d].name.as_str()).collect();
        return Err(Error::invalid(
            ErrorCode::InvalidSetSize,
            format!(
                "set {:?} has {} {what} ({}); every set needs at least k = {k} (a set of one hides \
                 nothing): add members, merge it with another set, or lower k",
                small.name,
                small.members.len(),
                names.join(", ")
            ),
        ));
    }
    if !unassigned.is_empty() {
        let origin = packets.iter().filter_map(|p| p.first()).map(|p| p.time_ns).min().unwrap_or(0);
        let names: Vec<String> = table.devices().iter().map(|d| d.name.clone()).collect();
        let groups = cluster(&unassigned, packets, k, origin, omega_ns, &names).map_err(|e| match e {
            Error::InvalidInput { code, message } if !sets.is_empty() => Error::invalid(
                code,
                format!("{message} (the other devices are assigned to sets by the table or --sets)"),
            ),
            other => other,
        })?;
        let mut n = 0;
        for members in groups {
            n += 1;
            while sets.iter().any(|s| s.name == format!("auto-{n}")) {
                n += 1;
            }
            sets.push(AnonymitySet { name: format!("auto-{n}"), members });
        }
    }
    Ok(SetPartition { sets, excluded })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Transport;

    const S: i64 = 1_000_000_000;

    fn table(n: usize, sets: &str) -> DeviceTable {
        let mut text = String::from("name,ip,set\n");
        let sets: Vec<&str> = sets.split(',').collect();
        for i in 0..n {
            text.push_str(&format!("d{i},10.0.0.{},{}\n", i + 1, sets.get(i).copied().unwrap_or("")));
        }
        DeviceTable::from_csv_str(&text).expect("table")
    }

    /// A device sending `size`-byte packets every `every` seconds for 100 s.
    fn traffic(size: u32, every: i64, phase: i64) -> Vec<Packet> {
        (0..100 / every)
            .map(|i| Packet {
                time_ns: phase + i * every * S,
                size,
                direction: Direction::Out,
                transport: Transport::Udp,
            })
            .collect()
    }

    #[test]
    fn the_set_column_wins_and_empty_devices_are_excluded() {
        let t = table(4, "a,b,a,b");
        let packets = vec![traffic(10, 1, 0), traffic(10, 1, 0), traffic(10, 1, 0), vec![]];
        let assigned: Vec<Option<String>> = t.devices().iter().map(|d| d.set.clone()).collect();
        let p = form_sets(&t, &assigned, &packets, 1, S / 10, SilentDevices::Excluded).expect("sets");
        assert_eq!(
            p.sets,
            vec![
                AnonymitySet { name: "a".into(), members: vec![0, 2] },
                AnonymitySet { name: "b".into(), members: vec![1] },
            ]
        );
        assert_eq!(p.excluded, vec![3]);
        assert_eq!(p.set_of(2).map(|s| s.name.as_str()), Some("a"));
    }

    #[test]
    fn a_specification_keeps_the_silent_members_it_names() {
        // d3 (set "b") and d4 (no set) send nothing. A specification's sets are a gateway's
        // configuration: d3 stays in "b" (the gateway covers for it), d4 is still excluded.
        let t = table(5, "a,b,a,b");
        let packets = vec![traffic(10, 1, 0), traffic(10, 1, 0), traffic(10, 1, 0), vec![], vec![]];
        let assigned: Vec<Option<String>> = t.devices().iter().map(|d| d.set.clone()).collect();
        assert_eq!(assigned[4], None);
        let p = form_sets(&t, &assigned, &packets, 2, S / 10, SilentDevices::Covered).expect("sets");
        assert_eq!(
            p.sets,
            vec![
                AnonymitySet { name: "a".into(), members: vec![0, 2] },
                AnonymitySet { name: "b".into(), members: vec![1, 3] },
            ]
        );
        assert_eq!(p.excluded, vec![4]);
        // The same assignment from the table's column: d3 is excluded and "b" is too small.
        let err = form_sets(&t, &assigned, &packets, 2, S / 10, SilentDevices::Excluded).expect_err("b of one");
        assert!(err.to_string().contains("set \"b\" has 1 device(s) with traffic (d1)"), "{err}");
        // A home without a packet is refused either way.
        let none = vec![vec![]; 5];
        for silent in [SilentDevices::Covered, SilentDevices::Excluded] {
            assert_eq!(
                form_sets(&t, &assigned, &none, 1, S / 10, silent).expect_err("no packets").code(),
                "no_packets"
            );
        }
    }

    #[test]
    fn named_sets_smaller_than_k_are_refused() {
        // "b" has one device with traffic (d3 has none): with k = 2 it is refused, naming it.
        let t = table(4, "a,b,a,b");
        let packets = vec![traffic(10, 1, 0), traffic(10, 1, 0), traffic(10, 1, 0), vec![]];
        let assigned: Vec<Option<String>> = t.devices().iter().map(|d| d.set.clone()).collect();
        let err = form_sets(&t, &assigned, &packets, 2, S / 10, SilentDevices::Excluded).expect_err("a singleton");
        assert_eq!(err.code(), "invalid_set_size");
        assert!(err.to_string().contains("set \"b\" has 1 device(s) with traffic (d1)"), "{err}");
        assert!(err.to_string().contains("k = 2"), "{err}");
        // Both sets of two with traffic: accepted at k = 2.
        let packets = vec![traffic(10, 1, 0), traffic(10, 1, 0), traffic(10, 1, 0), traffic(10, 1, 0)];
        assert_eq!(form_sets(&t, &assigned, &packets, 2, S / 10, SilentDevices::Excluded).expect("sets").sets.len(), 2);
    }

    #[test]
    fn k_larger_than_the_devices_with_traffic_is_a_clear_error() {
        let t = table(4, "");
        let packets = vec![traffic(10, 1, 0), traffic(10, 1, 0), traffic(10, 1, 0), vec![]];
        let none = vec![None; 4];
        let err = form_sets(&t, &none, &packets, 4, S / 10, SilentDevices::Excluded).expect_err("k too large");
        assert_eq!(err.code(), "invalid_set_size");
        assert!(err.to_string().contains("3 device(s)"), "{err}");
        assert_eq!(
            form_sets(&t, &none, &packets, 0, S / 10, SilentDevices::Excluded).expect_err("k = 0").code(),
            "invalid_set_size"
        );
        // Three devices, k = 3: one set of all.
        let p = form_sets(&t, &none, &packets, 3, S / 10, SilentDevices::Excluded).expect("sets");
        assert_eq!(p.sets, vec![AnonymitySet { name: "auto-1".into(), members: vec![0, 1, 2] }]);
        // Two named, one left: it cannot form a set of 2 alone.
        let mixed = vec![Some("x".to_string()), Some("x".to_string()), None, None];
        let err = form_sets(&t, &mixed, &packets, 2, S / 10, SilentDevices::Excluded).expect_err("one left");
        assert_eq!(err.code(), "invalid_set_size");
    }

    #[test]
    fn clustering_puts_similar_volumes_together_with_sets_of_at_least_k() {
        // Two heavy senders (1000 B) and two light ones (50 B), interleaved in the table.
        let t = table(5, "");
        let packets = vec![
            traffic(1000, 1, 0),
            traffic(50, 10, 0),
            traffic(1000, 1, S / 2),
            traffic(50, 10, 3 * S),
            traffic(60, 10, 5 * S),
        ];
        let p =
            form_sets(&t, &[None, None, None, None, None], &packets, 2, S / 10, SilentDevices::Excluded).expect("sets");
        let groups: Vec<Vec<usize>> = p.sets.iter().map(|s| s.members.clone()).collect();
        assert_eq!(groups, vec![vec![0, 2], vec![1, 3, 4]]);
        assert!(p.sets.iter().all(|s| s.members.len() >= 2));
        // Any table size: 30 devices, k = 4.
        let t = table(30, "");
        let packets: Vec<Vec<Packet>> = (0..30).map(|i| traffic(10 + 37 * i as u32, 1 + i as i64 % 5, 0)).collect();
        let p = form_sets(&t, &vec![None; 30], &packets, 4, S / 10, SilentDevices::Excluded).expect("sets");
        assert!(p.sets.iter().all(|s| (4..=7).contains(&s.members.len())));
        assert_eq!(p.sets.iter().map(|s| s.members.len()).sum::<usize>(), 30);
    }

    #[test]
    fn the_exact_search_pairs_devices_whose_bursts_coincide_whatever_their_volumes() {
        // d0 and d2 burst together, d1 and d3 together; volumes interleave them (d0 < d1 < d2 <
        // d3), so groups contiguous in volume order would pair d0-d1 and d2-d3, each padding
        // the other's every burst.
        let t = table(4, "");
        let packets = vec![traffic(100, 2, 0), traffic(110, 2, S), traffic(120, 2, 0), traffic(130, 2, S)];
        let p = form_sets(&t, &[None, None, None, None], &packets, 2, S / 10, SilentDevices::Excluded).expect("sets");
        let groups: Vec<Vec<usize>> = p.sets.iter().map(|s| s.members.clone()).collect();
        assert_eq!(groups, vec![vec![0, 2], vec![1, 3]]);
    }

    #[test]
    fn sets_override_is_parsed_and_checked() {
        let t = table(4, "");
        let a = parse_sets("d0, d2 ; d1", &t).expect("sets");
        assert_eq!(a, vec![Some("set-1".into()), Some("set-2".into()), Some("set-1".into()), None]);
        for bad in ["d0,d9", "d0;d0", " ; "] {
            assert_eq!(parse_sets(bad, &t).expect_err(bad).code(), "invalid_sets", "{bad}");
        }
    }
}
