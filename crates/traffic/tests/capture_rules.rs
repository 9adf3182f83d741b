//! The traffic rules of the data plane (reference doc, sections 1-2), one test per rule, on
//! hand-made frames written into in-memory pcap / pcapng / tshark-CSV captures.

#![allow(clippy::unwrap_used)]

use std::{
    borrow::Cow,
    io::Cursor,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};

use etherparse::{PacketBuilder, PacketBuilderStep, VlanId};
use ipet_traffic::{
    DeviceTable, Direction, Packet, Transport, WindowSettings, Windows,
    capture::{CaptureStats, IpPacket, Skip, attribute, decode_frame, read_capture, read_captures},
    devices::MatchedBy,
};
use pcap_file::{
    DataLink, Endianness, TsResolution,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
    },
};

// ---------------------------------------------------------------------------------------------
// The home: a device table and some addresses.
// ---------------------------------------------------------------------------------------------

const CAM_MAC: [u8; 6] = [0xf4, 0xb8, 0x5e, 0xff, 0x2b, 0x1b];
const TEN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
const SEVENTEEN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
const ULA_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const STRANGER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const BROADCAST_MAC: [u8; 6] = [0xff; 6];

const CAM: usize = 0;
const TEN: usize = 1;
const SEVENTEEN: usize = 2;
const ULA: usize = 3;
const IPONLY: usize = 4;

fn table() -> DeviceTable {
    DeviceTable::from_csv_str(
        "name,mac,ip,description\n\
         cam,f4:b8:5e:ff:2b:1b,192.168.1.129,a camera\n\
         ten,02:00:00:00:00:10,10.1.2.3,\n\
         seventeen,02:00:00:00:00:11,172.16.5.4,\n\
         ula,02:00:00:00:00:12,fd00::12,\n\
         iponly,,192.168.1.50,only an IP\n",
    )
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const CAM_IP: &str = "192.168.1.129";
const CLOUD: &str = "52.70.158.224";
const CLOUD6: &str = "2600:1f18::1";

// ---------------------------------------------------------------------------------------------
// Frames.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum L4 {
    /// A TCP segment with this many payload bytes (0: a bare ACK).
    Tcp(usize),
    /// A UDP datagram with this many payload bytes.
    Udp(usize),
    /// An ICMP(v6) echo request.
    Icmp,
}

/// An Ethernet II frame (optionally 802.1Q-tagged) carrying one IP packet.
fn frame(src_mac: [u8; 6], dst_mac: [u8; 6], vlan: Option<u16>, src: &str, dst: &str, l4: L4) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let (src, dst) = (ip(src), ip(dst));
    let step = match (vlan, src, dst) {
        (None, IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (None, IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        (Some(v), IpAddr::V4(s), IpAddr::V4(d)) => {
            eth.single_vlan(VlanId::try_new(v).unwrap()).ipv4(s.octets(), d.octets(), 64)
        }
        (Some(v), IpAddr::V6(s), IpAddr::V6(d)) => {
            eth.single_vlan(VlanId::try_new(v).unwrap()).ipv6(s.octets(), d.octets(), 64)
        }
        _ => panic!("mixed IP versions"),
    };
    transport(step, src.is_ipv4(), l4)
}

/// A frame without a link layer (pcap link type RAW).
fn raw_ip(src: &str, dst: &str, l4: L4) -> Vec<u8> {
    let (src, dst) = (ip(src), ip(dst));
    let step = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed IP versions"),
    };
    transport(step, src.is_ipv4(), l4)
}

fn transport(step: PacketBuilderStep<etherparse::IpHeaders>, v4: bool, l4: L4) -> Vec<u8> {
    let mut out = Vec::new();
    match l4 {
        L4::Tcp(n) => {
            let b = step.tcp(50_000, 443, 1, 64_000).ack(1);
            let b = if n > 0 { b.psh() } else { b };
            b.write(&mut out, &vec![0xab; n]).unwrap();
        }
        L4::Udp(n) => step.udp(50_001, 53).write(&mut out, &vec![0xcd; n]).unwrap(),
        L4::Icmp if v4 => step.icmpv4_echo_request(1, 1).write(&mut out, b"ping").unwrap(),
        L4::Icmp => step.icmpv6_echo_request(1, 1).write(&mut out, b"ping").unwrap(),
    }
    out
}

/// An Ethernet II frame of some other EtherType (ARP 0x0806, 802.1X 0x888e).
fn non_ip_frame(ether_type: u16, body_len: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&BROADCAST_MAC);
    f.extend_from_slice(&CAM_MAC);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend(std::iter::repeat_n(0x01, body_len));
    f
}

/// A real ARP request: who has 192.168.1.1, tell 192.168.1.129.
fn arp_frame() -> Vec<u8> {
    let mut f = non_ip_frame(0x0806, 0);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&CAM_MAC);
    f.extend_from_slice(&[192, 168, 1, 129]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[192, 168, 1, 1]);
    f.extend_from_slice(&[0; 18]); // Ethernet padding to 60 bytes.
    f
}

/// An EAPOL-Key frame (802.1X, as in a WPA handshake).
fn eapol_frame() -> Vec<u8> {
    let mut f = non_ip_frame(0x888e, 0);
    f.extend_from_slice(&[0x02, 0x03, 0x00, 0x5f]);
    f.extend(std::iter::repeat_n(0u8, 0x5f));
    f
}

// ---------------------------------------------------------------------------------------------
// Captures.
// ---------------------------------------------------------------------------------------------

/// One record: timestamp in nanoseconds since the epoch, the captured bytes, the wire length.
struct Rec {
    t_ns: u64,
    data: Vec<u8>,
    orig_len: u32,
}

fn rec(t_ns: u64, data: Vec<u8>) -> Rec {
    let orig_len = data.len() as u32;
    Rec { t_ns, data, orig_len }
}

const T0: u64 = 1_615_190_400_000_000_000; // 2021-03-08T08:00:00Z.

fn pcap_with(header: PcapHeader, recs: &[Rec]) -> Vec<u8> {
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    for r in recs {
        w.write_packet(&PcapPacket::new(Duration::from_nanos(r.t_ns), r.orig_len, &r.data)).unwrap();
    }
    w.into_writer()
}

/// A classic little-endian microsecond Ethernet pcap, as tcpdump writes it.
fn pcap(recs: &[Rec]) -> Vec<u8> {
    pcap_with(
        PcapHeader { endianness: Endianness::Little, ts_resolution: TsResolution::MicroSecond, ..Default::default() },
        recs,
    )
}

/// A pcapng with one interface per entry of `tsresol` (None: no if_tsresol option). Each record
/// is (interface, raw timestamp in that interface's units, frame).
fn pcapng(endianness: Endianness, tsresol: &[Option<u8>], recs: &[(u32, u64, Vec<u8>)]) -> Vec<u8> {
    let mut w = PcapNgWriter::with_endianness(Vec::new(), endianness).unwrap();
    for r in tsresol {
        let options = r.map(InterfaceDescriptionOption::IfTsResol).into_iter().collect();
        w.write_pcapng_block(InterfaceDescriptionBlock { linktype: DataLink::ETHERNET, snaplen: 0xffff, options })
            .unwrap();
    }
    for (interface_id, raw, data) in recs {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: *interface_id,
            // pcap-file writes the Duration's nanoseconds as the raw 64-bit timestamp.
            timestamp: Duration::from_nanos(*raw),
            original_len: data.len() as u32,
            data: Cow::Borrowed(data),
            options: vec![],
        })
        .unwrap();
    }
    w.into_inner()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    device: usize,
    by: MatchedBy,
    packet: Packet,
}

