//! Output writers: the defended trace streamed to `.npy` or CSV.

use std::{
    fs::File,
    io::{BufWriter, Seek, SeekFrom, Write},
    path::Path,
};

use super::{OUTPUT_COLUMNS, OutputPacket};
use crate::{
    error::{Error, ErrorCode, Result},
    npy,
    packet::Direction,
};

/// Streams output rows into a float64 `.npy` of shape `[rows, 4]`: the header is written with
/// room for any row count and patched with the real one by [`NpyWriter::finish`]. Times are
/// relative to the first packet written (the trace's first real packet).
pub struct NpyWriter<W: Write + Seek> {
    out: BufWriter<W>,
    rows: u64,
    origin: Option<i64>,
}

/// The header of a float64 `[rows, 4]` array: the same length for any row count.
fn npy_header(rows: u64) -> Vec<u8> {
    npy::header("<f8", rows as usize, 4)
}

impl<W: Write + Seek> NpyWriter<W> {
    pub fn new(w: W) -> Result<Self> {
        let mut out = BufWriter::with_capacity(1 << 16, w);
        out.write_all(&npy_header(0)).map_err(|e| Error::io("writing the .npy header", e))?;
        Ok(Self { out, rows: 0, origin: None })
    }

    #[inline]
    pub fn write(&mut self, p: &OutputPacket) -> Result<()> {
        let origin = *self.origin.get_or_insert(p.time_ns);
        self.write_row(p.row(origin))
    }

