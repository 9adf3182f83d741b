"""Learned set targets (issue 10): one target generator per anonymity set.

Per set, G_set(z) -> [batch, slots, 4] TARGET windows (in_packets, in_bytes, out_packets, out_bytes)
that a gateway pads every member's real traffic up to (pad-to-target; the Rust simulator does the
real thing). Training uses a differentiable proxy of pad-to-target with a latency budget:

    per slot and column: available = backlog + real; sent = min(available, target);
    backlog = available - sent; the part of the backlog older than the budget leaks (is sent in
    excess of the target); observed = target + leaked.

With a budget of 0 this is observed = max(real, target) (pure padding). Per stage, an ensemble of
attackers (the M_seq models of `models.py`) is trained FROM SCRATCH to tell the set's members apart
from observed windows, with fresh targets every epoch; then the generator is trained against them:
push their output towards uniform over the members, plus a cost for padding bytes and packets,
leaked traffic and waiting (all relative to the set's real traffic). The final generator is
exported as ONNX exactly like the iPET generators (input `z` [batch, latent], output
`perturbation` [batch, slots, 4], rounded) into a model set whose manifest says
`"family": "set-targets"` and lists the sets and their members.

Sets come from the device table (`set` column, as `ipet windows` reports it per device) or from
`--sets`; the clustering rule itself lives in the Rust data plane and is not restated here.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..attackers.score import balanced_accuracy, scores
from ..data import COLUMNS, Windows
from ..discriminator import class_weights
from ..export import INPUT_NAME, OUTPUT_NAME, ExportError, export_generator
from ..model_set import MANIFEST_SCHEMA_VERSION, device_ids, onnx_section, provenance, safe_dir_name, write_manifest
from ..models import build_discriminator
from ..runtime import frozen, log, resolve_device, seed_everything
from ..training_windows import load_training_windows, make_split, select_devices
from .settings import TargetSettings, parse_sets, resolve_sets

FAMILY = "set-targets"


# ---------------------------------------------------------------------------------------------
# the generator and the pad-to-target proxy


class TargetGenerator(nn.Module):
    """z [B, latent] -> Dense(hidden, tanh) -> Dense(S*4) -> per slot and direction: packets
    p = sigmoid(a) * max_packets and a mean packet size between the set's smallest and largest;
    bytes = round(p) * size, so a slot never has bytes without packets (straight-through rounding
    while training, plain rounding in eval mode and in the ONNX graph).

    Output columns [in_packets, in_bytes, out_packets, out_bytes], continuous packets (the
    served form rounds them); `caps` = [max_in_packets, max_in_bytes, max_out_packets, max_out_bytes]."""

    def __init__(self, latent_dim: int, slots: int, max_packets: Sequence[float], size_range: Sequence[Sequence[float]],
                 hidden: int = 128):
        super().__init__()
        self.latent_dim = latent_dim
        self.slots = slots
        self.hidden = nn.Linear(latent_dim, hidden)
        self.out = nn.Linear(hidden, slots * 4)
        mp = [float(v) for v in max_packets]
        lo = [float(r[0]) for r in size_range]
        hi = [float(max(r[1], r[0])) for r in size_range]
        self.register_buffer("max_packets", torch.tensor(mp, dtype=torch.float32))
        self.register_buffer("size_lo", torch.tensor(lo, dtype=torch.float32))
        self.register_buffer("size_hi", torch.tensor(hi, dtype=torch.float32))
        caps = [mp[0], math.floor(mp[0] * hi[0]), mp[1], math.floor(mp[1] * hi[1])]
        self.register_buffer("caps", torch.tensor(caps, dtype=torch.float32))

    def init_bias(self, packet_level: np.ndarray, size_level: Sequence[float]) -> None:
        """Start at a per-slot packets level ([slots, 2], fractions of max_packets) and a mean size
        (per direction, fraction of the size range)."""
        with torch.no_grad():
            b = self.out.bias.view(self.slots, 4)
            lv = torch.logit(torch.tensor(np.clip(packet_level, 1e-3, 1 - 1e-3), dtype=torch.float32))
            for d in range(2):
                b[:, 2 * d] = lv[:, d]
                b[:, 2 * d + 1] = float(torch.logit(torch.tensor(min(max(size_level[d], 1e-3), 1 - 1e-3))))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a = self.out(torch.tanh(self.hidden(z))).view(-1, self.slots, 2, 2)
        p = torch.sigmoid(a[..., 0]) * self.max_packets  # [B, S, 2]
        size = self.size_lo + torch.sigmoid(a[..., 1]) * (self.size_hi - self.size_lo)
        if self.training:
            pr = p + (torch.round(p) - p).detach()
        else:
            pr = torch.round(p)
        # floor keeps bytes within the cap after rounding (pr <= max_packets, size <= size_hi)
        b = pr * size
        b = torch.minimum(b, self.caps[[1, 3]])
        return torch.stack([p[..., 0], b[..., 0], p[..., 1], b[..., 1]], dim=-1)


def pad_to_target(real: torch.Tensor, target: torch.Tensor, budget_slots: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Differentiable proxy of the gateway's pad-to-target, per column independently.

    Returns (observed [B,S,4], leaked [B,4] summed over slots, waiting [B,4] = backlog summed over
    slots (in slot units: total delay), carry [B,4] = backlog left at the window's end)."""
    b_, s_, c_ = real.shape
    backlog = real.new_zeros((b_, c_))
    leaked = real.new_zeros((b_, c_))
    waiting = real.new_zeros((b_, c_))
    csum = torch.cumsum(real, dim=1)
    obs = []
    for i in range(s_):
        avail = backlog + real[:, i]
        sent = torch.minimum(avail, target[:, i])
        backlog = avail - sent
        if budget_slots > 0:
            lo = i - budget_slots
            recent = csum[:, i] - (csum[:, lo] if lo >= 0 else 0.0)
            leak = F.relu(backlog - recent)
        else:
            leak = backlog
        backlog = backlog - leak
        leaked = leaked + leak
        waiting = waiting + backlog
        obs.append(target[:, i] + leak)
    return torch.stack(obs, dim=1), leaked, waiting, backlog


