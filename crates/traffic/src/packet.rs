//! Packets: a frame decoded from a capture ([`IpPacket`], or why it was [`Skip`]ped) and a packet
//! kept for a device as the fingerprinting features see it ([`Packet`]).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::devices::Mac;

/// From the device to the internet (`Out`) or the other way (`In`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    /// 0 for incoming, 1 for outgoing: an index for per-direction arrays.
    pub fn index(self) -> usize {
        match self {
            Direction::In => 0,
            Direction::Out => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

/// Why a frame of a capture was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    NonIp,
    Truncated,
    NotTcpUdp,
    NotLanBoundary,
    NoPayload,
    UnknownDevice,
}

/// A decoded IP packet, before the traffic rules (`capture::attribute`): what the frame decoder
/// (`capture`) and the CSV reader (`tshark_csv`) produce.
#[derive(Debug, Clone, Copy)]
pub struct IpPacket {
    pub time_ns: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_mac: Option<Mac>,
    pub dst_mac: Option<Mac>,
    pub transport: Transport,
    pub payload: u32,
    /// A cover frame of the live gateway (EtherType 0x88B5, [`crate::cover`]): no IP header,
    /// `src`/`dst` unspecified, attributed by MAC alone, `payload` the size its tag carries.
    pub cover: bool,
}

/// One kept packet of one device. Times are integer nanoseconds since the Unix epoch (or since
/// the start of a capture for inputs that only carry relative times), so that window and slot
/// boundaries are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub time_ns: i64,
    /// Transport payload bytes, from the headers' wire lengths (not the captured length).
    pub size: u32,
    pub direction: Direction,
    pub transport: Transport,
}

impl Packet {
    pub fn time_s(&self) -> f64 {
        self.time_ns as f64 * 1e-9
    }
}

/// Seconds (as in a CSV or a setting) to integer nanoseconds, saturating: past about +-292 years
/// the result is `i64::MAX` or `i64::MIN` (NaN gives 0), so callers bound the seconds first and
/// compute differences of times in wider arithmetic (`work_bounds::span_ns`).
pub fn secs_to_ns(seconds: f64) -> i64 {
    (seconds * 1e9).round() as i64
}
