//! Where iPET's perturbation rows come from: the [`RowSource`] the simulator reads, and a fixed
//! schedule. Rows drawn from the generators on demand implement it above the data plane
//! (`crate::models::GeneratorRows`).

use std::path::Path;

use crate::error::{Error, ErrorCode, Result};

pub use crate::shaper::RowSource;

/// A fixed schedule, e.g. a reference-style `.npy` of shape `[rows, 4]`, held once: its values
/// row-major (an `int32` file is read straight into this buffer, with no other copy).
#[derive(Debug, Clone, Default)]
pub struct FixedRows {
    values: Vec<i32>,
    next: usize,
}

impl FixedRows {
    /// Refuses negative values.
    pub fn new(rows: Vec<[i32; 4]>) -> Result<Self> {
        Self::from_flat(rows.into_iter().flatten().collect())
    }

    /// Row-major values, 4 per row; refuses negative values.
    pub fn from_flat(values: Vec<i32>) -> Result<Self> {
        if let Some(i) = values.iter().position(|&v| v < 0) {
            let r = i / 4;
            return Err(Error::invalid(
                ErrorCode::InvalidSchedule,
                format!(
                    "schedule row {r} is {:?}: packet and byte counts cannot be negative",
                    &values[r * 4..(r * 4 + 4).min(values.len())]
                ),
            ));
        }
        Ok(Self { values, next: 0 })
    }

    /// A `.npy` array whose last axis has length 4 (`[rows, 4]`, or `[windows, slots, 4]`), of
    /// any integer or float dtype; floats must be whole numbers.
    pub fn from_npy_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_flat(read_rows_npy(|| Ok(bytes))?)
    }

    /// The same from a file, read once (never held whole beside its converted rows when int32).
    pub fn from_npy_path(path: &Path) -> Result<Self> {
        let open = || {
            std::fs::File::open(path)
                .map(std::io::BufReader::new)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))
        };
        read_rows_npy(open).and_then(Self::from_flat).map_err(|e| match e {
            Error::InvalidInput { code, message } => Error::invalid(code, format!("{}: {message}", path.display())),
            other => other,
        })
    }

    pub fn len(&self) -> usize {
        self.values.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Rows not yet consumed.
    pub fn remaining(&self) -> usize {
        self.len() - self.next
    }

    /// The most packets (both directions) of any row.
    pub fn max_packets_per_row(&self) -> u64 {
        self.values.chunks_exact(4).map(|r| r[0].max(0) as u64 + r[2].max(0) as u64).max().unwrap_or(0)
    }
}

impl RowSource for FixedRows {
    fn next_row(&mut self) -> Result<Option<[i32; 4]>> {
        let Some(v) = self.values.get(self.next * 4..self.next * 4 + 4) else { return Ok(None) };
        self.next += 1;
        Ok(Some([v[0], v[1], v[2], v[3]]))
    }
}