# ---------------------------------------------------------------------------------------------
# training one set


class _SetData:
    def __init__(self, x: torch.Tensor, y: torch.Tensor, n: int):
        self.x, self.y, self.n = x, y, n
        self.s = torch.zeros(x.shape[0], dtype=torch.float32, device=x.device)


@torch.no_grad()
def _observed(gen: TargetGenerator, x: torch.Tensor, budget: int, rng: torch.Generator, batch: int = 4096
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Observed windows of every row of x under fresh, ROUNDED targets (what would be served)."""
    gen.eval()
    outs, leaks, waits, targets = [], [], [], []
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch]
        z = torch.randn((xb.shape[0], gen.latent_dim), generator=rng).to(x.device)
        t = torch.round(gen(z))
        o, lk, w, _ = pad_to_target(xb, t, budget)
        outs.append(o)
        leaks.append(lk)
        waits.append(w)
        targets.append(t)
    return torch.cat(outs), torch.cat(leaks), torch.cat(waits), torch.cat(targets)


def _epochs_for(epochs: int, n_train: int, st: TargetSettings) -> int:
    """`epochs`, raised so that a small set still gets at least min_steps optimiser steps."""
    if epochs == 0:
        return 0
    per_epoch = max(1, math.ceil(n_train / st.batch_size))
    return max(epochs, math.ceil(st.min_steps / per_epoch))


def _fit_attacker(model_name: str, data: _SetData, tr: torch.Tensor, va: torch.Tensor, gen: Optional[TargetGenerator],
                  st: TargetSettings, epochs: int, weight: torch.Tensor, rng: torch.Generator,
                  early_stopping: bool) -> nn.Module:
    """An attacker trained from scratch on observed windows (fresh targets every epoch)."""
    model = build_discriminator(model_name, data.n, data.x.shape[1]).to(data.x.device)
    opt = torch.optim.Adam(model.parameters(), lr=st.lr)
    best, best_state, bad = float("inf"), None, 0
    for _ in range(_epochs_for(epochs, tr.shape[0], st)):
        xo = data.x if gen is None else _observed(gen, data.x, st.budget_slots, rng)[0]
        model.train()
        perm = tr[torch.randperm(tr.shape[0], generator=rng).to(tr.device)]
        for i in range(0, perm.shape[0], st.batch_size):
            b = perm[i:i + st.batch_size]
            loss = F.cross_entropy(model(xo[b], data.s[b]), data.y[b], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if early_stopping and va.numel() > 0:
            model.eval()
            with torch.no_grad():
                vl = float(F.cross_entropy(model(xo[va], data.s[va]), data.y[va], weight=weight))
            if vl < best - 1e-4:
                best, bad = vl, 0
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
                if bad >= st.patience:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model


def _train_generator(gen: TargetGenerator, attackers: Sequence[nn.Module], data: _SetData, tr: torch.Tensor,
                     st: TargetSettings, weight: torch.Tensor, scale: torch.Tensor, rng: torch.Generator,
                     device: torch.device) -> dict[str, float]:
    opt = torch.optim.NAdam(gen.parameters(), lr=st.generator_lr)
    gen.train()
    log_m = math.log(data.n)
    last: dict[str, float] = {}
    with frozen(attackers, device):
        for _ in range(_epochs_for(st.generator_epochs, tr.shape[0], st)):
            perm = tr[torch.randperm(tr.shape[0], generator=rng).to(tr.device)]
            for i in range(0, perm.shape[0], st.batch_size):
                b = perm[i:i + st.batch_size]
                x = data.x[b]
                z = torch.randn((b.shape[0], gen.latent_dim), generator=rng).to(device)
                t = gen(z)
                obs, leak, wait, carry = pad_to_target(x, t, st.budget_slots)
                w = weight[data.y[b]]
                priv = 0.0
                for a in attackers:
                    per = -F.log_softmax(a(obs, data.s[b]), dim=1).mean(dim=1) - log_m  # >= 0, 0 at uniform
                    priv = priv + (per * w).sum() / w.sum()
                priv = priv / len(attackers)
                pad = (obs - x).sum(1)  # [B, 4]: padding per window (negative where traffic waits)

                def wmean(v: torch.Tensor) -> torch.Tensor:  # class-balanced, like the privacy term
                    return (v * w).sum() / w.sum()

                cost_b = wmean((pad[:, [1, 3]] / scale[[1, 3]]).sum(1))
                cost_p = wmean((pad[:, [0, 2]] / scale[[0, 2]]).sum(1))
                cost_l = wmean((leak[:, [1, 3]] / scale[[1, 3]]).sum(1))
                cost_w = wmean(((wait + carry * st.budget_slots)[:, [1, 3]] / scale[[1, 3]]).sum(1)) * st.omega
                loss = (st.privacy_weight * priv + st.byte_weight * cost_b + st.packet_weight * cost_p
                        + st.leak_weight * cost_l + st.latency_weight * cost_w)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                last = {"loss": loss.item(), "privacy": float(priv.detach()), "bytes": cost_b.item(),
                        "packets": cost_p.item(), "leak": cost_l.item(), "wait_s": cost_w.item()}
    gen.eval()
    return last


def _costs(x: torch.Tensor, obs: torch.Tensor, leak: torch.Tensor, wait: torch.Tensor, omega: float) -> dict[str, float]:
    real = x.sum(dim=(0, 1))
    seen = obs.sum(dim=(0, 1))
    lk = leak.sum(0)
    rb, rp = float(real[[1, 3]].sum()), float(real[[0, 2]].sum())
    return {
        "byte_overhead": float(seen[[1, 3]].sum()) / rb if rb > 0 else None,
        "packet_overhead": float(seen[[0, 2]].sum()) / rp if rp > 0 else None,
        "leaked_byte_fraction": float(lk[[1, 3]].sum()) / rb if rb > 0 else None,
        "mean_wait_s_per_byte": float(wait[:, [1, 3]].sum()) * omega / rb if rb > 0 else None,
        "real_bytes_per_window": rb / max(x.shape[0], 1),
        "observed_bytes_per_window": float(seen[[1, 3]].sum()) / max(x.shape[0], 1),
    }


def _set_limits(x: np.ndarray, y: np.ndarray, n: int, q: float
                ) -> tuple[list[float], list[list[float]], np.ndarray, list[float]]:
    """Per direction: max packets per slot (quantile q of non-zero slots) and the mean-size range;
    the initial levels: per slot the members' mean packets (balanced over members) / max, and the
    90th percentile of mean sizes."""
    maxp, sizes, slevel = [], [], []
    prof = np.stack([x[y == c].mean(0) for c in range(n) if (y == c).any()]).mean(0)  # [S, 4]
    plevel = np.zeros((x.shape[1], 2))
    for d in range(2):
        p, b = x[..., 2 * d].ravel(), x[..., 2 * d + 1].ravel()
        act = p > 0
        if not act.any():
            maxp.append(1.0)
            sizes.append([1.0, 2.0])
            slevel.append(0.5)
            continue
        mp = max(1.0, float(np.ceil(np.quantile(p[act], q))))
        sz = b[act] / p[act]
        lo, hi = float(np.floor(sz.min())), float(np.ceil(sz.max()))
        lo = max(lo, 1.0)
        hi = max(hi, lo + 1.0)
        maxp.append(mp)
        sizes.append([lo, hi])
        plevel[:, d] = prof[:, 2 * d] / mp
        slevel.append(float((np.quantile(sz, 0.9) - lo) / (hi - lo)))
    return maxp, sizes, plevel, slevel


def train_set(set_name: str, member_ids: Sequence[int], w: Windows, st: TargetSettings, device: torch.device,
              rng: torch.Generator, np_rng: np.random.Generator) -> tuple[TargetGenerator, dict[str, Any]]:
    """Train one set's generator; returns it and the set's metrics."""
    t0 = time.time()
    idx = np.flatnonzero(np.isin(w.labels, member_ids))
    sub = w.subset(idx)
    to_cls = {dev: c for c, dev in enumerate(member_ids)}
    y = np.array([to_cls[int(v)] for v in sub.labels], dtype=np.int64)
    n = len(member_ids)
    split = make_split(Windows(sub.features, sub.silence, y, sub.start_time, sub.meta), range(n), st.split,
                       st.train_fraction, st.val_fraction, np_rng)
    fit = np.concatenate([split.train, split.val])
    n_fit = np.bincount(y[fit], minlength=n)
    lacking = [str(d["name"]) for d in w.meta["devices"] for c, i in enumerate(member_ids)
               if int(d["id"]) == i and n_fit[c] == 0]
    if lacking:
        raise ValueError(f"set {set_name}: no windows before the time cut for {', '.join(lacking)} (at "
                         f"train_fraction={st.train_fraction} of the set's span); leave them out of the set or "
                         f"use --split random")
    maxp, sizes, plevel, slevel = _set_limits(sub.features[fit], y[fit], n, st.cap_quantile)
    slots = sub.features.shape[1]
    torch.manual_seed(st.seed * 7919 + 1)
    gen = TargetGenerator(st.latent_dim, slots, maxp, sizes, st.hidden).to(device)
    gen.init_bias(plevel, slevel)
    data = _SetData(torch.from_numpy(sub.features).to(device), torch.from_numpy(y).to(device), n)
    tr = torch.from_numpy(split.train).to(device)
    va = torch.from_numpy(split.val).to(device)
    te = torch.from_numpy(split.test).to(device)
    start_test = sub.start_time[split.test]  # the scorer's bootstrap resamples a member's hours
    weight = class_weights(y[split.train], n, "balanced").to(device)
    # cost scale: the set's real traffic per window, per column, balanced over members
    per_member = np.stack([sub.features[fit][y[fit] == c].sum(1).mean(0) for c in range(n)])
    scale = torch.tensor(np.maximum(per_member.mean(0), 1.0), dtype=torch.float32, device=device)
    log(f"set {set_name}: {n} members, train {len(split.train)} / val {len(split.val)} / test {len(split.test)}; "
         f"caps {[round(float(c)) for c in gen.caps]} (packets {maxp}, sizes {sizes})")
    stages = []
    for stage in range(st.stages):
        ts = time.time()
        attackers = [_fit_attacker(m, data, tr, va, gen, st, st.attacker_epochs, weight, rng, False)
                     for m in st.attacker_list]
        with torch.no_grad():
            xo = _observed(gen, data.x[va], st.budget_slots, rng)[0] if va.numel() else None
        att_ba = []
        if xo is not None:
            for a in attackers:
                pred = a(xo, data.s[va]).argmax(1).cpu().numpy()
                att_ba.append(balanced_accuracy(y[split.val], pred, n))
        info = _train_generator(gen, attackers, data, tr, st, weight, scale, rng, device)
        rec = {"stage": stage, "attackers_val_balanced_accuracy": att_ba, "generator": info,
               "seconds": round(time.time() - ts, 1)}
        stages.append(rec)
        log(f"set {set_name} stage {stage}: attackers (val, before the generator step) "
             f"{[round(v, 3) for v in att_ba]}; generator {({k: round(v, 3) for k, v in info.items()})} "
             f"({rec['seconds']} s)")
    # evaluation: attackers retrained from scratch on the final generator's observed windows
    ev: dict[str, Any] = {"chance": 1.0 / n}
    und, dfd = {}, {}
    for m in st.attacker_list:
        a0 = _fit_attacker(m, data, tr, va, None, st, st.retrain_epochs, weight, rng, True)
        und[m] = scores(y[split.test], a0(data.x[te], data.s[te]).argmax(1).cpu().numpy(), n, start=start_test, seed=st.seed)
        a1 = _fit_attacker(m, data, tr, va, gen, st, st.retrain_epochs, weight, rng, True)
        xo = _observed(gen, data.x[te], st.budget_slots, rng)[0]
        dfd[m] = scores(y[split.test], a1(xo, data.s[te]).argmax(1).cpu().numpy(), n, start=start_test, seed=st.seed)
    ev["undefended"] = und
    ev["retrained"] = dfd
    ev["max_retrained_balanced_accuracy"] = max(v["balanced_accuracy"] for v in dfd.values())
    ev["max_undefended_balanced_accuracy"] = max(v["balanced_accuracy"] for v in und.values())
    obs, leak, wait, tgt = _observed(gen, data.x[te], st.budget_slots, rng)
    ev["proxy_costs"] = _costs(data.x[te], obs, leak, wait, st.omega)
    ev["target_per_window"] = [round(float(v), 1) for v in tgt.sum(1).mean(0)]
    log(f"set {set_name}: within-set balanced accuracy undefended {ev['max_undefended_balanced_accuracy']:.3f} -> "
         f"defended {ev['max_retrained_balanced_accuracy']:.3f} (chance {1 / n:.3f}); proxy costs "
         f"{ {k: (round(v, 3) if v is not None else None) for k, v in ev['proxy_costs'].items()} }")
    ev["stages"] = stages
    ev["seconds"] = round(time.time() - t0, 1)
    ev["windows"] = {"train": int(len(split.train)), "val": int(len(split.val)), "test": int(len(split.test))}
    ev["max_packets"] = maxp
    ev["size_range"] = sizes
    return gen, ev


def verify_targets(gen: TargetGenerator, path: str | Path, n: int = 512, seed: int = 1234) -> dict[str, Any]:
    """Run the exported ONNX file with onnxruntime against torch on random z (and a batch of 1).

    Packet columns must be equal; byte columns (up to tens of thousands, where float32 steps are
    ~0.01) may differ by 1 only where torch's unrounded value lies within max(1e-4, 1e-6 * value)
    of a .5 tie. Also checks names, shape, whole numbers and the [0, caps] range."""
    import onnx
    import onnxruntime as ort

    path = Path(path)
    onnx.checker.check_model(onnx.load(str(path)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if [i.name for i in sess.get_inputs()] != [INPUT_NAME] or [o.name for o in sess.get_outputs()] != [OUTPUT_NAME]:
        raise ExportError(f"{path}: input/output names are not {INPUT_NAME}/{OUTPUT_NAME}")
    g = gen.cpu().eval()
    caps = g.caps.numpy()
    rng = np.random.default_rng(seed)
    worst, ties = 0.0, 0
    for batch in (n, 1):
        z = rng.standard_normal((batch, g.latent_dim)).astype(np.float32)
        with torch.no_grad():
            raw = g(torch.from_numpy(z)).numpy()
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: z})[0]
        if got.shape != (batch, g.slots, 4) or got.dtype != np.float32:
            raise ExportError(f"{path}: output {got.shape} {got.dtype}, expected ({batch}, {g.slots}, 4) float32")
        if not np.array_equal(got, np.round(got)) or (got < 0).any() or (got > caps).any():
            raise ExportError(f"{path}: output not whole numbers within caps {caps.tolist()}")
        if (got[..., [1, 3]] > 0).any() and ((got[..., [1, 3]] > 0) & (got[..., [0, 2]] == 0)).any():
            raise ExportError(f"{path}: a slot has bytes without packets")
        diff = np.abs(got - np.round(raw))
        tol = np.maximum(1e-4, 1e-6 * np.abs(raw))
        near_tie = np.abs(np.abs(raw - np.floor(raw)) - 0.5) <= tol
        bad = (diff > 0) & ~(near_tie & (diff <= 1.0))
        if bad.any() or (diff[..., [0, 2]] > 0).any():
            raise ExportError(f"{path}: onnxruntime differs from torch at {int((diff > 0).sum())} values "
                              f"(max abs diff {float(diff.max())})")
        ties += int((diff > 0).sum())
        worst = max(worst, float(diff.max()))
    return {"max_abs_diff": worst, "tie_differences": ties}


# ---------------------------------------------------------------------------------------------
# the run


def train_targets(windows_dir: str | Path, out_dir: str | Path, st: TargetSettings,
                  sets: Optional[str | Sequence[Sequence[str]]] = None,
                  windows_info: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Train one target generator per set from a windows directory into out_dir; returns the manifest."""
    st.validate()
    t0 = time.time()
    if st.threads:
        torch.set_num_threads(st.threads)
    seed_everything(st.seed)
    device = resolve_device(st.device)
    np_rng = np.random.default_rng(st.seed)
    rng = torch.Generator().manual_seed(st.seed)
    out = Path(out_dir)
    w = load_training_windows(windows_dir, st, np_rng)
    meta = w.meta
    sel = select_devices(w, st.min_windows_per_device)
    with_windows = [sel.devices[i] for i in sel.class_ids]
    counts = np.bincount(w.labels, minlength=max(sel.devices) + 1)
    if sel.skipped and sets:
        # a set naming a device without enough windows: leave it out of that set (select_devices warned)
        names_ok = {d["name"] for d in with_windows}
        groups = parse_sets(sets) if isinstance(sets, str) else [list(g) for g in sets]
        sets = [[m for m in g if m in names_ok] for g in groups]
    named = resolve_sets(with_windows, sets)
    by_name = {d["name"]: d for d in with_windows}
    out.mkdir(parents=True, exist_ok=True)

    settings_out = asdict(st)
    settings_out["slots_per_window"] = st.slots_per_window
    settings_out["name"] = st.name or out.resolve().name
    set_entries, files, set_metrics, gens = [], {}, {}, {}
    for set_name, members in named:
        ids = [int(by_name[m]["id"]) for m in members]
        gen, ev = train_set(set_name, ids, w, st, device, rng, np_rng)
        d = safe_dir_name(set_name)
        rel = f"{d}/g0.onnx"
        export_generator(gen, out / rel)
        ev["onnx_verification"] = verify_targets(gen, out / rel)
        caps = [int(round(float(c))) for c in gen.caps]
        set_entries.append({"name": set_name, "members": list(members), "caps": caps, "dir": d})
        for m in members:
            files[m] = rel
        set_metrics[set_name] = ev
        gens[set_name] = gen
    all_caps = [max(e["caps"][i] for e in set_entries) for i in range(4)]
    settings_out["max_packets_per_omega"] = max(all_caps[0], all_caps[2])
    settings_out["max_payload_per_omega"] = max(all_caps[1], all_caps[3])
    set_of = {m: e["name"] for e in set_entries for m in e["members"]}
    devices_out = []
    for i, dn in enumerate(sorted(set_of, key=lambda n: int(by_name[n]["id"]))):
        d = by_name[dn]
        devices_out.append({**device_ids(i, int(d["id"])), "name": dn, "mac": d.get("mac"), "ip": d.get("ip"),
                            "matched_by": d.get("matched_by"), "set": set_of[dn],
                            "windows": int(counts[int(d["id"])])})
    n_dev = len(devices_out)
    # balanced accuracy over all devices if every set were perfectly hidden inside: m / N
    manifest: dict[str, Any] = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "family": FAMILY,
        "name": settings_out["name"],
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "settings": settings_out,
        "columns": list(COLUMNS),
        "caps": [settings_out["max_packets_per_omega"], settings_out["max_payload_per_omega"],
                 settings_out["max_packets_per_omega"], settings_out["max_payload_per_omega"]],
        "onnx": onnx_section(st.latent_dim, w.slots),
        "sets": set_entries,
        "devices": devices_out,
        "skipped_devices": sel.skipped,
        "generations": [{"index": 0, "files": files, "metrics": {}}],
        "metrics": {"status": "complete", "sets": set_metrics,
                    "perfect_hiding_balanced_accuracy": len(set_entries) / n_dev,
                    "device": str(device), "threads": torch.get_num_threads(),
                    "training_seconds": round(time.time() - t0, 1)},
        "windows": {k: meta.get(k) for k in ("total_time", "omega", "slots_per_window", "stats")},
        "provenance": provenance(windows_dir, windows_info),
    }
    write_manifest(out, manifest)
    print(format_table(manifest))
    return manifest


def format_table(manifest: dict[str, Any]) -> str:
    m = manifest["metrics"]
    lines = [f"set-targets model set {manifest['name']}: {len(manifest['devices'])} devices in "
             f"{len(manifest['sets'])} sets (perfect hiding inside sets: balanced accuracy "
             f"{m['perfect_hiding_balanced_accuracy']:.3f})",
             f"{'set':>12} | members | caps [in_p, in_B, out_p, out_B] | within-set BA undefended -> defended "
             f"(chance) | proxy byte / packet overhead, leaked"]
    for e in manifest["sets"]:
        ev = m["sets"][e["name"]]
        c = ev["proxy_costs"]
        lines.append(f"{e['name']:>12} | {len(e['members']):7d} | {str(e['caps']):>31} | "
                     f"{ev['max_undefended_balanced_accuracy']:.3f} -> {ev['max_retrained_balanced_accuracy']:.3f} "
                     f"({ev['chance']:.3f}) | {c['byte_overhead']:.2f}x / {c['packet_overhead']:.2f}x, "
                     f"{c['leaked_byte_fraction']:.3f}")
    lines.append(f"training time: {m['training_seconds']:.0f} s on {m['device']}")
    return "\n".join(lines)
