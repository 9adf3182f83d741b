//! `ipet packets`: every kept packet of every device, as .npy columns.

use crate::{
    cli::PacketsArgs,
    error::{Error, Result},
    traffic::{
        CaptureStats, Direction, Transport,
        capture::{expand_paths, read_capture_file},
    },
};

struct Row {
    device: i64,
    time_ns: i64,
    direction: i8,
    size: i64,
    udp: u8,
    file: i64,
}

pub fn run(args: PacketsArgs) -> Result<()> {
    let table = args.input.table()?;
    let files = expand_paths(&args.input.captures)?;
    let mut rows: Vec<Row> = Vec::new();
    let mut stats = CaptureStats::default();
    let mut skipped_files = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let note = read_capture_file(file, &table, &mut stats, |d, _, p| {
            rows.push(Row {
                device: d as i64,
                time_ns: p.time_ns,
                direction: if p.direction == Direction::Out { 1 } else { -1 },
                size: i64::from(p.size),
                udp: u8::from(p.transport == Transport::Udp),
                file: i as i64,
            });
        })?;
        skipped_files.extend(note);
    }
    rows.sort_by_key(|r| (r.device, r.time_ns));
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(format!("creating {}", args.out.display()), e))?;
    let out = &args.out;
    let write = |name: &str, r: std::result::Result<(), ndarray_npy::WriteNpyError>| {
        r.map_err(|e| Error::Internal(format!("writing {}: {e}", out.join(name).display())))
    };
    let column = |f: fn(&Row) -> i64| ndarray::Array1::from_iter(rows.iter().map(f));
    write("device.npy", ndarray_npy::write_npy(out.join("device.npy"), &column(|r| r.device)))?;
    let time = ndarray::Array1::from_iter(rows.iter().map(|r| r.time_ns as f64 * 1e-9));
    write("time.npy", ndarray_npy::write_npy(out.join("time.npy"), &time))?;
    let direction = ndarray::Array1::from_iter(rows.iter().map(|r| r.direction));
    write("direction.npy", ndarray_npy::write_npy(out.join("direction.npy"), &direction))?;
    write("size.npy", ndarray_npy::write_npy(out.join("size.npy"), &column(|r| r.size)))?;
    let udp = ndarray::Array1::from_iter(rows.iter().map(|r| r.udp));
    write("udp.npy", ndarray_npy::write_npy(out.join("udp.npy"), &udp))?;
    write("file.npy", ndarray_npy::write_npy(out.join("file.npy"), &column(|r| r.file)))?;
    let meta = serde_json::json!({
        "files": files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>(),
        "skipped_files": skipped_files,
        "devices": table.devices().iter().map(|d| &d.name).collect::<Vec<_>>(),
        "stats": stats,
    });
    let text = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(out.join("packets.json"), text).map_err(|e| Error::io("writing packets.json", e))?;
    eprintln!("{} packets of {} devices written to {}", rows.len(), table.len(), out.display());
    Ok(())
}