/// Row-major values of a `.npy` array; `open` gives a fresh reader at the file's start (a wrong
/// dtype is found from the header alone, so trying the next one reads only its header again).
fn read_rows_npy<R: std::io::Read>(mut open: impl FnMut() -> Result<R>) -> Result<Vec<i32>> {
    use ndarray::ArrayD;
    use ndarray_npy::{ReadNpyError, ReadNpyExt};

    fn check_shape(shape: &[usize]) -> Result<()> {
        if shape.last() != Some(&4) || shape.len() < 2 {
            return Err(Error::invalid(
                ErrorCode::InvalidSchedule,
                format!("the schedule has shape {shape:?}; expected [rows, 4] (or [windows, slots, 4])"),
            ));
        }
        Ok(())
    }
    fn convert<T: Copy>(a: ArrayD<T>, conv: impl Fn(T) -> Option<i32>) -> Result<Vec<i32>> {
        check_shape(a.shape())?;
        let mut values = Vec::with_capacity(a.len());
        for (i, v) in a.iter().enumerate() {
            values.push(conv(*v).ok_or_else(|| {
                Error::invalid(
                    ErrorCode::InvalidSchedule,
                    format!("schedule row {}, column {}: not a whole number from 0 to {}", i / 4, i % 4, i32::MAX),
                )
            })?);
        }
        Ok(values)
    }
    fn int<T: TryInto<i32>>(v: T) -> Option<i32> {
        v.try_into().ok()
    }
    fn float(v: f64) -> Option<i32> {
        (v.is_finite() && v.fract() == 0.0 && v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX)).then_some(v as i32)
    }
    let bad = |e: ReadNpyError| Error::invalid(ErrorCode::InvalidSchedule, format!("not a readable .npy array: {e}"));
    // int32 (what `ipet predict` and the service write): the array's own buffer, no copy.
    match ArrayD::<i32>::read_npy(open()?) {
        Ok(a) => {
            check_shape(a.shape())?;
            if a.is_standard_layout() {
                let (values, offset) = a.into_raw_vec_and_offset();
                if offset.unwrap_or(0) == 0 {
                    return Ok(values);
                }
                return Ok(values[offset.unwrap_or(0)..].to_vec());
            }
            return convert(a, Some);
        }
        Err(ReadNpyError::WrongDescriptor(_)) => {}
        Err(e) => return Err(bad(e)),
    }
    macro_rules! attempt {
        ($t:ty, $conv:expr) => {
            match ArrayD::<$t>::read_npy(open()?) {
                Ok(a) => return convert(a, $conv),
                Err(ReadNpyError::WrongDescriptor(_)) => {}
                Err(e) => return Err(bad(e)),
            }
        };
    }
    attempt!(i64, int);
    attempt!(f64, float);
    attempt!(f32, |v: f32| float(f64::from(v)));
    attempt!(i16, |v: i16| Some(i32::from(v)));
    attempt!(u16, |v: u16| Some(i32::from(v)));
    attempt!(u8, |v: u8| Some(i32::from(v)));
    attempt!(i8, |v: i8| Some(i32::from(v)));
    attempt!(u32, int);
    attempt!(u64, int);
    Err(Error::invalid(ErrorCode::InvalidSchedule, "the .npy array's dtype is not an integer or float type"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_of<T: ndarray_npy::WritableElement + Clone>(shape: &[usize], v: Vec<T>) -> Vec<u8> {
        let a = ndarray::ArrayD::from_shape_vec(shape.to_vec(), v).expect("shape");
        let mut buf = Vec::new();
        ndarray_npy::WriteNpyExt::write_npy(&a, &mut buf).expect("npy");
        buf
    }

    #[test]
    fn fixed_rows_read_any_numeric_npy_and_refuse_bad_values() {
        let want = [[1, 2, 3, 4], [5, 6, 7, 8]];
        let vals: [i32; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
        let cases = [
            npy_of(&[2, 4], vals.to_vec()),
            npy_of(&[2, 4], vals.iter().map(|&v| v as i64).collect()),
            npy_of(&[2, 4], vals.iter().map(|&v| v as f64).collect()),
            npy_of(&[2, 4], vals.iter().map(|&v| v as f32).collect()),
            npy_of(&[2, 4], vals.iter().map(|&v| v as u8).collect()),
            npy_of(&[2, 4], vals.iter().map(|&v| v as u16).collect()),
            npy_of(&[1, 2, 4], vals.to_vec()),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let mut r = FixedRows::from_npy_bytes(bytes).expect("read");
            assert_eq!(r.len(), 2, "case {i}");
            assert_eq!(r.next_row().expect("row"), Some(want[0]));
            assert_eq!(r.next_row().expect("row"), Some(want[1]));
            assert_eq!(r.next_row().expect("row"), None);
        }
        let bad = [
            npy_of(&[2, 4], vec![1.5f64, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
            npy_of(&[2, 4], vec![1i32, -2, 3, 4, 5, 6, 7, 8]),
            npy_of(&[4, 2], vals.to_vec()),
            b"not an npy".to_vec(),
        ];
        for b in &bad {
            assert_eq!(FixedRows::from_npy_bytes(b).expect_err("bad").code(), "invalid_schedule");
        }
    }
}
