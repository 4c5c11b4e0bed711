"""Evaluation plots as PNG (matplotlib, Agg backend): PR curve, lead times, feature importances."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402

log = logging.getLogger(__name__)


def save_all(directory: Path, y: np.ndarray, p: np.ndarray, leads: list[float], baseline: dict,
             model_metrics: dict, classifier: object, x: np.ndarray, names: list[str],
             unit: str = "h", seed: int = 0) -> list[Path]:
    """Write pr_curve.png, lead_times.png and feature_importance.png into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    fig, ax = plt.subplots(figsize=(5, 4))
    if y.any():
        prec, rec, _ = precision_recall_curve(y, p)
        ax.plot(rec, prec, label=f"model (PR-AUC {model_metrics.get('pr_auc', float('nan')):.2f})")
    ax.scatter([model_metrics.get("sample_recall", np.nan)], [model_metrics.get("sample_precision", np.nan)],
               marker="o", label="model at threshold")
    ax.scatter([baseline.get("sample_recall", np.nan)], [baseline.get("sample_precision", np.nan)],
               marker="x", label="threshold rule")
    ax.set_xlabel("recall (samples)")
    ax.set_ylabel("precision (samples)")
    ax.set_title("Failure within horizon, held-out devices")
    ax.legend(loc="lower left")
    out.append(_save(fig, directory / "pr_curve.png"))

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.hist(leads, bins=20)
    ax.set_xlabel(f"lead time, first alert to failure ({unit})")
    ax.set_ylabel("failures")
    ax.set_title(f"Lead times (median {np.median(leads) if leads else float('nan'):.0f} {unit})")
    out.append(_save(fig, directory / "lead_times.png"))

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(x), size=min(len(x), 2000), replace=False) if len(x) else np.arange(0)
    fig, ax = plt.subplots(figsize=(6, 5))
    if len(rows) and len(np.unique(y[rows])) > 1:
        imp = permutation_importance(classifier, x[rows], y[rows], scoring="average_precision",
                                     n_repeats=2, random_state=seed)
        top = np.argsort(imp.importances_mean)[::-1][:15][::-1]
        ax.barh([names[i] for i in top], imp.importances_mean[top])
    ax.set_xlabel("drop in PR-AUC when shuffled")
    ax.set_title("Feature importance (permutation)")
    fig.tight_layout()
    out.append(_save(fig, directory / "feature_importance.png"))
    return out


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    log.info("plot written: %s", path)
    return path
