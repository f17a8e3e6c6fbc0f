"""Seed-format test panels shared by the validation and canonicalize tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_panel(n_entities: int = 3, n_periods: int = 160, start: str = "2022-01-03", freq: str = "7D",
               seed: int = 0) -> pd.DataFrame:
    """Seed-format panel: entities x periods with two drivers, their spend and a price control."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=n_periods, freq=freq)
    frames = []
    for e in range(n_entities):
        tv = rng.gamma(2.0, 1000.0, n_periods)
        dig = rng.gamma(3.0, 500.0, n_periods)
        price = 100 + rng.normal(0, 2, n_periods)
        sales = 1000 * (e + 1) + 0.1 * tv + 0.2 * dig - 3 * price + rng.normal(0, 20, n_periods)
        frames.append(pd.DataFrame({
            "entity_id": f"store_{e + 1}",
            "period_start": dates.strftime("%Y-%m-%d"),
            "sales": sales,
            "act_tv": tv,
            "act_digital": dig,
            "spend_tv": tv * 0.02,
            "spend_digital": dig * 0.05,
            "ctrl_price_index": price,
        }))
    return pd.concat(frames, ignore_index=True)
