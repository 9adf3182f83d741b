//! A schedule's response body, encoded piece by piece as the connection takes it.
//!
//! 25,000 windows are 1M rows: 16 MB as npy, 12 MB as JSON. Encoding them whole first meant a
//! buffer of that size per request (allocated, zeroed, faulted in) and the first byte sent only
//! after the last was encoded. Past one piece, the body is a stream of pieces of [`PIECE_ROWS`]
//! rows, each encoded when hyper asks for it; smaller schedules go out as one buffer.

use axum::body::{Body, Bytes};

use crate::models::{Schedule, schedule::Encoding};

/// Rows per piece: 256 KiB of npy.
pub const PIECE_ROWS: usize = 16_384;

/// `prefix`, the schedule's rows in `encoding` (with their head and tail), then `suffix`; and the
/// body's length in bytes, when it is known without encoding it (npy: 16 bytes a row).
pub fn schedule_body(
    prefix: Vec<u8>,
    schedule: Schedule,
    encoding: Encoding,
    suffix: &'static [u8],
) -> (Body, Option<u64>) {
    let mut head = prefix;
    head.extend_from_slice(&schedule.encoding_head(encoding));
    let rows = schedule.rows();
    let length =
        (encoding == Encoding::Npy).then(|| (head.len() + rows * 16 + encoding.tail().len() + suffix.len()) as u64);
    let tail = [encoding.tail(), suffix].concat();
    if rows <= PIECE_ROWS {
        schedule.encode_rows(encoding, 0..rows, &mut head);
        head.extend_from_slice(&tail);
        return (Body::from(head), length);
    }
    let pieces = (0..rows).step_by(PIECE_ROWS).map(move |start| {
        let mut piece = Vec::with_capacity(PIECE_ROWS * 16);
        schedule.encode_rows(encoding, start..start + PIECE_ROWS, &mut piece);
        Bytes::from(piece)
    });
    let all = std::iter::once(Bytes::from(head)).chain(pieces).chain(std::iter::once(Bytes::from(tail)));
    (Body::from_stream(futures::stream::iter(all.map(Ok::<_, std::convert::Infallible>))), length)
}
