//! Captures in: pcap, pcapng (via `pcap-file`) and the reference's tshark CSV, frames decoded with
//! `etherparse`, the reference's traffic rules applied, packets attributed to devices.
//!
//! Rules (reference doc, section 1): only TCP and UDP packets that cross the LAN boundary (one end
//! a LAN unicast address, the other a global one) are kept; size is the transport payload computed
//! from the headers' wire lengths (IP total length, TCP data offset, UDP length), never from the
//! captured length (captures are often cut at a snap length); payload-less TCP is dropped.
//! Non-IP and truncated frames are skipped and counted, never fatal, except the live gateway's
//! cover frames (EtherType 0x88B5 with an `IPCV` tag, [`crate::cover`]): such a frame is
//! attributed by MAC (the device's MAC as source: outgoing; as destination: incoming) and kept
//! as a UDP packet of the size its tag carries, as the simulator counts cover.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    net::IpAddr,
    path::{Path, PathBuf},
};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};
use pcap_file::{
    DataLink, PcapError, TsResolution,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader, blocks::interface_description::InterfaceDescriptionOption},
};
use serde::Serialize;

pub use super::packet::{IpPacket, Skip};
use super::{
    address::{Scope, scope},
    cover,
    devices::{DeviceTable, Mac, MatchedBy},
    packet::{Direction, Packet, Transport},
    tshark_csv,
};
use crate::error::{Error, ErrorCode, Result};

/// What happened to the frames of one or more captures.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptureStats {
    pub frames: u64,
    pub kept: u64,
    pub skipped_non_ip: u64,
    pub skipped_truncated: u64,
    pub skipped_not_tcp_udp: u64,
    pub skipped_not_lan_boundary: u64,
    pub skipped_no_payload: u64,
    pub skipped_unknown_device: u64,
    pub matched_by_mac: u64,
    pub matched_by_ip: u64,
    /// Per device of the table: packets skipped because both ends were inside the LAN (a device
    /// with these and no kept packet talks only to the LAN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lan_packets_by_device: Vec<u64>,
    /// Per device of the table: TCP/UDP frames it sent to a multicast or broadcast address
    /// (discovery: mDNS, SSDP, DHCP), which cross no LAN boundary and are never kept (a device
    /// with these and no kept packet is heard only announcing itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub multicast_packets_by_device: Vec<u64>,
}

impl CaptureStats {
    pub fn add(&mut self, other: &CaptureStats) {
        self.frames += other.frames;
        self.kept += other.kept;
        self.skipped_non_ip += other.skipped_non_ip;
        self.skipped_truncated += other.skipped_truncated;
        self.skipped_not_tcp_udp += other.skipped_not_tcp_udp;
        self.skipped_not_lan_boundary += other.skipped_not_lan_boundary;
        self.skipped_no_payload += other.skipped_no_payload;
        self.skipped_unknown_device += other.skipped_unknown_device;
        self.matched_by_mac += other.matched_by_mac;
        self.matched_by_ip += other.matched_by_ip;
        if self.lan_packets_by_device.len() < other.lan_packets_by_device.len() {
            self.lan_packets_by_device.resize(other.lan_packets_by_device.len(), 0);
        }
        for (a, b) in self.lan_packets_by_device.iter_mut().zip(&other.lan_packets_by_device) {
            *a += b;
        }
        if self.multicast_packets_by_device.len() < other.multicast_packets_by_device.len() {
            self.multicast_packets_by_device.resize(other.multicast_packets_by_device.len(), 0);
        }
        for (a, b) in self.multicast_packets_by_device.iter_mut().zip(&other.multicast_packets_by_device) {
            *a += b;
        }
    }

    fn count_for(counts: &mut Vec<u64>, devices: usize, device: usize) {
        if counts.len() < devices {
            counts.resize(devices, 0);
        }
        counts[device] += 1;
    }
}

