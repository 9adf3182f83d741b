//! The reference implementation's input: a tshark field export
//! (`tshark -T fields -E header=y -E separator=/t -e frame.number -e frame.time_relative -e ip.src
//! -e ip.dst -e ip.proto -e tcp.len -e tcp.stream -e udp.length -e eth.src -e eth.dst`).
//!
//! Columns are found by name (tab- or comma-separated). `frame.time_epoch` is used instead of
//! `frame.time_relative` when present, and `ipv6.src`/`ipv6.dst`/`ipv6.nxt` when the IPv4 fields
//! are empty.

use std::io::Read;

use super::{
    devices::parse_mac,
    packet::{IpPacket, Skip, Transport, secs_to_ns},
};
use crate::error::{Error, ErrorCode, Result};

/// Columns a tshark CSV must have (besides a time column).
pub const REQUIRED: [&str; 5] = ["ip.src", "ip.dst", "ip.proto", "tcp.len", "udp.length"];

/// Whether the first bytes look like such an export: a text header naming the fields.
pub fn looks_like(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    std::str::from_utf8(line)
        .map(|l| l.contains("ip.src") || l.contains("frame.time_relative") || l.contains("frame.number"))
        .unwrap_or(false)
}

/// Seconds as tshark writes them (`1615212345.123456789`) to nanoseconds, exactly: through an
/// f64, an epoch time would lose a few hundred nanoseconds. Other notations go through f64.
/// Negative times and times past 9.2e9 s (where nanoseconds leave `i64`) are refused.
fn decimal_seconds_to_ns(s: &str) -> Option<i64> {
    if let Some((whole, frac)) = s.split_once('.').or(Some((s, "")))
        && !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 9
        && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let whole: i64 = whole.parse().ok()?;
        let frac: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
        return whole.checked_mul(1_000_000_000)?.checked_add(frac);
    }
    let t: f64 = s.parse().ok()?;
    (t.is_finite() && (0.0..9.2e9).contains(&t)).then(|| secs_to_ns(t))
}

pub fn read<R: Read>(source: R, name: &str, mut sink: impl FnMut(std::result::Result<IpPacket, Skip>)) -> Result<()> {
    let bad = |m: String| Error::invalid(ErrorCode::InvalidCsv, format!("{name}: {m}"));
    let mut source = std::io::BufReader::new(source);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut source, &mut first).map_err(|e| bad(e.to_string()))?;
    let delimiter = if first.contains('\t') { b'\t' } else { b',' };
    let header: Vec<String> =
        first.trim_end().split(delimiter as char).map(|h| h.trim().trim_matches('"').to_string()).collect();
    let col = |n: &str| header.iter().position(|h| h == n);
    let missing: Vec<&str> = REQUIRED.iter().copied().filter(|c| col(c).is_none()).collect();
    let time = col("frame.time_epoch").or_else(|| col("frame.time_relative"));
    if !missing.is_empty() || time.is_none() {
        let mut missing = missing;
        if time.is_none() {
            missing.insert(0, "frame.time_relative (or frame.time_epoch)");
        }
        return Err(bad(format!("wrong CSV columns: missing {}; found {}", missing.join(", "), header.join(", "))));
    }
    let get = |n: &str| col(n);
    let (c_src, c_dst, c_proto, c_tcp, c_udp) =
        (get("ip.src"), get("ip.dst"), get("ip.proto"), get("tcp.len"), get("udp.length"));
    let (c6_src, c6_dst, c6_nxt) = (get("ipv6.src"), get("ipv6.dst"), get("ipv6.nxt"));
    let (c_esrc, c_edst) = (get("eth.src"), get("eth.dst"));

    let mut rows = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).flexible(true).from_reader(source);
    for (i, rec) in rows.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| bad(format!("line {line}: {e}")))?;
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        // tshark writes several values of a repeated field (tunnels) comma-separated: take the first.
        let cell = |c: Option<usize>| {
            c.and_then(|c| rec.get(c)).map(|s| s.split(',').next().unwrap_or("").trim()).unwrap_or("")
        };
        let time_ns = decimal_seconds_to_ns(cell(time)).ok_or_else(|| {
            bad(format!("line {line}: time {:?} is not a number of seconds from 0 to 9.2e9", cell(time)))
        })?;
        let (src, dst, proto) = if !cell(c_src).is_empty() {
            (cell(c_src), cell(c_dst), cell(c_proto))
        } else if !cell(c6_src).is_empty() {
            (cell(c6_src), cell(c6_dst), cell(c6_nxt))
        } else {
            sink(Err(Skip::NonIp));
            continue;
        };
        let (Ok(src), Ok(dst)) = (src.parse(), dst.parse()) else {
            return Err(bad(format!("line {line}: {src:?} / {dst:?} are not IP addresses")));
        };
        let number = |s: &str, what: &str| -> Result<u32> {
            s.parse().map_err(|_| bad(format!("line {line}: {what} {s:?} is not a whole number")))
        };
        let (transport, payload) = match proto {
            "6" => (Transport::Tcp, number(cell(c_tcp), "tcp.len")?),
            "17" => (Transport::Udp, number(cell(c_udp), "udp.length")?.saturating_sub(8)),
            _ => {
                sink(Err(Skip::NotTcpUdp));
                continue;
            }
        };
        sink(Ok(IpPacket {
            time_ns,
            src,
            dst,
            src_mac: parse_mac(cell(c_esrc)),
            dst_mac: parse_mac(cell(c_edst)),
            transport,
            payload,
            cover: false,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::decimal_seconds_to_ns as ns;

    #[test]
    fn times_are_exact_to_the_nanosecond() {
        assert_eq!(ns("1615212345.123456789"), Some(1_615_212_345_123_456_789));
        assert_eq!(ns("0.000001"), Some(1_000));
        assert_eq!(ns("12"), Some(12_000_000_000));
        assert_eq!(ns("1.5e-3"), Some(1_500_000));
        for bad in ["", "abc", "NaN", "inf", "1e300", "-", "-1", "-5e9", "9.3e9"] {
            assert_eq!(ns(bad), None, "{bad:?}");
        }
    }
}
