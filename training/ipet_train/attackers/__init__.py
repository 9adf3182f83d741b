"""The attacker suite of the evaluation (docs/threat-model.md): the datasets the Rust data plane
writes (`ipet features`, `ipet simulate --features`), one time-fold splitter, one scorer with
bootstrap intervals, and the attackers (sequence networks, k-FP-style gradient boosting, M_agg,
the cover-vs-real distinguisher)."""
