"""Transport (TCP/UDP) of each real packet, read from the captures in Python.

The simulator's output rows `[direction, is_dummy, size_bytes, time_s]` carry no transport, but
M_agg (reference section 3) splits its aggregates by TCP and UDP. This reader applies the same
rules as the Rust data plane (`src/traffic/capture.rs`: TCP/UDP only, one end LAN and the other
global, transport payload from the header lengths, payload-less TCP dropped, attribution by the
LAN end's MAC, else its IP) to classic pcap files, so the k-th real packet of a device in a
direction can be given its transport. `align_transport` checks the alignment (same count, same
sizes in order) and says when it fails, in which case the caller treats that trace's real packets
as TCP and records it.
"""

from __future__ import annotations

import csv
import ipaddress
import struct
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def _v4_scope(b: bytes) -> str:
    o0, o1 = b[0], b[1]
    if o0 == 10 or (o0 == 172 and 16 <= o1 <= 31) or (o0 == 192 and o1 == 168) or (o0 == 169 and o1 == 254):
        return "lan"
    if (o0 == 127 or 224 <= o0 or o0 == 0 or (o0 == 100 and (o1 & 0xC0) == 64)
            or b == b"\xff\xff\xff\xff" or b[:3] in (b"\xc0\x00\x02", b"\xc6\x33\x64", b"\xcb\x00\x71")):
        return "other"
    return "internet"


def _v6_scope(b: bytes) -> str:
    if b[:12] == b"\x00" * 10 + b"\xff\xff":
        return _v4_scope(b[12:])
    s0 = (b[0] << 8) | b[1]
    if (s0 & 0xFE00) == 0xFC00 or (s0 & 0xFFC0) == 0xFE80:
        return "lan"
    if b == b"\x00" * 15 + b"\x01" or b[0] == 0xFF or b == b"\x00" * 16 or b[:4] == b"\x20\x01\x0d\xb8":
        return "other"
    return "internet"


def _norm_mac(s: str) -> Optional[bytes]:
    s = s.strip().replace("-", ":").lower()
    if not s:
        return None
    try:
        return bytes(int(x, 16) for x in s.split(":"))
    except ValueError:
        return None


def read_device_table(path: str | Path) -> list[dict]:
    out = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            ips = set()
            for part in (row.get("ip") or "").replace(",", ";").split(";"):
                part = part.strip()
                if part:
                    ips.add(ipaddress.ip_address(part).packed)
            out.append({"id": i, "name": row["name"].strip(), "mac": _norm_mac(row.get("mac") or ""), "ips": ips})
    return out


def capture_files(captures: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for c in captures:
        p = Path(c)
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in (".pcap", ".pcapng", ".cap", ".csv"))
        else:
            files.append(p)
    return files