/// Reads one in-memory capture with the test table.
fn read(bytes: &[u8]) -> (ipet_traffic::Result<()>, CaptureStats, Vec<Seen>) {
    read_with(bytes, &table())
}

fn read_with(bytes: &[u8], table: &DeviceTable) -> (ipet_traffic::Result<()>, CaptureStats, Vec<Seen>) {
    let mut stats = CaptureStats::default();
    let mut seen = Vec::new();
    let r = read_capture(Cursor::new(bytes.to_vec()), "test", table, &mut stats, |device, by, packet| {
        seen.push(Seen { device, by, packet })
    });
    (r, stats, seen)
}

/// Reads a capture that must be fine.
fn read_ok(bytes: &[u8]) -> (CaptureStats, Vec<Seen>) {
    let (r, stats, seen) = read(bytes);
    r.unwrap();
    assert_eq!(stats.frames, stats.kept + skipped(&stats), "every frame is kept or skipped once: {stats:?}");
    assert_eq!(stats.kept, seen.len() as u64);
    assert_eq!(stats.kept, stats.matched_by_mac + stats.matched_by_ip);
    (stats, seen)
}

fn skipped(s: &CaptureStats) -> u64 {
    s.skipped_non_ip
        + s.skipped_truncated
        + s.skipped_not_tcp_udp
        + s.skipped_not_lan_boundary
        + s.skipped_no_payload
        + s.skipped_unknown_device
}

/// The single packet a one-frame capture keeps.
fn only(frame: Vec<u8>) -> Seen {
    let (stats, seen) = read_ok(&pcap(&[rec(T0, frame)]));
    assert_eq!(seen.len(), 1, "{stats:?}");
    seen[0]
}

/// The stats of a one-frame capture that keeps nothing.
fn dropped(frame: Vec<u8>) -> CaptureStats {
    let (stats, seen) = read_ok(&pcap(&[rec(T0, frame)]));
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(stats.frames, 1);
    assert_eq!(stats.kept, 0);
    stats
}

fn pkt(time_ns: u64, size: u32, direction: Direction, transport: Transport) -> Packet {
    Packet { time_ns: time_ns as i64, size, direction, transport }
}

fn err_code(r: ipet_traffic::Result<()>) -> (String, String) {
    let e = r.expect_err("an error");
    (e.code().to_string(), e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Direction, transport and size.
// ---------------------------------------------------------------------------------------------

#[test]
fn tcp_out_is_outgoing_with_its_payload_size() {
    let s = only(frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(517)));
    assert_eq!(s.device, CAM);
    assert_eq!(s.by, MatchedBy::Mac);
    assert_eq!(s.packet, pkt(T0, 517, Direction::Out, Transport::Tcp));
}

#[test]
fn tcp_in_is_incoming_with_its_payload_size() {
    let s = only(frame(GW_MAC, CAM_MAC, None, CLOUD, CAM_IP, L4::Tcp(1448)));
    assert_eq!(s.device, CAM);
    assert_eq!(s.packet, pkt(T0, 1448, Direction::In, Transport::Tcp));
}

#[test]
fn udp_out_and_in_count_udp_length_minus_8() {
    let out = frame(CAM_MAC, GW_MAC, None, CAM_IP, "8.8.8.8", L4::Udp(33));
    // The UDP length field says 41; the size is 41 - 8.
    assert_eq!(u16::from_be_bytes([out[14 + 20 + 4], out[14 + 20 + 5]]), 41);
    let s = only(out);
    assert_eq!(s.packet, pkt(T0, 33, Direction::Out, Transport::Udp));
    let s = only(frame(GW_MAC, CAM_MAC, None, "8.8.8.8", CAM_IP, L4::Udp(120)));
    assert_eq!(s.packet, pkt(T0, 120, Direction::In, Transport::Udp));
}

/// A cover frame of the live gateway, built byte by byte from its documented layout
/// (`ipet_traffic::cover`): EtherType 0x88B5, `IPCV`, direction, flags, device, size, due, mirrors.
fn cover_frame(dst: [u8; 6], src: [u8; 6], direction: u8, size: u32) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(b"IPCV");
    f.extend_from_slice(&[direction, 0, 0, 7]);
    f.extend_from_slice(&size.to_be_bytes());
    f.extend_from_slice(&123_456_789i64.to_be_bytes());
    f.extend_from_slice(&0i64.to_be_bytes());
    f.resize((size as usize + 42).max(60), 0);
    f
}

#[test]
fn cover_frames_count_by_mac_as_udp_of_the_tagged_size() {
    // Outgoing: the device's MAC as source.
    let s = only(cover_frame(GW_MAC, CAM_MAC, 1, 500));
    assert_eq!((s.device, s.by), (CAM, MatchedBy::Mac));
    assert_eq!(s.packet, pkt(T0, 500, Direction::Out, Transport::Udp));
    // Incoming: the device's MAC as destination; a small one is padded to 60 bytes on the wire
    // and still counts the size its tag carries.
    let s = only(cover_frame(CAM_MAC, GW_MAC, 0, 3));
    assert_eq!((s.device, s.by), (CAM, MatchedBy::Mac));
    assert_eq!(s.packet, pkt(T0, 3, Direction::In, Transport::Udp));
    let s = only(cover_frame(GW_MAC, TEN_MAC, 1, 1200));
    assert_eq!(s.device, TEN);
    // The data plane's builder writes the same bytes.
    let mut built = Vec::new();
    let tag = ipet_traffic::cover::CoverTag {
        direction: Direction::Out,
        device: 7,
        size: 500,
        due_ns: 123_456_789,
        mirrors_ns: 0,
    };
    ipet_traffic::cover::cover(&mut built, &GW_MAC, &CAM_MAC, &tag);
    assert_eq!(built, cover_frame(GW_MAC, CAM_MAC, 1, 500));
    // No device at either end: unknown. Another 0x88B5 frame (no tag, e.g. the testbed's probe)
    // and a truncated tag stay non-IP.
    assert_eq!(dropped(cover_frame(GW_MAC, STRANGER_MAC, 1, 100)).skipped_unknown_device, 1);
    assert_eq!(dropped(non_ip_frame(0x88b5, 46)).skipped_non_ip, 1);
    let mut cut = cover_frame(GW_MAC, CAM_MAC, 1, 100);
    cut.truncate(14 + 10);
    assert_eq!(dropped(cut).skipped_non_ip, 1);
    // Mixed with real frames, cover and real of a device interleave in time order.
    let (_, seen) = read_ok(&pcap(&[
        rec(T0, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(100))),
        rec(T0 + 1_000, cover_frame(GW_MAC, CAM_MAC, 1, 100)),
    ]));
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].packet, pkt(T0 + 1_000, 100, Direction::Out, Transport::Udp));
}