    /// One row as it is (`[direction, is_dummy, size_bytes, time_s]`).
    #[inline]
    pub fn write_row(&mut self, row: [f64; 4]) -> Result<()> {
        let mut buf = [0u8; 32];
        for (i, v) in row.iter().enumerate() {
            buf[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        self.out.write_all(&buf).map_err(|e| Error::io("writing .npy rows", e))?;
        self.rows += 1;
        Ok(())
    }

    /// Patches the row count into the header; returns the writer and the row count.
    pub fn finish(self) -> Result<(W, u64)> {
        let rows = self.rows;
        let mut w = self.out.into_inner().map_err(|e| Error::io("writing .npy rows", e.into_error()))?;
        let patch = (|| {
            w.seek(SeekFrom::Start(0))?;
            w.write_all(&npy_header(rows))?;
            w.seek(SeekFrom::End(0))?;
            w.flush()
        })();
        patch.map_err(|e| Error::io("patching the .npy header", e))?;
        Ok((w, rows))
    }
}

/// Streams output rows as CSV with the header `direction,is_dummy,size_bytes,time_s`.
pub struct CsvWriter<W: Write> {
    out: BufWriter<W>,
    rows: u64,
    origin: Option<i64>,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(w: W) -> Result<Self> {
        let mut out = BufWriter::with_capacity(1 << 16, w);
        writeln!(out, "{}", OUTPUT_COLUMNS.join(",")).map_err(|e| Error::io("writing CSV", e))?;
        Ok(Self { out, rows: 0, origin: None })
    }

    #[inline]
    pub fn write(&mut self, p: &OutputPacket) -> Result<()> {
        let origin = *self.origin.get_or_insert(p.time_ns);
        let dir = match p.direction {
            Direction::Out => 1,
            Direction::In => -1,
        };
        let rel = p.time_ns - origin;
        let r = if p.size.fract() == 0.0 {
            writeln!(
                self.out,
                "{dir},{},{},{}.{:09}",
                u8::from(p.dummy),
                p.size as u64,
                rel / 1_000_000_000,
                rel % 1_000_000_000
            )
        } else {
            writeln!(
                self.out,
                "{dir},{},{},{}.{:09}",
                u8::from(p.dummy),
                p.size,
                rel / 1_000_000_000,
                rel % 1_000_000_000
            )
        };
        r.map_err(|e| Error::io("writing CSV", e))?;
        self.rows += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<(W, u64)> {
        let rows = self.rows;
        let w = self.out.into_inner().map_err(|e| Error::io("writing CSV", e.into_error()))?;
        Ok((w, rows))
    }
}

/// An output file, its format chosen by extension (`.npy` or `.csv`).
pub enum OutputFile {
    Npy(NpyWriter<File>),
    Csv(CsvWriter<File>),
}

impl OutputFile {
    pub fn create(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("npy" | "csv")) {
            return Err(Error::invalid(
                ErrorCode::InvalidOutput,
                format!("{}: the output must end in .npy or .csv", path.display()),
            ));
        }
        let f = File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(match ext.as_deref() {
            Some("npy") => Self::Npy(NpyWriter::new(f)?),
            _ => Self::Csv(CsvWriter::new(f)?),
        })
    }

    /// Times relative to `origin_ns` instead of the first packet written (pad-to-target writes
    /// every member relative to the home's first packet).
    pub fn set_origin(&mut self, origin_ns: i64) {
        match self {
            Self::Npy(w) => w.origin = Some(origin_ns),
            Self::Csv(w) => w.origin = Some(origin_ns),
        }
    }

    #[inline]
    pub fn write(&mut self, p: &OutputPacket) -> Result<()> {
        match self {
            Self::Npy(w) => w.write(p),
            Self::Csv(w) => w.write(p),
        }
    }

    /// Flushes (and patches the .npy header); returns the row count.
    pub fn finish(self) -> Result<u64> {
        let (f, rows) = match self {
            Self::Npy(w) => w.finish()?,
            Self::Csv(w) => w.finish()?,
        };
        f.sync_all().map_err(|e| Error::io("syncing the output", e))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{S, pkt};
    use super::super::{Defense, FixedRows, Mode, SimSettings, simulate};
    use super::*;

    #[test]
    fn the_npy_and_csv_writers_stream_what_read_npy_and_a_csv_reader_read_back() {
        let rows: Vec<[i32; 4]> = (0..50).map(|k| [k % 3, 100, 1, k]).collect();
        let trace = [pkt(1_600_000_000 * S, Direction::Out, 99), pkt(1_600_000_000 * S + 2 * S, Direction::In, 7)];
        let mut rows = FixedRows::new(rows).expect("rows");
        let mut npy = NpyWriter::new(std::io::Cursor::new(Vec::new())).expect("npy");
        let mut csv = CsvWriter::new(Vec::new()).expect("csv");
        let mut all = Vec::new();
        simulate(trace, Defense::Ipet { mode: Mode::Slotted, rows: &mut rows }, &SimSettings::default(), |p| {
            all.push(*p);
            npy.write(p)?;
            csv.write(p)
        })
        .expect("simulate");
        let (cursor, n) = npy.finish().expect("finish");
        assert_eq!(n, all.len() as u64);
        let bytes = cursor.into_inner();
        let back: ndarray::Array2<f64> = ndarray_npy::ReadNpyExt::read_npy(&bytes[..]).expect("read back");
        let mut want = Vec::new();
        ndarray_npy::WriteNpyExt::write_npy(&back, &mut want).expect("npy");
        assert_eq!(bytes, want, "byte for byte what ndarray-npy writes");
        assert_eq!(back.shape(), &[all.len(), 4]);
        let origin = trace[0].time_ns;
        for (i, p) in all.iter().enumerate() {
            assert_eq!(back.row(i).to_vec(), p.row(origin).to_vec());
        }
        assert_eq!(back.row(0).to_vec(), vec![1.0, 0.0, 99.0, 0.0]);
        let (text, _) = csv.finish().expect("csv");
        let text = String::from_utf8(text).expect("utf8");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("direction,is_dummy,size_bytes,time_s"));
        assert_eq!(lines.next(), Some("1,0,99,0.000000000"));
        let real_in = text.lines().find(|l| l.starts_with("-1,0,")).expect("the incoming real packet");
        assert_eq!(real_in, "-1,0,7,2.000000000");
        assert_eq!(text.lines().count(), all.len() + 1);
    }
}