def read_packets(files: Sequence[Path], table: list[dict]) -> tuple[dict[int, dict[str, np.ndarray]], dict[int, set]]:
    """Kept packets per device id: {"time": float s, "dir": +1 out/-1 in, "size", "udp": bool}, in
    file order; and per device id the set of files holding its packets. Non-pcap files are skipped."""
    by_mac = {d["mac"]: d["id"] for d in table if d["mac"]}
    by_ip = {ip: d["id"] for d in table for ip in d["ips"]}
    has_mac = {d["id"]: d["mac"] is not None for d in table}
    acc: dict[int, list] = {}
    where: dict[int, set] = {}
    for path in files:
        data = path.read_bytes()
        if len(data) < 24:
            continue
        magic = data[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            e = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            e = ">"
        else:
            continue  # pcapng / CSV: not read here (the caller falls back to TCP for unaligned traces)
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        link = struct.unpack(e + "I", data[20:24])[0]
        hdr = struct.Struct(e + "IIII")
        off = 24
        n = len(data)
        while off + 16 <= n:
            ts, tfrac, incl, _orig = hdr.unpack_from(data, off)
            off += 16
            fr = data[off:off + incl]
            off += incl
            t = ts + tfrac * (1e-9 if nano else 1e-6)
            if link == 1:
                if len(fr) < 14:
                    continue
                dst_mac, src_mac = fr[0:6], fr[6:12]
                et = (fr[12] << 8) | fr[13]
                p = 14
                while et in (0x8100, 0x88A8) and len(fr) >= p + 4:
                    et = (fr[p + 2] << 8) | fr[p + 3]
                    p += 4
            elif link in (101, 228, 229, 12, 14):
                dst_mac = src_mac = None
                et = 0x0800 if (fr[:1] and fr[0] >> 4 == 4) else 0x86DD
                p = 0
            elif link == 113:
                dst_mac = src_mac = None
                if len(fr) < 16:
                    continue
                et = (fr[14] << 8) | fr[15]
                p = 16
            else:
                continue
            if et == 0x0800:
                if len(fr) < p + 20:
                    continue
                ihl = (fr[p] & 0x0F) * 4
                total = (fr[p + 2] << 8) | fr[p + 3]
                proto = fr[p + 9]
                src, dst = fr[p + 12:p + 16], fr[p + 16:p + 20]
                ip_payload = total - ihl
                tp = p + ihl
                sc = _v4_scope
            elif et == 0x86DD:
                if len(fr) < p + 40:
                    continue
                ip_payload = (fr[p + 4] << 8) | fr[p + 5]
                proto = fr[p + 6]
                src, dst = fr[p + 8:p + 24], fr[p + 24:p + 40]
                tp = p + 40
                sc = _v6_scope
            else:
                continue
            if proto == 6:
                if len(fr) < tp + 13:
                    continue
                payload = ip_payload - ((fr[tp + 12] >> 4) * 4)
                udp = False
            elif proto == 17:
                if len(fr) < tp + 6:
                    continue
                payload = max(((fr[tp + 4] << 8) | fr[tp + 5]) - 8, 0)
                udp = True
            else:
                continue
            if payload < 0:
                continue
            s_src, s_dst = sc(src), sc(dst)
            if s_src == "lan" and s_dst == "internet":
                lan_ip, lan_mac, d = src, src_mac, 1
            elif s_src == "internet" and s_dst == "lan":
                lan_ip, lan_mac, d = dst, dst_mac, -1
            else:
                continue
            if payload == 0 and not udp:
                continue
            dev = by_mac.get(lan_mac) if lan_mac is not None else None
            if dev is None:
                dev = by_ip.get(bytes(lan_ip))
                if dev is None or (lan_mac is not None and has_mac[dev]):
                    continue
            acc.setdefault(dev, []).append((t, d, payload, udp))
            where.setdefault(dev, set()).add(path)
    out = {}
    for dev, rows in acc.items():
        a = np.array(rows, dtype=np.float64)
        order = np.argsort(a[:, 0], kind="stable")
        a = a[order]
        out[dev] = {"time": a[:, 0], "dir": a[:, 1].astype(np.int8), "size": a[:, 2], "udp": a[:, 3].astype(bool)}
    return out, where


def align_transport(real_dir: np.ndarray, real_size: np.ndarray, real_time: np.ndarray,
                    pk: Optional[dict[str, np.ndarray]]) -> Optional[np.ndarray]:
    """is_udp for each real row (given in any order), by aligning, per direction, the rows in time
    order with the device's captured packets in time order. None when counts or sizes disagree."""
    if pk is None:
        return None
    out = np.zeros(real_dir.shape[0], dtype=bool)
    for d in (1, -1):
        m = np.flatnonzero(real_dir == d)
        ref = pk["dir"] == d
        if m.size != int(ref.sum()):
            return None
        order = m[np.argsort(real_time[m], kind="stable")]
        if not np.array_equal(real_size[order], pk["size"][ref]):
            return None
        out[order] = pk["udp"][ref]
    return out