#[test]
fn tcp_options_are_not_payload() {
    // A segment with 12 bytes of TCP options (data offset 8): the payload is what follows them.
    let mut out = Vec::new();
    let mut tcp = etherparse::TcpHeader::new(50_000, 443, 1, 64_000);
    tcp.ack = true;
    tcp.acknowledgment_number = 1;
    tcp.set_options(&[
        etherparse::TcpOptionElement::Noop,
        etherparse::TcpOptionElement::Noop,
        etherparse::TcpOptionElement::Timestamp(1, 2),
    ])
    .unwrap();
    assert_eq!(tcp.header_len(), 32);
    PacketBuilder::ethernet2(CAM_MAC, GW_MAC)
        .ipv4([192, 168, 1, 129], [52, 70, 158, 224], 64)
        .tcp_header(tcp)
        .write(&mut out, &[7; 100])
        .unwrap();
    assert_eq!(only(out).packet.size, 100);
}

#[test]
fn size_comes_from_header_lengths_not_the_captured_length() {
    // A 1000-byte segment cut at 60 captured bytes (a snap length): still 1000 bytes.
    let full = frame(GW_MAC, CAM_MAC, None, CLOUD, CAM_IP, L4::Tcp(1000));
    assert_eq!(full.len(), 14 + 20 + 20 + 1000);
    let cut = Rec { t_ns: T0, data: full[..60].to_vec(), orig_len: full.len() as u32 };
    let (stats, seen) = read_ok(&pcap(&[cut]));
    assert_eq!(stats.skipped_truncated, 0);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].packet, pkt(T0, 1000, Direction::In, Transport::Tcp));

    // The same for UDP and for IPv6, cut right after the transport header.
    let udp = frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Udp(700));
    let udp6 = frame(ULA_MAC, GW_MAC, None, "fd00::12", CLOUD6, L4::Tcp(900));
    let (_, seen) = read_ok(&pcap(&[
        Rec { t_ns: T0, data: udp[..14 + 20 + 8].to_vec(), orig_len: udp.len() as u32 },
        Rec { t_ns: T0 + 1, data: udp6[..14 + 40 + 20].to_vec(), orig_len: udp6.len() as u32 },
    ]));
    assert_eq!(seen.iter().map(|s| s.packet.size).collect::<Vec<_>>(), vec![700, 900]);
}

#[test]
fn ethernet_padding_is_not_payload() {
    // A bare ACK is padded to the 60-byte Ethernet minimum: the padding is no payload.
    let mut ack = frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(0));
    ack.resize(60, 0);
    let stats = dropped(ack);
    assert_eq!(stats.skipped_no_payload, 1);
    // A 1-byte UDP datagram padded to 60 bytes is 1 byte.
    let mut udp = frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Udp(1));
    udp.resize(60, 0);
    assert_eq!(only(udp).packet.size, 1);
}

// ---------------------------------------------------------------------------------------------
// Payload-less packets.
// ---------------------------------------------------------------------------------------------

#[test]
fn bare_tcp_ack_is_dropped_as_no_payload() {
    for f in [
        frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(0)),
        frame(GW_MAC, CAM_MAC, None, CLOUD, CAM_IP, L4::Tcp(0)),
        frame(ULA_MAC, GW_MAC, None, "fd00::12", CLOUD6, L4::Tcp(0)),
    ] {
        let stats = dropped(f);
        assert_eq!(stats.skipped_no_payload, 1, "{stats:?}");
    }
}

#[test]
fn zero_length_udp_is_kept_with_size_zero() {
    let s = only(frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Udp(0)));
    assert_eq!(s.packet, pkt(T0, 0, Direction::Out, Transport::Udp));
    let s = only(frame(GW_MAC, CAM_MAC, None, CLOUD, CAM_IP, L4::Udp(0)));
    assert_eq!(s.packet, pkt(T0, 0, Direction::In, Transport::Udp));
}

// ---------------------------------------------------------------------------------------------
// The LAN boundary.
// ---------------------------------------------------------------------------------------------

#[test]
fn lan_to_lan_is_not_a_boundary_crossing() {
    for f in [
        frame(CAM_MAC, GW_MAC, None, CAM_IP, "192.168.1.1", L4::Tcp(100)),
        frame(GW_MAC, CAM_MAC, None, "192.168.1.1", CAM_IP, L4::Udp(100)),
        frame(CAM_MAC, TEN_MAC, None, CAM_IP, "10.1.2.3", L4::Tcp(100)),
        frame(ULA_MAC, GW_MAC, None, "fd00::12", "fe80::1", L4::Udp(10)),
    ] {
        assert_eq!(dropped(f).skipped_not_lan_boundary, 1);
    }
}

#[test]
fn broadcast_and_multicast_are_not_boundary_crossings() {
    for f in [
        // DHCP discover.
        frame(CAM_MAC, BROADCAST_MAC, None, "0.0.0.0", "255.255.255.255", L4::Udp(300)),
        // Subnet broadcast, mDNS, SSDP, IPv6 mDNS.
        frame(CAM_MAC, BROADCAST_MAC, None, CAM_IP, "255.255.255.255", L4::Udp(40)),
        frame(CAM_MAC, [0x01, 0x00, 0x5e, 0, 0, 0xfb], None, CAM_IP, "224.0.0.251", L4::Udp(40)),
        frame(CAM_MAC, [0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa], None, CAM_IP, "239.255.255.250", L4::Udp(40)),
        frame(ULA_MAC, [0x33, 0x33, 0, 0, 0, 0xfb], None, "fd00::12", "ff02::fb", L4::Udp(40)),
    ] {
        assert_eq!(dropped(f).skipped_not_lan_boundary, 1);
    }
}

#[test]
fn internet_to_internet_is_not_a_boundary_crossing() {
    for f in [
        frame(CAM_MAC, GW_MAC, None, "8.8.8.8", CLOUD, L4::Tcp(100)),
        frame(GW_MAC, CAM_MAC, None, CLOUD6, "2001:4860::8888", L4::Udp(100)),
        // Shared address space (CGNAT) is neither LAN nor internet.
        frame(CAM_MAC, GW_MAC, None, "100.64.0.1", CLOUD, L4::Tcp(100)),
    ] {
        assert_eq!(dropped(f).skipped_not_lan_boundary, 1);
    }
}

#[test]
fn all_private_ranges_are_lan() {
    let s = only(frame(TEN_MAC, GW_MAC, None, "10.1.2.3", CLOUD, L4::Tcp(10)));
    assert_eq!((s.device, s.packet.direction), (TEN, Direction::Out));
    let s = only(frame(GW_MAC, SEVENTEEN_MAC, None, CLOUD, "172.16.5.4", L4::Udp(11)));
    assert_eq!((s.device, s.packet.direction), (SEVENTEEN, Direction::In));
    // 172.32/16 is not private: internet to internet.
    assert_eq!(
        dropped(frame(SEVENTEEN_MAC, GW_MAC, None, "172.32.0.1", CLOUD, L4::Tcp(10))).skipped_not_lan_boundary,
        1
    );
}

