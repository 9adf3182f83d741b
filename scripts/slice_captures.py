#!/usr/bin/env python3
"""Cut the first HOURS of each classic pcap in SRC into DST (same file names, records untouched).

Used once to make data/tj-oconnor-2021-slice from ../shared/data/tj-oconnor-2021:
    python3 scripts/slice_captures.py ../shared/data/tj-oconnor-2021/pcaps data/tj-oconnor-2021-slice/pcaps 12
"""
import struct
import sys
from pathlib import Path


def main(src: str, dst: str, hours: float) -> None:
    Path(dst).mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(src).glob("*.pcap")):
        data = path.read_bytes()
        endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}[data[:4]]
        out, off, start, n = bytearray(data[:24]), 24, None, 0
        while off + 16 <= len(data):
            sec, usec, incl, _orig = struct.unpack(endian + "IIII", data[off : off + 16])
            t = sec + usec * 1e-6
            start = t if start is None else start
            if t - start > hours * 3600:
                break
            out += data[off : off + 16 + incl]
            off += 16 + incl
            n += 1
        (Path(dst) / path.name).write_bytes(out)
        print(f"{path.name}: {n} records, {len(out)} bytes")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
