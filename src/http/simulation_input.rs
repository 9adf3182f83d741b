//! What both forms of a simulation request are made of (`POST /simulations`, one device's or a
//! whole home's): JSON packets and the text fields of a multipart form.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::{
    error::{Error, ErrorCode, Result},
    traffic::{Direction, Packet, Transport, packet::secs_to_ns},
};

/// One packet of a JSON trace.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TracePacket {
    /// Seconds (Unix time or relative; only differences matter).
    pub time: f64,
    /// Transport payload bytes.
    pub size: u32,
    pub direction: Direction,
    #[serde(default)]
    pub transport: Option<Transport>,
}

pub(super) fn parse_field<T: std::str::FromStr>(name: &str, raw: &str, what: &str) -> Result<T> {
    raw.trim().parse().map_err(|_| Error::invalid(ErrorCode::InvalidField, format!("{name} = {raw:?} is not {what}")))
}

pub(super) fn enum_field<T: serde::de::DeserializeOwned>(name: &str, raw: &str, choices: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(raw.trim().to_string()))
        .map_err(|_| Error::invalid(ErrorCode::InvalidField, format!("{name} = {raw:?} is not one of {choices}")))
}

/// The latest packet time a JSON trace may give, in seconds (the year 2286 since the epoch).
const MAX_PACKET_TIME_SECS: f64 = 1e10;

/// A JSON trace's packets; `what` names them in errors (`packets`, `devices[2].packets`).
pub(super) fn to_packets(what: &str, trace: &[TracePacket]) -> Result<Vec<Packet>> {
    let mut packets = Vec::with_capacity(trace.len());
    for (i, p) in trace.iter().enumerate() {
        if !(p.time.is_finite() && (0.0..=MAX_PACKET_TIME_SECS).contains(&p.time)) {
            return Err(Error::invalid(
                ErrorCode::InvalidPacket,
                format!(
                    "{what}[{i}].time = {} is not a time in seconds (0 to {MAX_PACKET_TIME_SECS:e}: since the epoch or the \
                     start of the capture)",
                    p.time
                ),
            ));
        }
        packets.push(Packet {
            time_ns: secs_to_ns(p.time),
            size: p.size,
            direction: p.direction,
            transport: p.transport.unwrap_or(Transport::Tcp),
        });
    }
    Ok(packets)
}