#[test]
fn ipv6_ula_device_out_and_in() {
    let s = only(frame(ULA_MAC, GW_MAC, None, "fd00::12", CLOUD6, L4::Tcp(321)));
    assert_eq!((s.device, s.by), (ULA, MatchedBy::Mac));
    assert_eq!(s.packet, pkt(T0, 321, Direction::Out, Transport::Tcp));
    let s = only(frame(GW_MAC, ULA_MAC, None, CLOUD6, "fd00::12", L4::Udp(99)));
    assert_eq!(s.device, ULA);
    assert_eq!(s.packet, pkt(T0, 99, Direction::In, Transport::Udp));
}

#[test]
fn ipv4_mapped_ipv6_internet_address_counts_as_internet() {
    let s = only(frame(GW_MAC, ULA_MAC, None, "::ffff:52.70.158.224", "fd00::12", L4::Tcp(5)));
    assert_eq!((s.device, s.packet.direction), (ULA, Direction::In));
}

// ---------------------------------------------------------------------------------------------
// Frames that are not TCP/UDP over IP, or are broken: skipped and counted, never fatal.
// ---------------------------------------------------------------------------------------------

#[test]
fn icmp_is_not_tcp_udp() {
    assert_eq!(dropped(frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Icmp)).skipped_not_tcp_udp, 1);
    assert_eq!(dropped(frame(GW_MAC, ULA_MAC, None, CLOUD6, "fd00::12", L4::Icmp)).skipped_not_tcp_udp, 1);
}

#[test]
fn arp_and_8021x_are_non_ip() {
    assert_eq!(dropped(arp_frame()).skipped_non_ip, 1);
    assert_eq!(dropped(eapol_frame()).skipped_non_ip, 1);
    // Both, between IP frames, in one capture: not fatal, the IP frames are kept.
    let (stats, seen) = read_ok(&pcap(&[
        rec(T0, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(1))),
        rec(T0 + 1_000, arp_frame()),
        rec(T0 + 2_000, eapol_frame()),
        rec(T0 + 3_000, frame(GW_MAC, CAM_MAC, None, CLOUD, CAM_IP, L4::Tcp(2))),
    ]));
    assert_eq!(stats.skipped_non_ip, 2);
    assert_eq!(seen.iter().map(|s| s.packet.size).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn frame_cut_inside_the_ip_header_is_truncated() {
    let full = frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(100));
    let ipv6 = frame(ULA_MAC, GW_MAC, None, "fd00::12", CLOUD6, L4::Tcp(100));
    let (stats, seen) = read_ok(&pcap(&[
        // Cut inside the IPv4 header, inside the IPv6 header, inside the TCP header, inside
        // the Ethernet header.
        Rec { t_ns: T0, data: full[..14 + 10].to_vec(), orig_len: full.len() as u32 },
        Rec { t_ns: T0 + 1, data: ipv6[..14 + 30].to_vec(), orig_len: ipv6.len() as u32 },
        Rec { t_ns: T0 + 2, data: full[..14 + 20 + 10].to_vec(), orig_len: full.len() as u32 },
        Rec { t_ns: T0 + 3, data: full[..8].to_vec(), orig_len: full.len() as u32 },
        // And a whole frame after them, still read.
        rec(T0 + 4, full.clone()),
    ]));
    assert_eq!(stats.skipped_truncated, 4, "{stats:?}");
    assert_eq!(seen.len(), 1);
}

#[test]
fn ip_total_length_shorter_than_its_headers_is_truncated_not_a_panic() {
    // IPv4 total length 30 with a 20-byte IP header and a 20-byte TCP header.
    let mut f = frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(100));
    f[16..18].copy_from_slice(&30u16.to_be_bytes());
    let stats = dropped(f);
    assert_eq!(stats.skipped_truncated, 1, "{stats:?}");
}

// ---------------------------------------------------------------------------------------------
// VLAN tags, link types.
// ---------------------------------------------------------------------------------------------

#[test]
fn vlan_tagged_frames_are_parsed() {
    let inbound = frame(GW_MAC, CAM_MAC, Some(100), CLOUD, CAM_IP, L4::Tcp(250));
    assert_eq!(&inbound[12..14], &[0x81, 0x00]);
    let s = only(inbound);
    assert_eq!((s.device, s.by), (CAM, MatchedBy::Mac));
    assert_eq!(s.packet, pkt(T0, 250, Direction::In, Transport::Tcp));
    let s = only(frame(GW_MAC, ULA_MAC, Some(100), CLOUD6, "fd00::12", L4::Udp(17)));
    assert_eq!((s.device, s.packet.size, s.packet.direction), (ULA, 17, Direction::In));
    // Rules still apply behind the tag.
    assert_eq!(dropped(frame(GW_MAC, CAM_MAC, Some(100), CLOUD, CAM_IP, L4::Tcp(0))).skipped_no_payload, 1);
    // A VLAN-tagged frame cut inside its IP header.
    let mut cut = frame(GW_MAC, CAM_MAC, Some(100), CLOUD, CAM_IP, L4::Tcp(250));
    cut.truncate(18 + 12);
    assert_eq!(dropped(cut).skipped_truncated, 1);
}

#[test]
fn raw_ip_link_type_is_attributed_by_ip() {
    let bytes = pcap_with(
        PcapHeader { datalink: DataLink::RAW, endianness: Endianness::Little, ..Default::default() },
        &[rec(T0, raw_ip(CAM_IP, CLOUD, L4::Tcp(42))), rec(T0 + 5, raw_ip(CLOUD, "192.168.1.50", L4::Udp(9)))],
    );
    let (stats, seen) = read_ok(&bytes);
    assert_eq!(stats.matched_by_ip, 2);
    assert_eq!(
        seen.iter().map(|s| (s.device, s.by, s.packet.size, s.packet.direction)).collect::<Vec<_>>(),
        vec![(CAM, MatchedBy::Ip, 42, Direction::Out), (IPONLY, MatchedBy::Ip, 9, Direction::In)]
    );
}

#[test]
fn decode_frame_and_attribute_directly() {
    let f = frame(GW_MAC, CAM_MAC, Some(100), CLOUD, CAM_IP, L4::Tcp(77));
    let p: IpPacket = decode_frame(DataLink::ETHERNET, &f, 123).unwrap();
    assert_eq!((p.src, p.dst), (ip(CLOUD), ip(CAM_IP)));
    assert_eq!((p.src_mac, p.dst_mac), (Some(GW_MAC), Some(CAM_MAC)));
    assert_eq!((p.transport, p.payload, p.time_ns), (Transport::Tcp, 77, 123));
    let (device, by, packet) = attribute(&p, &table()).unwrap();
    assert_eq!((device, by), (CAM, MatchedBy::Mac));
    assert_eq!(packet, Packet { time_ns: 123, size: 77, direction: Direction::In, transport: Transport::Tcp });

    assert_eq!(decode_frame(DataLink::ETHERNET, &arp_frame(), 0).unwrap_err(), Skip::NonIp);
    assert_eq!(decode_frame(DataLink::ETHERNET, &f[..20], 0).unwrap_err(), Skip::Truncated);
    assert_eq!(decode_frame(DataLink::ETHERNET, &[], 0).unwrap_err(), Skip::Truncated);
    let icmp = frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Icmp);
    assert_eq!(decode_frame(DataLink::ETHERNET, &icmp, 0).unwrap_err(), Skip::NotTcpUdp);
    let lan = decode_frame(DataLink::ETHERNET, &frame(CAM_MAC, GW_MAC, None, CAM_IP, "192.168.1.1", L4::Tcp(5)), 0);
    assert_eq!(attribute(&lan.unwrap(), &table()).unwrap_err(), Skip::NotLanBoundary);
}

