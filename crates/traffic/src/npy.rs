//! The `.npy` header every array this crate writes starts with (schedules, defended traces), so
//! that they are byte for byte what ndarray-npy and `numpy.save` write.

/// An NPY 1.0 header for a C-order array of `descr` with shape (rows, cols) as ndarray-npy writes
/// it (a test compares the two), padded with spaces and a newline so that the data starts at a
/// multiple of 64 bytes: 128 bytes for any `rows` up to `u64::MAX` with 2-digit `descr` and `cols`
/// below 1000, so a streamed array's header can be patched in place (see
/// [`super::simulate::NpyWriter`]).
pub fn header(descr: &str, rows: usize, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols})}}");
    let unpadded = 6 + 2 + 2 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_npy_header_is_the_one_ndarray_npy_writes() {
        for rows in [0usize, 1, 3, 1_000_000] {
            let arr = ndarray::Array2::<i32>::zeros((rows, 4));
            let mut want = Vec::new();
            ndarray_npy::WriteNpyExt::write_npy(&arr, &mut want).expect("npy");
            let ours = header("<i4", rows, 4);
            assert_eq!(ours[..], want[..ours.len()], "rows {rows}");
            assert_eq!(want.len(), ours.len() + rows * 16);
        }
    }

    #[test]
    fn a_streamed_header_keeps_its_length_for_any_row_count() {
        for rows in [0, 1, 1 << 20, usize::MAX] {
            assert_eq!(header("<f8", rows, 4).len(), 128, "rows {rows}");
        }
    }
}
