"""M_seq discriminators (reference section 3) and the per-device generator (section 4).

Discriminators take RAW windows [B, S, 4] (packets and payload bytes per slot, columns
in_packets, in_bytes, out_packets, out_bytes) and raw silence [B] (seconds) and normalise them
inside, with log1p as the first layer, so a generator's perturbation is added in raw units before
it. They return logits; the softmax of the reference's last layer lives in the loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _log1p(x: torch.Tensor) -> torch.Tensor:
    return torch.log1p(torch.clamp(x, min=0.0))


class _Head(nn.Module):
    """concat silence -> Dense(hidden, tanh) -> Dropout -> Dense(n_classes) (logits)."""

    def __init__(self, in_features: int, hidden: int, n_classes: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(in_features + 1, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, h: torch.Tensor, silence: torch.Tensor) -> torch.Tensor:
        h = torch.cat([h, _log1p(silence).unsqueeze(1)], dim=1)
        return self.out(self.dropout(torch.tanh(self.dense(h))))


class LSTMDiscriminator(nn.Module):
    """BiLSTM(8, sequences) -> BiLSTM(8) -> concat silence -> Dense(128, tanh) -> Dropout(0.2) -> Dense(n)."""

    def __init__(self, n_classes: int, slots: int = 40, hidden: int = 8):
        super().__init__()
        self.rnn1 = nn.LSTM(4, hidden, batch_first=True, bidirectional=True)
        self.rnn2 = nn.LSTM(2 * hidden, hidden, batch_first=True, bidirectional=True)
        self.head = _Head(2 * hidden, 128, n_classes, 0.2)

    def forward(self, x: torch.Tensor, silence: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn1(_log1p(x))
        _, (hn, _) = self.rnn2(h)  # hn: [2, B, hidden] (forward last step, backward first step)
        h = torch.cat([hn[0], hn[1]], dim=1)
        return self.head(h, silence)


class GRUDiscriminator(nn.Module):
    """GRU(32, sequences) -> GRU(32) -> concat silence -> Dense(128, tanh) -> Dropout(0.2) -> Dense(n)."""

    def __init__(self, n_classes: int, slots: int = 40, hidden: int = 32):
        super().__init__()
        self.rnn1 = nn.GRU(4, hidden, batch_first=True)
        self.rnn2 = nn.GRU(hidden, hidden, batch_first=True)
        self.head = _Head(hidden, 128, n_classes, 0.2)

    def forward(self, x: torch.Tensor, silence: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn1(_log1p(x))
        _, hn = self.rnn2(h)
        return self.head(hn[-1], silence)


class CNNDiscriminator(nn.Module):
    """Conv1D(64, k=3, relu) x2 -> Dropout(0.5) -> MaxPool(2) -> flatten -> concat silence ->
    Dense(100, tanh) -> Dense(n). (Valid padding, as Keras' default.)"""

    def __init__(self, n_classes: int, slots: int = 40, channels: int = 64):
        super().__init__()
        if slots < 6:
            raise ValueError("the CNN discriminator needs at least 6 slots")
        self.conv1 = nn.Conv1d(4, channels, 3)
        self.conv2 = nn.Conv1d(channels, channels, 3)
        self.dropout = nn.Dropout(0.5)
        self.pool = nn.MaxPool1d(2)
        flat = channels * ((slots - 4) // 2)
        self.head = _Head(flat, 100, n_classes, 0.0)

    def forward(self, x: torch.Tensor, silence: torch.Tensor) -> torch.Tensor:
        h = _log1p(x).transpose(1, 2)  # [B, 4, S]
        h = torch.relu(self.conv2(torch.relu(self.conv1(h))))
        h = self.pool(self.dropout(h)).flatten(1)
        return self.head(h, silence)


class MLPDiscriminator(nn.Module):
    """Per slot Dense(128, tanh) -> Dropout(0.2) -> Dense(32, tanh) -> flatten -> concat silence ->
    Dense(100, tanh) -> Dropout(0.2) -> Dense(n)."""

    def __init__(self, n_classes: int, slots: int = 40):
        super().__init__()
        self.slot1 = nn.Linear(4, 128)
        self.dropout = nn.Dropout(0.2)
        self.slot2 = nn.Linear(128, 32)
        self.head = _Head(32 * slots, 100, n_classes, 0.2)

    def forward(self, x: torch.Tensor, silence: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.slot1(_log1p(x)))
        h = torch.tanh(self.slot2(self.dropout(h))).flatten(1)
        return self.head(h, silence)


DISCRIMINATORS = {
    "lstm": LSTMDiscriminator,
    "gru": GRUDiscriminator,
    "cnn": CNNDiscriminator,
    "mlp": MLPDiscriminator,
}


def build_discriminator(model: str, n_classes: int, slots: int) -> nn.Module:
    try:
        cls = DISCRIMINATORS[model]
    except KeyError:
        raise ValueError(f"unknown discriminator {model!r}; choose one of {sorted(DISCRIMINATORS)}") from None
    return cls(n_classes=n_classes, slots=slots)


def discriminator_config(model: str, n_classes: int, slots: int) -> dict[str, Any]:
    return {"model": model, "n_classes": int(n_classes), "slots": int(slots)}


def save_discriminator(path, module: nn.Module, config: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    torch.save({"config": config, "state_dict": state, **(extra or {})}, path)


def load_discriminator(path, map_location: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a `discriminators/d<k>.pt` file: returns (module in eval mode, the saved dict)."""
    saved = torch.load(path, map_location=map_location, weights_only=True)
    cfg = saved["config"]
    m = build_discriminator(cfg["model"], cfg["n_classes"], cfg["slots"])
    m.load_state_dict(saved["state_dict"])
    m.eval()
    return m, saved


class Generator(nn.Module):
    """z [B, latent] -> Dense(S*4) -> sigmoid -> reshape (S, 4) -> * [max_p, max_b, max_p, max_b].

    The output is continuous (for training); `RoundedGenerator` is what is served/exported."""

    def __init__(self, latent_dim: int = 20, slots: int = 40, caps=(4, 100, 4, 100)):
        super().__init__()
        self.latent_dim = latent_dim
        self.slots = slots
        self.dense = nn.Linear(latent_dim, slots * 4)
        self.register_buffer("caps", torch.tensor([float(c) for c in caps], dtype=torch.float32))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # The caps are applied to the flat [B, S*4] output (caps repeated per slot), then reshaped:
        # the same numbers as reshaping first, but the exported graph's Mul then broadcasts over a
        # long row instead of 4 values at a time, which made onnxruntime spend most of a schedule's
        # time in that Mul (more than twice the whole graph's time otherwise).
        return (torch.sigmoid(self.dense(z)) * self.caps.repeat(self.slots)).view(-1, self.slots, 4)


class RoundedGenerator(nn.Module):
    """The inference form: the generator followed by rounding (half to even, as ONNX Round)."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.round(self.generator(z))