// ---------------------------------------------------------------------------------------------
// Attribution.
// ---------------------------------------------------------------------------------------------

#[test]
fn mac_wins_over_ip() {
    // The camera's MAC under another (DHCP-changed) IP is the camera, matched by MAC.
    let s = only(frame(CAM_MAC, GW_MAC, None, "192.168.1.77", CLOUD, L4::Tcp(10)));
    assert_eq!((s.device, s.by), (CAM, MatchedBy::Mac));
    // The camera's MAC on the 10/8 device's IP is still the camera.
    let s = only(frame(GW_MAC, CAM_MAC, None, CLOUD, "10.1.2.3", L4::Tcp(10)));
    assert_eq!((s.device, s.by), (CAM, MatchedBy::Mac));
}

#[test]
fn unknown_mac_on_a_known_devices_ip_is_not_attributed() {
    let stats = dropped(frame(STRANGER_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(10)));
    assert_eq!(stats.skipped_unknown_device, 1);
    let stats = dropped(frame(GW_MAC, STRANGER_MAC, None, CLOUD, CAM_IP, L4::Udp(10)));
    assert_eq!(stats.skipped_unknown_device, 1);
    // An unknown host altogether.
    let stats = dropped(frame(STRANGER_MAC, GW_MAC, None, "192.168.1.200", CLOUD, L4::Tcp(10)));
    assert_eq!(stats.skipped_unknown_device, 1);
}

#[test]
fn device_with_only_an_ip_is_found_by_ip() {
    let s = only(frame(STRANGER_MAC, GW_MAC, None, "192.168.1.50", CLOUD, L4::Tcp(12)));
    assert_eq!((s.device, s.by), (IPONLY, MatchedBy::Ip));
    let s = only(frame(GW_MAC, STRANGER_MAC, Some(100), CLOUD, "192.168.1.50", L4::Udp(13)));
    assert_eq!((s.device, s.by, s.packet.direction), (IPONLY, MatchedBy::Ip, Direction::In));
    let (stats, _) = read_ok(&pcap(&[rec(T0, frame(STRANGER_MAC, GW_MAC, None, "192.168.1.50", CLOUD, L4::Tcp(12)))]));
    assert_eq!((stats.matched_by_ip, stats.matched_by_mac), (1, 0));
}

#[test]
fn the_lan_end_is_attributed_not_the_gateway() {
    // Outgoing: the source MAC is the device's; the destination MAC (the gateway) is ignored
    // even if it were a device's.
    let s = only(frame(TEN_MAC, CAM_MAC, None, "10.1.2.3", CLOUD, L4::Tcp(3)));
    assert_eq!(s.device, TEN);
    let s = only(frame(TEN_MAC, CAM_MAC, None, CLOUD, CAM_IP, L4::Tcp(3)));
    assert_eq!(s.device, CAM);
}

// ---------------------------------------------------------------------------------------------
// Capture formats and timestamps.
// ---------------------------------------------------------------------------------------------

#[test]
fn classic_pcap_microsecond_timestamps() {
    let t = T0 + 123_456_000;
    let s = only_from(&pcap(&[rec(t, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(1)))]));
    assert_eq!(s.packet.time_ns, t as i64);
}

fn only_from(bytes: &[u8]) -> Seen {
    let (_, seen) = read_ok(bytes);
    assert_eq!(seen.len(), 1);
    seen[0]
}

#[test]
fn classic_pcap_big_endian_and_nanosecond() {
    let t = T0 + 123_456_789;
    for (endianness, res, want) in [
        (Endianness::Big, TsResolution::MicroSecond, T0 + 123_456_000),
        (Endianness::Big, TsResolution::NanoSecond, t),
        (Endianness::Little, TsResolution::NanoSecond, t),
    ] {
        let bytes = pcap_with(
            PcapHeader { endianness, ts_resolution: res, ..Default::default() },
            &[rec(t, frame(GW_MAC, CAM_MAC, Some(100), CLOUD, CAM_IP, L4::Udp(64)))],
        );
        let s = only_from(&bytes);
        assert_eq!(s.packet, pkt(want, 64, Direction::In, Transport::Udp), "{endianness:?} {res:?}");
    }
}

#[test]
fn classic_pcap_with_a_small_snap_length() {
    // tcpdump -s 96: the header's snap length is 96, frames are cut there, orig_len is intact.
    let full = frame(GW_MAC, CAM_MAC, None, CLOUD, CAM_IP, L4::Tcp(1400));
    let small = frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Udp(10));
    let bytes = pcap_with(
        PcapHeader { snaplen: 96, endianness: Endianness::Little, ..Default::default() },
        &[Rec { t_ns: T0, data: full[..96].to_vec(), orig_len: full.len() as u32 }, rec(T0 + 1_000, small)],
    );
    let (r, stats, seen) = read(&bytes);
    r.unwrap();
    assert_eq!(stats.skipped_truncated, 0);
    assert_eq!(seen.iter().map(|s| s.packet.size).collect::<Vec<_>>(), vec![1400, 10]);
}

#[test]
fn pcapng_default_resolution_is_microseconds() {
    let raw_us = (T0 + 250_000_000) / 1_000;
    let bytes =
        pcapng(Endianness::Little, &[None], &[(0, raw_us, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(9)))]);
    let s = only_from(&bytes);
    assert_eq!(s.packet, pkt(T0 + 250_000_000, 9, Direction::Out, Transport::Tcp));
    // if_tsresol 6 said explicitly is the same.
    let bytes =
        pcapng(Endianness::Little, &[Some(6)], &[(0, raw_us, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(9)))]);
    assert_eq!(only_from(&bytes).packet.time_ns, (T0 + 250_000_000) as i64);
}

#[test]
fn pcapng_nanosecond_interface() {
    let t = T0 + 987_654_321;
    let bytes =
        pcapng(Endianness::Little, &[Some(9)], &[(0, t, frame(GW_MAC, CAM_MAC, Some(100), CLOUD, CAM_IP, L4::Tcp(9)))]);
    let s = only_from(&bytes);
    assert_eq!(s.packet, pkt(t, 9, Direction::In, Transport::Tcp));
}