/// Whether a frame goes to a group: a multicast or broadcast MAC, or a multicast or the
/// limited-broadcast IP address.
fn to_a_group(p: &IpPacket) -> bool {
    let ip = match p.dst {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_multicast(),
    };
    ip || p.dst_mac.is_some_and(|m| m[0] & 1 == 1)
}

/// Applies the LAN-boundary, payload and attribution rules.
pub fn attribute(p: &IpPacket, table: &DeviceTable) -> std::result::Result<(usize, MatchedBy, Packet), Skip> {
    if p.cover {
        let by_mac = |mac: Option<Mac>| mac.and_then(|m| table.attribute(p.src, Some(m)));
        let (device, by, direction) = match (by_mac(p.src_mac), by_mac(p.dst_mac)) {
            (Some((d, by)), _) => (d, by, Direction::Out),
            (None, Some((d, by))) => (d, by, Direction::In),
            (None, None) => return Err(Skip::UnknownDevice),
        };
        return Ok((device, by, Packet { time_ns: p.time_ns, size: p.payload, direction, transport: p.transport }));
    }
    let (lan_ip, lan_mac, direction) = match (scope(p.src), scope(p.dst)) {
        (Scope::Lan, Scope::Internet) => (p.src, p.src_mac, Direction::Out),
        (Scope::Internet, Scope::Lan) => (p.dst, p.dst_mac, Direction::In),
        (Scope::Lan, Scope::Lan) if table.counts_lan_traffic() => match table.attribute(p.src, p.src_mac) {
            Some(_) => (p.src, p.src_mac, Direction::Out),
            None => (p.dst, p.dst_mac, Direction::In),
        },
        _ => return Err(Skip::NotLanBoundary),
    };
    if p.payload == 0 && p.transport == Transport::Tcp {
        return Err(Skip::NoPayload);
    }
    let (device, by) = table.attribute(lan_ip, lan_mac).ok_or(Skip::UnknownDevice)?;
    Ok((device, by, Packet { time_ns: p.time_ns, size: p.payload, direction, transport: p.transport }))
}

/// Decodes one link-layer frame into an IP packet with its transport payload length.
pub fn decode_frame(link: DataLink, data: &[u8], time_ns: i64) -> std::result::Result<IpPacket, Skip> {
    if link == DataLink::ETHERNET
        && let Some(tag) = cover::cover_tag(data)
    {
        let mac = |r: std::ops::Range<usize>| -> Option<Mac> { data.get(r).and_then(|s| s.try_into().ok()) };
        let none = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        return Ok(IpPacket {
            time_ns,
            src: none,
            dst: none,
            src_mac: mac(6..12),
            dst_mac: mac(0..6),
            transport: Transport::Udp,
            payload: tag.size,
            cover: true,
        });
    }
    let sliced = match link {
        DataLink::ETHERNET => LaxSlicedPacket::from_ethernet(data).map_err(|_| Skip::Truncated)?,
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => {
            LaxSlicedPacket::from_ip(data).map_err(|_| Skip::Truncated)?
        }
        DataLink::LINUX_SLL => {
            // Linux cooked capture v1: 16-byte header ending in the EtherType.
            let proto = data.get(14..16).ok_or(Skip::Truncated)?;
            LaxSlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([proto[0], proto[1]])), &data[16..])
        }
        _ => return Err(Skip::NonIp),
    };
    let (src_mac, dst_mac) = match &sliced.link {
        Some(LinkSlice::Ethernet2(eth)) => (Some(eth.source()), Some(eth.destination())),
        _ => (None, None),
    };
    let (src, dst, ip_payload_len) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let header_len = usize::from(h.ihl()) * 4 + ip.extensions().auth.map_or(0, |a| a.slice().len());
            let len = usize::from(h.total_len()).checked_sub(header_len).ok_or(Skip::Truncated)?;
            (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), len)
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let ext = ip.extensions().slice().len();
            let len = usize::from(h.payload_length()).checked_sub(ext).ok_or(Skip::Truncated)?;
            (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), len)
        }
        Some(LaxNetSlice::Arp(_)) => return Err(Skip::NonIp),
        None => {
            return Err(match sliced.stop_err {
                Some(_) => Skip::Truncated,
                None => Skip::NonIp,
            });
        }
    };
    let (transport, payload) = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let header = usize::from(tcp.data_offset()) * 4;
            (Transport::Tcp, ip_payload_len.checked_sub(header).ok_or(Skip::Truncated)?)
        }
        Some(TransportSlice::Udp(udp)) => (Transport::Udp, usize::from(udp.length()).saturating_sub(8)),
        Some(_) => return Err(Skip::NotTcpUdp),
        None => {
            return Err(match sliced.stop_err {
                Some(_) => Skip::Truncated,
                None => Skip::NotTcpUdp,
            });
        }
    };
    Ok(IpPacket { time_ns, src, dst, src_mac, dst_mac, transport, payload: payload as u32, cover: false })
}

