"""Are the ROI intervals honest? Coverage of the 90% ROI interval over simulated datasets with known truth.

Usage::

    .venv/bin/python benchmarks/roi_coverage.py [--datasets 10] [--draws 1000] [--tune 1000]

Each dataset comes from ``mmm_lib.sample.generate_sample`` with its own seed and randomly drawn true
channel coefficients and true ROIs (0.2–4 per unit of spend), under the settings of
``params/example.yaml`` (so the model is correctly specified: this checks the inference, not the
choice of adstock/saturation). The library path of the six stages is run (no notebooks) and the
90% interval of each channel's ROI is compared with the true ROI. With honest intervals about 90% of
them cover the truth; far fewer means overconfidence. Also printed: mean absolute relative error of
the ROI posterior mean and the mean interval width relative to the truth. ``--truth-set`` simulates
under other adstock/saturation settings than the fitted spec, to measure what misspecification does.
"""

from __future__ import annotations

import argparse

import numpy as np

from mmm_lib import model_pymc
from mmm_lib.canonicalize import canonicalize
from mmm_lib.contributions import compute_contributions
from mmm_lib.features import build_features
from mmm_lib.sample import generate_sample
from mmm_lib.spec import load_spec
from mmm_lib.storage import repo_root

CHANNELS = ["act_tv", "act_digital", "act_radio"]


def one(seed: int, spec, truth_spec) -> list[tuple[str, float, float, float, float]]:
    rng = np.random.default_rng(1000 + seed)
    beta = {c: float(rng.uniform(0.03, 0.2)) for c in CHANNELS}
    roi = {c: float(rng.uniform(0.2, 4.0)) for c in CHANNELS}
    raw, truth = generate_sample(seed=seed, spec=truth_spec, beta=beta, target_roi=roi)
    canonical, info = canonicalize(raw, spec)
    features, meta, scaler = build_features(canonical, info, spec)
    model, minfo = model_pymc.build_model(features, meta)
    idata = model_pymc.fit(model, spec, progress=False)
    mmeta = model_pymc.model_metadata(minfo, spec, idata)
    res = compute_contributions(canonical, info, features, meta, scaler, mmeta, idata)
    return [(c["channel"], truth["roi"][c["channel"]], c["roi"], c["roi_low"], c["roi_high"])
            for c in res.roi["channels"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", type=int, default=10)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--truth-set", action="append", default=[], metavar="KEY=VALUE",
                    help="simulate under a different spec than the one fitted, e.g. "
                         "--truth-set feature_config.adstock.per_channel.act_tv=0.3 (misspecification)")
    args = ap.parse_args()
    example = repo_root() / "params" / "example.yaml"
    spec = load_spec(example, [f"draws={args.draws}", f"tune={args.tune}"])
    truth_spec = load_spec(example, args.truth_set)
    rows = []
    for seed in range(args.datasets):
        for ch, true, mean, low, high in one(seed, spec, truth_spec):
            rows.append((seed, ch, true, mean, low, high))
            hit = "yes" if low <= true <= high else "NO"
            print(f"seed {seed:>2} {ch:<12} true {true:5.2f}  est {mean:5.2f} [{low:5.2f}, {high:5.2f}]  covered {hit}",
                  flush=True)
    arr = np.array([r[2:] for r in rows])
    covered = np.mean((arr[:, 2] <= arr[:, 0]) & (arr[:, 0] <= arr[:, 3]))
    print(f"\n90% ROI interval coverage: {covered:.2f} over {len(rows)} channel-datasets (nominal 0.90)")
    print(f"mean |est - true| / true: {np.mean(np.abs(arr[:, 1] - arr[:, 0]) / arr[:, 0]):.2f}")
    print(f"mean interval width / true: {np.mean((arr[:, 3] - arr[:, 2]) / arr[:, 0]):.2f}")


if __name__ == "__main__":
    main()