#[test]
fn pcapng_each_interface_has_its_own_resolution() {
    // Interface 0: microseconds (default); 1: nanoseconds; 2: milliseconds; 3: 2^-10 s.
    let t = T0 + 500_000_000;
    let bytes = pcapng(
        Endianness::Big,
        &[None, Some(9), Some(3), Some(0x80 | 10)],
        &[
            (0, t / 1_000, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(1))),
            (1, t + 7, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(2))),
            (2, t / 1_000_000, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(3))),
            // 1024 ticks = 1 s.
            (3, 1024 * 1_615_190_400 + 512, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(4))),
        ],
    );
    let (_, seen) = read_ok(&bytes);
    let times: Vec<(u32, i64)> = seen.iter().map(|s| (s.packet.size, s.packet.time_ns)).collect();
    assert_eq!(times, vec![(1, t as i64), (2, (t + 7) as i64), (3, t as i64), (4, t as i64)]);
}

#[test]
fn pcapng_rules_and_skips_are_the_same() {
    let bytes = pcapng(
        Endianness::Little,
        &[None],
        &[
            (0, 1, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(0))),
            (0, 2, arp_frame()),
            (0, 3, frame(CAM_MAC, GW_MAC, None, CAM_IP, "192.168.1.1", L4::Udp(5))),
            (0, 4, frame(GW_MAC, ULA_MAC, Some(100), CLOUD6, "fd00::12", L4::Udp(0))),
        ],
    );
    let (stats, seen) = read_ok(&bytes);
    assert_eq!(
        (stats.frames, stats.skipped_no_payload, stats.skipped_non_ip, stats.skipped_not_lan_boundary),
        (4, 1, 1, 1)
    );
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].packet, pkt(4_000, 0, Direction::In, Transport::Udp));
}

#[test]
fn pcapng_packet_on_an_undescribed_interface_is_an_error() {
    // pcap-file's writer refuses such a block: write a good file, then rewrite the interface id
    // of its packet block (section header block, interface description block, packet block).
    let mut bytes =
        pcapng(Endianness::Little, &[None], &[(0, 1, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(5)))]);
    let block_len = |at: usize| u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    let idb = block_len(0);
    let epb = idb + block_len(idb);
    assert_eq!(&bytes[epb..epb + 4], &[6, 0, 0, 0]);
    bytes[epb + 8..epb + 12].copy_from_slice(&5u32.to_le_bytes());
    let (r, _, _) = read(&bytes);
    assert_eq!(err_code(r).0, "corrupt_capture");
}

#[test]
fn pcap_whose_last_record_is_cut_short_is_not_fatal() {
    let recs = [
        rec(T0, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(10))),
        rec(T0 + 1_000, frame(GW_MAC, CAM_MAC, None, CLOUD, CAM_IP, L4::Tcp(20))),
    ];
    let whole = pcap(&recs);
    // Cut inside the last record's data, and inside its 16-byte record header.
    let last_len = 16 + recs[1].data.len();
    for cut in [10, last_len - 5] {
        let bytes = &whole[..whole.len() - cut];
        let (r, stats, seen) = read(bytes);
        r.unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(stats.frames, 2, "cut {cut}: {stats:?}");
        assert_eq!(stats.skipped_truncated, 1, "cut {cut}: {stats:?}");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].packet.size, 10);
    }
}

#[test]
fn pcapng_whose_last_block_is_cut_short_is_not_fatal() {
    let whole = pcapng(
        Endianness::Little,
        &[None],
        &[
            (0, 1, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(10))),
            (0, 2, frame(GW_MAC, CAM_MAC, None, CLOUD, CAM_IP, L4::Tcp(20))),
        ],
    );
    let (r, stats, seen) = read(&whole[..whole.len() - 10]);
    r.unwrap();
    assert_eq!((stats.frames, stats.skipped_truncated), (2, 1), "{stats:?}");
    assert_eq!(seen.len(), 1);
}

#[test]
fn not_a_capture() {
    for bytes in [&b"hello world"[..], b"", b"\x0a\x0d", b"name,mac,ip\ncam,f4:b8:5e:ff:2b:1b,\n"] {
        let (r, stats, _) = read(bytes);
        let (code, message) = err_code(r);
        assert_eq!(code, "not_a_capture", "{bytes:?}: {message}");
        assert!(message.contains("test"), "the message names the capture: {message}");
        assert_eq!(stats.frames, 0);
    }
}

/// A source that hands its bytes over one at a time, as a pipe or a network body may.
struct Trickle(Cursor<Vec<u8>>);

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1);
        self.0.read(&mut buf[..n])
    }
}

#[test]
fn captures_are_recognised_from_a_source_that_gives_a_byte_at_a_time() {
    let f = || frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(100));
    for bytes in [
        pcap(&[rec(T0, f()), rec(T0 + 1, f())]),
        pcapng(Endianness::Little, &[None], &[(0, 1, f()), (0, 2, f())]),
        tshark(&[
            "1\t0.0\t192.168.1.129\t52.70.158.224\t6\t100\t0\t\tf4:b8:5e:ff:2b:1b\t02:00:00:00:00:01",
            "2\t0.1\t192.168.1.129\t52.70.158.224\t6\t100\t0\t\tf4:b8:5e:ff:2b:1b\t02:00:00:00:00:01",
        ]),
    ] {
        let mut stats = CaptureStats::default();
        let mut n = 0;
        read_capture(Trickle(Cursor::new(bytes)), "trickle", &table(), &mut stats, |_, _, _| n += 1).unwrap();
        assert_eq!((stats.frames, stats.kept, n), (2, 2, 2), "{stats:?}");
    }
    let mut stats = CaptureStats::default();
    let r = read_capture(Trickle(Cursor::new(b"hello world".to_vec())), "trickle", &table(), &mut stats, |_, _, _| {});
    assert_eq!(err_code(r).0, "not_a_capture");
}

#[test]
fn pcap_with_only_part_of_its_header_is_an_error_not_a_panic() {
    let whole = pcap(&[]);
    let (r, _, _) = read(&whole[..10]);
    assert!(r.is_err());
}