/// Feeds the kept packets of one capture (any supported format, detected from its first bytes)
/// to `sink(device_id, packet)`, in file order, counting what was skipped.
pub fn read_capture<R: Read>(
    mut source: R,
    name: &str,
    table: &DeviceTable,
    stats: &mut CaptureStats,
    mut sink: impl FnMut(usize, MatchedBy, Packet),
) -> Result<()> {
    // The format is told from the first bytes, however the source hands them over (a pipe or a
    // network body may give a few at a time): gather them before looking.
    let mut first = Vec::with_capacity(1 << 16);
    source.by_ref().take(1 << 16).read_to_end(&mut first).map_err(|e| Error::io(format!("reading {name}"), e))?;
    let mut reader = BufReader::with_capacity(1 << 16, std::io::Cursor::new(first).chain(source));
    let head = reader.fill_buf().map_err(|e| Error::io(format!("reading {name}"), e))?;
    let mut on_ip = |p: std::result::Result<IpPacket, Skip>, stats: &mut CaptureStats| {
        stats.frames += 1;
        let p_copy = p;
        match p.and_then(|p| attribute(&p, table)) {
            Ok((device, by, packet)) => {
                stats.kept += 1;
                match by {
                    MatchedBy::Mac => stats.matched_by_mac += 1,
                    MatchedBy::Ip => stats.matched_by_ip += 1,
                }
                sink(device, by, packet);
            }
            Err(skip) => {
                if skip == Skip::NotLanBoundary
                    && let Ok(p) = &p_copy
                {
                    if to_a_group(p) {
                        if let Some((device, _)) = table.attribute(p.src, p.src_mac) {
                            CaptureStats::count_for(&mut stats.multicast_packets_by_device, table.len(), device);
                        }
                    } else if scope(p.src) == Scope::Lan
                        && scope(p.dst) == Scope::Lan
                        && let Some((device, _)) =
                            table.attribute(p.src, p.src_mac).or_else(|| table.attribute(p.dst, p.dst_mac))
                    {
                        CaptureStats::count_for(&mut stats.lan_packets_by_device, table.len(), device);
                    }
                }
                let c = match skip {
                    Skip::NonIp => &mut stats.skipped_non_ip,
                    Skip::Truncated => &mut stats.skipped_truncated,
                    Skip::NotTcpUdp => &mut stats.skipped_not_tcp_udp,
                    Skip::NotLanBoundary => &mut stats.skipped_not_lan_boundary,
                    Skip::NoPayload => &mut stats.skipped_no_payload,
                    Skip::UnknownDevice => &mut stats.skipped_unknown_device,
                };
                *c += 1;
            }
        }
    };
    match Format::detect(head) {
        Some(Format::Pcap) => {
            let mut pcap = PcapReader::new(reader).map_err(|e| corrupt(name, &e))?;
            let header = pcap.header();
            let link = header.datalink;
            let ns_per_tick = match header.ts_resolution {
                TsResolution::MicroSecond => 1_000,
                TsResolution::NanoSecond => 1,
            };
            // Raw records: pcap-file's checked ones refuse a record whose orig_len exceeds the
            // header's snap length, which is every cut frame of a capture taken with one.
            while let Some(next) = pcap.next_raw_packet() {
                match next {
                    Ok(pkt) => {
                        let t = i64::from(pkt.ts_sec) * 1_000_000_000 + i64::from(pkt.ts_frac) * ns_per_tick;
                        on_ip(decode_frame(link, &pkt.data, t), stats);
                    }
                    Err(e) if cut_short(&e) => {
                        // A capture cut in the middle of its last record.
                        stats.frames += 1;
                        stats.skipped_truncated += 1;
                        break;
                    }
                    Err(e) => return Err(corrupt(name, &e)),
                }
            }
        }
        Some(Format::PcapNg) => {
            let mut ng = PcapNgReader::new(reader).map_err(|e| corrupt(name, &e))?;
            // (link type, if_tsresol) of each interface described so far in this section.
            let mut interfaces: Vec<(DataLink, u8)> = Vec::new();
            while let Some(next) = ng.next_block() {
                let block = match next {
                    Ok(b) => b,
                    Err(e) if cut_short(&e) => {
                        stats.frames += 1;
                        stats.skipped_truncated += 1;
                        break;
                    }
                    Err(e) => return Err(corrupt(name, &e)),
                };
                let (interface, raw_ts, data) = match &block {
                    Block::SectionHeader(_) => {
                        interfaces.clear();
                        continue;
                    }
                    Block::InterfaceDescription(idb) => {
                        let resolution = idb.options.iter().find_map(|o| match o {
                            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                            _ => None,
                        });
                        interfaces.push((idb.linktype, resolution.unwrap_or(6)));
                        continue;
                    }
                    Block::EnhancedPacket(epb) => (epb.interface_id, epb.timestamp.as_nanos() as u64, &epb.data),
                    Block::SimplePacket(spb) => (0, 0, &spb.data),
                    _ => continue,
                };
                let Some(&(link, resolution)) = interfaces.get(interface as usize) else {
                    return Err(corrupt(name, &"a packet names an interface that was never described"));
                };
                // pcap-file hands the raw timestamp over as nanoseconds; its unit is really
                // the interface's if_tsresol (microseconds unless said otherwise).
                on_ip(decode_frame(link, data, scale_pcapng_timestamp(raw_ts, resolution)), stats);
            }
        }
        Some(Format::TsharkCsv) => tshark_csv::read(reader, name, |p| on_ip(p, stats))?,
        None => {
            let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
            return Err(Error::invalid(
                ErrorCode::NotACapture,
                format!(
                    "{name}: not a pcap, pcapng or tshark CSV file (it starts with bytes {}; a tshark CSV needs a header naming {})",
                    if shown.is_empty() { "nothing: it is empty".to_string() } else { shown.join(" ") },
                    tshark_csv::REQUIRED.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn scale_pcapng_timestamp(raw: u64, tsresol: u8) -> i64 {
    let exp = u32::from(tsresol & 0x7f);
    let ns = if tsresol & 0x80 == 0 {
        if exp <= 9 { raw as u128 * 10u128.pow(9 - exp) } else { raw as u128 / 10u128.pow((exp - 9).min(38)) }
    } else {
        (raw as u128 * 1_000_000_000) >> exp.min(127)
    };
    ns.min(i64::MAX as u128) as i64
}

/// Whether pcap-file stopped because the capture ends inside a record or block: its reader
/// reports that as an unexpected end of file, not as `IncompleteBuffer`.
fn cut_short(e: &PcapError) -> bool {
    match e {
        PcapError::IncompleteBuffer => true,
        PcapError::IoError(io) => io.kind() == std::io::ErrorKind::UnexpectedEof,
        _ => false,
    }
}

fn corrupt(name: &str, e: &dyn std::fmt::Display) -> Error {
    Error::invalid(ErrorCode::CorruptCapture, format!("{name}: the capture is damaged: {e}"))
}

enum Format {
    Pcap,
    PcapNg,
    TsharkCsv,
}

impl Format {
    fn detect(head: &[u8]) -> Option<Format> {
        match head.get(..4)? {
            [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d] => Some(Format::Pcap),
            [0x0a, 0x0d, 0x0d, 0x0a] => Some(Format::PcapNg),
            _ if tshark_csv::looks_like(head) => Some(Format::TsharkCsv),
            _ => None,
        }
    }
}

/// Per-device packets of a set of captures, each device's sorted by time.
#[derive(Debug, Clone)]
pub struct DeviceTraffic {
    pub packets: Vec<Vec<Packet>>,
    /// Per device, how many packets were recognised by MAC and by IP.
    pub matched: Vec<[u64; 2]>,
    pub stats: CaptureStats,
    /// Files found in folders that were no captures, each with its note.
    pub skipped_files: Vec<String>,
}

/// A device of the table that kept no packet, and why.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DroppedDevice {
    pub id: usize,
    pub name: String,
    /// `lan_only` (it talked only to hosts inside the LAN, which do not count unless asked),
    /// `multicast_only` (only its multicast or broadcast frames were seen: discovery, which
    /// crosses no LAN boundary) or `not_seen` (no packet of it in the captures).
    pub reason: String,
    /// Its packets inside the LAN (skipped unless LAN traffic counts).
    pub lan_packets: u64,
    /// Its TCP/UDP frames to multicast or broadcast addresses (never kept).
    #[serde(default)]
    pub multicast_packets: u64,
    /// The reason in a sentence (see [`DroppedDevice::why`]), for reports.
    #[serde(default)]
    pub why: String,
}

impl DroppedDevice {
    /// Why it was dropped, in a sentence (the CLI's warning, the evaluation's report).
    pub fn why(&self) -> String {
        let multicast = if self.multicast_packets > 0 {
            format!(", besides {} multicast/broadcast frames", self.multicast_packets)
        } else {
            String::new()
        };
        match self.reason.as_str() {
            "lan_only" => format!(
                "it talked only to hosts inside the LAN ({} packets{multicast}), which do not count without --lan-traffic",
                self.lan_packets
            ),
            "multicast_only" => format!(
                "only multicast/broadcast frames of it were seen ({} frames: discovery such as mDNS, SSDP or DHCP), \
                 which cross no LAN boundary and are never kept",
                self.multicast_packets
            ),
            _ => "no packet of it is in the captures (check its MAC/IP in the device table)".to_string(),
        }
    }
}

impl DeviceTraffic {
    /// The devices that kept no packet, with the reason.
    pub fn dropped_devices(&self, table: &DeviceTable) -> Vec<DroppedDevice> {
        table
            .devices()
            .iter()
            .filter(|d| self.packets[d.id].is_empty())
            .map(|d| {
                let lan_packets = self.stats.lan_packets_by_device.get(d.id).copied().unwrap_or(0);
                let multicast_packets = self.stats.multicast_packets_by_device.get(d.id).copied().unwrap_or(0);
                let reason = match (lan_packets, multicast_packets) {
                    (0, 0) => "not_seen",
                    (0, _) => "multicast_only",
                    _ => "lan_only",
                };
                let mut dropped = DroppedDevice {
                    id: d.id,
                    name: d.name.clone(),
                    reason: reason.to_string(),
                    lan_packets,
                    multicast_packets,
                    why: String::new(),
                };
                dropped.why = dropped.why();
                dropped
            })
            .collect()
    }

    /// "mac", "ip", "mac+ip", or None for a device that was not seen.
    pub fn matched_by(&self, device: usize) -> Option<String> {
        match self.matched[device] {
            [0, 0] => None,
            [_, 0] => Some("mac".into()),
            [0, _] => Some("ip".into()),
            _ => Some("mac+ip".into()),
        }
    }
}

/// A capture file to read, and whether it was found by walking a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureFile {
    pub path: PathBuf,
    /// Found inside a named folder: a file there that is no capture (a device table, notes) is
    /// skipped with a note instead of ending the run.
    pub walked: bool,
}

const CAPTURE_EXTENSIONS: [&str; 3] = ["pcap", "pcapng", "cap"];

fn extension(path: &Path) -> Option<String> {
    path.extension().and_then(|x| x.to_str()).map(str::to_ascii_lowercase)
}

/// Capture files named directly, and every file inside named folders and their subfolders (a
/// dataset: one folder per device, the device table beside them), sorted by path.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<CaptureFile>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside = Vec::new();
            for entry in walkdir::WalkDir::new(p).follow_links(true).sort_by_file_name() {
                let entry = entry.map_err(|e| {
                    let path = e.path().map_or_else(|| p.display().to_string(), |q| q.display().to_string());
                    Error::invalid(ErrorCode::NoCaptures, format!("{path}: cannot be listed: {e}"))
                })?;
                if entry.file_type().is_file() {
                    inside.push(CaptureFile { path: entry.into_path(), walked: true });
                }
            }
            let looks_like_capture = |f: &CaptureFile| {
                extension(&f.path).is_some_and(|x| CAPTURE_EXTENSIONS.contains(&x.as_str()) || x == "csv" || x == "tsv")
            };
            if !inside.iter().any(looks_like_capture) {
                return Err(Error::invalid(
                    ErrorCode::NoCaptures,
                    format!("{}: no capture files (.pcap, .pcapng, .cap, .csv) inside", p.display()),
                ));
            }
            files.extend(inside);
        } else if p.is_file() {
            files.push(CaptureFile { path: p.clone(), walked: false });
        } else {
            return Err(Error::invalid(ErrorCode::NoCaptures, format!("{}: no such file or directory", p.display())));
        }
    }
    Ok(files)
}

/// Reads one capture file into `sink`. A file found by walking a folder that is no capture (and
/// is not named like one: a `.pcap` that is not one is damaged, and fatal) is skipped: returns
/// the note saying so.
pub fn read_capture_file(
    file: &CaptureFile,
    table: &DeviceTable,
    stats: &mut CaptureStats,
    sink: impl FnMut(usize, MatchedBy, Packet),
) -> Result<Option<String>> {
    let f = File::open(&file.path).map_err(|e| Error::io(format!("opening {}", file.path.display()), e))?;
    match read_capture(f, &file.path.display().to_string(), table, stats, sink) {
        Ok(()) => Ok(None),
        Err(e)
            if e.code() == "not_a_capture"
                && file.walked
                && !extension(&file.path).is_some_and(|x| CAPTURE_EXTENSIONS.contains(&x.as_str())) =>
        {
            let note = format!("{}: skipped, not a capture", file.path.display());
            tracing::warn!(file = %file.path.display(), "skipped: not a pcap, pcapng or tshark CSV file");
            Ok(Some(note))
        }
        Err(e) => Err(e),
    }
}

/// Reads every capture and groups the kept packets by device.
pub fn read_captures(paths: &[PathBuf], table: &DeviceTable) -> Result<DeviceTraffic> {
    let mut packets = vec![Vec::new(); table.len()];
    let mut matched = vec![[0u64; 2]; table.len()];
    let mut stats = CaptureStats::default();
    let mut skipped_files = Vec::new();
    for file in expand_paths(paths)? {
        let mut file_stats = CaptureStats::default();
        let note = read_capture_file(&file, table, &mut file_stats, |d, by, p| {
            packets[d].push(p);
            matched[d][by as usize] += 1;
        })?;
        match note {
            Some(note) => skipped_files.push(note),
            None => {
                tracing::info!(file = %file.path.display(), frames = file_stats.frames, kept = file_stats.kept, "capture read")
            }
        }
        stats.add(&file_stats);
    }
    for p in &mut packets {
        p.sort_by_key(|p| p.time_ns);
    }
    stats.lan_packets_by_device.resize(table.len(), 0);
    stats.multicast_packets_by_device.resize(table.len(), 0);
    Ok(DeviceTraffic { packets, matched, stats, skipped_files })
}

/// Reads one capture file.
pub fn read_capture_path(path: &Path, table: &DeviceTable) -> Result<DeviceTraffic> {
    read_captures(&[path.to_path_buf()], table)
}