#[test]
fn empty_pcap_and_pcapng_are_fine() {
    let (stats, seen) = read_ok(&pcap(&[]));
    assert_eq!((stats.frames, seen.len()), (0, 0));
    let (stats, seen) = read_ok(&pcapng(Endianness::Little, &[None], &[]));
    assert_eq!((stats.frames, seen.len()), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// tshark CSV.
// ---------------------------------------------------------------------------------------------

const TSHARK_HEADER: &str =
    "frame.number\tframe.time_relative\tip.src\tip.dst\tip.proto\ttcp.len\ttcp.stream\tudp.length\teth.src\teth.dst";

fn tshark(rows: &[&str]) -> Vec<u8> {
    let mut s = String::from(TSHARK_HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s.into_bytes()
}

#[test]
fn tshark_csv_applies_the_same_rules() {
    let cam = "f4:b8:5e:ff:2b:1b";
    let gw = "02:00:00:00:00:01";
    let stranger = "02:00:00:00:00:99";
    let bytes = tshark(&[
        // Kept: TCP out, TCP in, UDP out (40 - 8), zero-length UDP in.
        &format!("1\t0.000000000\t192.168.1.129\t52.70.158.224\t6\t100\t0\t\t{cam}\t{gw}"),
        &format!("2\t0.050000000\t52.70.158.224\t192.168.1.129\t6\t1448\t0\t\t{gw}\t{cam}"),
        &format!("3\t0.100000000\t192.168.1.129\t8.8.8.8\t17\t\t\t40\t{cam}\t{gw}"),
        &format!("4\t0.150000000\t8.8.8.8\t192.168.1.129\t17\t\t\t8\t{gw}\t{cam}"),
        // Bare ACK.
        &format!("5\t0.200000000\t52.70.158.224\t192.168.1.129\t6\t0\t0\t\t{gw}\t{cam}"),
        // LAN to LAN, broadcast, internet to internet.
        &format!("6\t0.250000000\t192.168.1.129\t192.168.1.1\t6\t50\t1\t\t{cam}\t{gw}"),
        &format!("7\t0.300000000\t0.0.0.0\t255.255.255.255\t17\t\t\t308\t{cam}\tff:ff:ff:ff:ff:ff"),
        &format!("8\t0.350000000\t8.8.8.8\t52.70.158.224\t6\t50\t2\t\t{gw}\t{cam}"),
        // ICMP.
        &format!("9\t0.400000000\t192.168.1.129\t52.70.158.224\t1\t\t\t\t{cam}\t{gw}"),
        // ARP (no IP fields).
        &format!("10\t0.450000000\t\t\t\t\t\t\t{cam}\tff:ff:ff:ff:ff:ff"),
        // An unknown MAC on the camera's IP; the IP-only device under any MAC.
        &format!("11\t0.500000000\t192.168.1.129\t52.70.158.224\t6\t10\t3\t\t{stranger}\t{gw}"),
        &format!("12\t0.550000000\t192.168.1.50\t52.70.158.224\t6\t11\t4\t\t{stranger}\t{gw}"),
        // ICMP error quoting a TCP header: tshark repeats the IP fields; the outer ones count.
        &format!("13\t0.600000000\t52.70.158.224,192.168.1.129\t192.168.1.129,52.70.158.224\t1,6\t\t\t\t{gw}\t{cam}"),
    ]);
    let (stats, seen) = read_ok(&bytes);
    assert_eq!(stats.frames, 13);
    assert_eq!(stats.kept, 5);
    assert_eq!(stats.skipped_no_payload, 1);
    assert_eq!(stats.skipped_not_lan_boundary, 3);
    assert_eq!(stats.skipped_not_tcp_udp, 2);
    assert_eq!(stats.skipped_non_ip, 1);
    assert_eq!(stats.skipped_unknown_device, 1);
    assert_eq!((stats.matched_by_mac, stats.matched_by_ip), (4, 1));
    let ms = 1_000_000;
    assert_eq!(
        seen.iter().map(|s| (s.device, s.by, s.packet)).collect::<Vec<_>>(),
        vec![
            (CAM, MatchedBy::Mac, pkt(0, 100, Direction::Out, Transport::Tcp)),
            (CAM, MatchedBy::Mac, pkt(50 * ms, 1448, Direction::In, Transport::Tcp)),
            (CAM, MatchedBy::Mac, pkt(100 * ms, 32, Direction::Out, Transport::Udp)),
            (CAM, MatchedBy::Mac, pkt(150 * ms, 0, Direction::In, Transport::Udp)),
            (IPONLY, MatchedBy::Ip, pkt(550 * ms, 11, Direction::Out, Transport::Tcp)),
        ]
    );
}

#[test]
fn tshark_csv_ipv6_columns_and_epoch_time() {
    let bytes = b"frame.time_epoch\tip.src\tip.dst\tip.proto\ttcp.len\tudp.length\tipv6.src\tipv6.dst\tipv6.nxt\teth.src\teth.dst\n\
        1615190400.250000000\t\t\t\t200\t\tfd00::12\t2600:1f18::1\t6\t02:00:00:00:00:12\t02:00:00:00:00:01\n\
        1615190400.500000000\t\t\t\t\t28\t2600:1f18::1\tfd00::12\t17\t02:00:00:00:00:01\t02:00:00:00:00:12\n";
    let (_, seen) = read_ok(bytes);
    assert_eq!(seen.len(), 2);
    // Epoch seconds go through an f64: exact to well under a microsecond.
    let close = |got: i64, want: u64| (got - want as i64).abs() < 1_000;
    assert_eq!((seen[0].device, seen[0].packet.size, seen[0].packet.direction), (ULA, 200, Direction::Out));
    assert_eq!(seen[0].packet.transport, Transport::Tcp);
    assert!(close(seen[0].packet.time_ns, T0 + 250_000_000), "{}", seen[0].packet.time_ns);
    assert_eq!((seen[1].device, seen[1].packet.size, seen[1].packet.direction), (ULA, 20, Direction::In));
    assert_eq!(seen[1].packet.transport, Transport::Udp);
    assert!(close(seen[1].packet.time_ns, T0 + 500_000_000), "{}", seen[1].packet.time_ns);
}

#[test]
fn tshark_csv_comma_separated() {
    let bytes =
        b"frame.number,frame.time_relative,ip.src,ip.dst,ip.proto,tcp.len,tcp.stream,udp.length,eth.src,eth.dst\n\
        1,1.5,192.168.1.129,52.70.158.224,6,100,0,,f4:b8:5e:ff:2b:1b,02:00:00:00:00:01\n";
    let s = only_from(bytes);
    assert_eq!(s.packet, pkt(1_500_000_000, 100, Direction::Out, Transport::Tcp));
}

#[test]
fn tshark_csv_with_wrong_columns_names_the_missing_one() {
    let no_proto = b"frame.number\tframe.time_relative\tip.src\tip.dst\ttcp.len\ttcp.stream\tudp.length\n1\t0.0\t192.168.1.129\t52.70.158.224\t10\t0\t\n";
    let (code, message) = err_code(read(no_proto).0);
    assert_eq!(code, "invalid_csv");
    assert!(message.contains("ip.proto"), "{message}");
    let missing = message.split("missing ").nth(1).and_then(|m| m.split(';').next()).unwrap_or_default();
    assert_eq!(missing, "ip.proto", "only missing columns are named as missing: {message}");

    let no_time = b"frame.number\tip.src\tip.dst\tip.proto\ttcp.len\tudp.length\n";
    let (code, message) = err_code(read(no_time).0);
    assert_eq!(code, "invalid_csv");
    assert!(message.contains("frame.time_relative"), "{message}");

    let no_udp = b"frame.time_relative,ip.src,ip.dst,ip.proto,tcp.len\n";
    let (code, message) = err_code(read(no_udp).0);
    assert_eq!(code, "invalid_csv");
    assert!(message.contains("udp.length"), "{message}");
}

#[test]
fn tshark_csv_with_a_bad_cell_is_an_error_naming_the_line() {
    let bytes = tshark(&[
        "1\t0.0\t192.168.1.129\t52.70.158.224\t6\t100\t0\t\tf4:b8:5e:ff:2b:1b\t02:00:00:00:00:01",
        "2\tsoon\t192.168.1.129\t52.70.158.224\t6\t100\t0\t\tf4:b8:5e:ff:2b:1b\t02:00:00:00:00:01",
    ]);
    let (code, message) = err_code(read(&bytes).0);
    assert_eq!(code, "invalid_csv");
    assert!(message.contains("line 3"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Through the whole chain: capture files -> read_captures -> windows.
// ---------------------------------------------------------------------------------------------

#[test]
fn windows_through_the_whole_chain() {
    let s = 1_000_000_000u64;
    let ms = 1_000_000u64;
    let cam_out = |n| frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(n));
    let cam_in = |n| frame(GW_MAC, CAM_MAC, Some(100), CLOUD, CAM_IP, L4::Tcp(n));
    let cam_udp_out = |n| frame(CAM_MAC, GW_MAC, None, CAM_IP, "8.8.8.8", L4::Udp(n));
    // Written out of time order: read_captures sorts each device's packets.
    let recs = [
        rec(T0 + 10 * s + 50 * ms, cam_in(200)),
        rec(T0 + 10 * s, cam_out(100)),
        rec(T0 + 10 * s + 60 * ms, cam_out(0)), // bare ACK: not counted
        rec(T0 + 10 * s + 350 * ms, cam_udp_out(30)),
        rec(T0 + 10 * s + 3_999 * ms, cam_in(10)),
        rec(T0 + 14 * s, cam_out(5)), // exactly 4 s later: a new window
        rec(T0 + 14 * s + 100 * ms, arp_frame()),
        rec(T0 + 30 * s + 250 * ms, cam_in(1)),
        rec(T0 + 12 * s, frame(STRANGER_MAC, GW_MAC, None, "192.168.1.50", CLOUD, L4::Udp(7))),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("home.pcap");
    std::fs::write(&path, pcap(&recs)).unwrap();

    let table = table();
    let traffic = read_captures(std::slice::from_ref(&path), &table).unwrap();
    assert_eq!(traffic.stats.frames, 9);
    assert_eq!(traffic.stats.kept, 7);
    assert_eq!(traffic.stats.skipped_no_payload, 1);
    assert_eq!(traffic.stats.skipped_non_ip, 1);
    assert_eq!(traffic.packets[CAM].len(), 6);
    assert_eq!(traffic.packets[IPONLY].len(), 1);
    assert!(traffic.packets[TEN].is_empty());
    assert_eq!(traffic.matched_by(CAM).as_deref(), Some("mac"));
    assert_eq!(traffic.matched_by(IPONLY).as_deref(), Some("ip"));
    assert_eq!(traffic.matched_by(TEN), None);
    assert!(traffic.packets[CAM].windows(2).all(|w| w[0].time_ns <= w[1].time_ns));

    let settings = WindowSettings::reference();
    let mut windows = Windows::new(&settings);
    for d in table.devices() {
        windows.push_device(&traffic.packets[d.id], d.id as i64, &settings);
    }
    assert_eq!(windows.slots, 40);
    assert_eq!(windows.len(), 4);
    assert_eq!(windows.features.len(), 4 * 40 * 4);
    assert_eq!(windows.labels, vec![CAM as i64, CAM as i64, CAM as i64, IPONLY as i64]);
    let t0 = (T0 / s) as f64;
    let starts: Vec<f64> = windows.start_time.iter().map(|t| t - t0).collect();
    for (got, want) in starts.iter().zip([10.0, 14.0, 30.25, 12.0]) {
        assert!((got - want).abs() < 1e-6, "{starts:?}");
    }
    // Window 0: [in_packets, in_bytes, out_packets, out_bytes].
    assert_eq!(windows.slot(0, 0), &[1.0, 200.0, 1.0, 100.0]);
    assert_eq!(windows.slot(0, 3), &[0.0, 0.0, 1.0, 30.0]);
    assert_eq!(windows.slot(0, 39), &[1.0, 10.0, 0.0, 0.0]);
    let nonzero0 = (0..40).filter(|&i| windows.slot(0, i).iter().any(|&v| v != 0.0)).count();
    assert_eq!(nonzero0, 3);
    assert_eq!(windows.slot(1, 0), &[0.0, 0.0, 1.0, 5.0]);
    assert_eq!(windows.slot(2, 0), &[1.0, 1.0, 0.0, 0.0]);
    assert_eq!(windows.slot(3, 0), &[0.0, 0.0, 1.0, 7.0]);
    // Silence: 0 for each device's first window, else the gap since the previous window's
    // last packet.
    assert_eq!(windows.silence[0], 0.0);
    assert!((windows.silence[1] - 0.001).abs() < 1e-6, "{:?}", windows.silence);
    assert!((windows.silence[2] - 16.25).abs() < 1e-5, "{:?}", windows.silence);
    assert_eq!(windows.silence[3], 0.0);
}

#[test]
fn read_captures_merges_a_directory_of_mixed_formats() {
    let dir = tempfile::tempdir().unwrap();
    let s = 1_000_000_000u64;
    std::fs::write(
        dir.path().join("a.pcap"),
        pcap(&[rec(T0 + 2 * s, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(2)))]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.pcapng"),
        pcapng(Endianness::Little, &[Some(9)], &[(0, T0 + s, frame(CAM_MAC, GW_MAC, None, CAM_IP, CLOUD, L4::Tcp(1)))]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c.csv"),
        "frame.time_epoch,ip.src,ip.dst,ip.proto,tcp.len,udp.length,eth.src,eth.dst\n\
         1615190403.0,52.70.158.224,192.168.1.129,6,3,,02:00:00:00:00:01,f4:b8:5e:ff:2b:1b\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a capture, not read").unwrap();
    let traffic = read_captures(&[dir.path().to_path_buf()], &table()).unwrap();
    assert_eq!(traffic.stats.frames, 3);
    let got: Vec<(i64, u32)> = traffic.packets[CAM].iter().map(|p| (p.time_ns, p.size)).collect();
    assert_eq!(got, vec![((T0 + s) as i64, 1), ((T0 + 2 * s) as i64, 2), ((T0 + 3 * s) as i64, 3)]);

    // A missing path is an error.
    let e = read_captures(&[PathBuf::from("/nonexistent/ipet.pcap")], &table()).unwrap_err();
    assert_eq!(e.code(), "no_captures");
    // One bad file among good ones fails the whole read, naming the file.
    std::fs::write(dir.path().join("d.pcap"), b"hello world").unwrap();
    let e = read_captures(&[dir.path().to_path_buf()], &table()).unwrap_err();
    assert_eq!(e.code(), "not_a_capture");
    assert!(e.to_string().contains("d.pcap"), "{e}");
}

#[test]
fn ipv4_literals_in_the_table_are_the_ones_used() {
    // Sanity check of the fixture itself: the constants match the table.
    let t = table();
    assert_eq!(t.devices()[CAM].ips, vec![IpAddr::V4(Ipv4Addr::new(192, 168, 1, 129))]);
    assert_eq!(t.devices()[ULA].ips, vec![IpAddr::V6("fd00::12".parse::<Ipv6Addr>().unwrap())]);
    assert_eq!(t.devices()[IPONLY].mac, None);
    assert_eq!(t.devices()[SEVENTEEN].mac, Some(SEVENTEEN_MAC));
}
