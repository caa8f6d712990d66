"""The analytics pages' tables, as pandas DataFrames: what the pages draw and offer as CSV, and
what ``python -m review report`` prints. Every number comes from review/metrics/; this module
only names the columns and rounds nothing (pages format, files keep full precision).

The role is read again from the database (``auth.require_live``) before anything is counted;
CSV text goes through ``review.csvout`` (formulas neutralised); :func:`write_files` refuses to
replace files a folder already holds unless told to."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from db.session import db_text
from review import csvout
from review.auth import Actor, Permission, require_live
from review.errors import ReviewError
from review.files import write_text
from review.metrics.accuracy import CALIBRATION_BINS, Accuracy, Slice, accuracy, breakdown, slices, threshold_for
from review.metrics.activity import Activity, activity
from review.metrics.agreement import Agreement, agreement
from review.metrics.filters import MetricFilter

SECTIONS = ("accuracy", "agreement", "activity")
# the activity section's first name, which scripts may still ask for (`--section operations`)
SECTION_ALIASES = {"operations": "activity"}


def of_decided(acc: Accuracy, value: float) -> float | None:
    """A rate over the decided posts, or None (shown "n/a") when there are none: 0.000 would read
    as a model that got everything wrong."""
    return value if acc.n else None


def binary_table(acc: Accuracy) -> pd.DataFrame:
    b = acc.binary
    return pd.DataFrame(
        [
            {
                "posts": b.n,
                "precision": of_decided(acc, b.precision),
                "recall": of_decided(acc, b.recall),
                "f1": of_decided(acc, b.f1),
                "accuracy": of_decided(acc, b.accuracy),
                "roc_auc": b.auc,
                "true_positives": b.tp,
                "false_positives": b.fp,
                "false_negatives": b.fn,
                "true_negatives": b.tn,
                "category_macro_f1": of_decided(acc, acc.macro_f1),
                "category_micro_f1": of_decided(acc, acc.micro_f1),
                "expected_calibration_error": acc.ece,
                "model_failures": acc.model_failures,
            }
        ]
    )


def categories_table(acc: Accuracy) -> pd.DataFrame:
    return pd.DataFrame(
        [asdict(c) for c in acc.categories], columns=["category", "precision", "recall", "f1", "support", "predicted"]
    )


def confusion_table(acc: Accuracy) -> pd.DataFrame:
    """Long form: one row per (human, model) cell with posts, including the empty cells."""
    names = sorted({h for h, _ in acc.confusion} | {m for _, m in acc.confusion})
    rows = [{"human": h, "model": m, "posts": acc.confusion.get((h, m), 0)} for h in names for m in names]
    return pd.DataFrame(rows, columns=["human", "model", "posts"])


def calibration_table(acc: Accuracy) -> pd.DataFrame:
    rows = [
        {
            "bin": f"{b / CALIBRATION_BINS:.1f}–{(b + 1) / CALIBRATION_BINS:.1f}",
            "posts": n,
            "mean_confidence": conf,
            "share_correct": right,
        }
        for b, n, conf, right in acc.calibration
    ]
    return pd.DataFrame(rows, columns=["bin", "posts", "mean_confidence", "share_correct"])


def slices_table(rows: list[Slice], key: str) -> pd.DataFrame:
    table = [
        {
            key: s.key,
            "posts": s.binary.n,
            "precision": s.binary.precision,
            "recall": s.binary.recall,
            "f1": s.binary.f1,
            "accuracy": s.binary.accuracy,
            "category_macro_f1": s.macro_f1,
            "category_accuracy": s.category_accuracy,
        }
        for s in rows
    ]
    return pd.DataFrame(
        table, columns=[key, "posts", "precision", "recall", "f1", "accuracy", "category_macro_f1", "category_accuracy"]
    )


def thresholds_table(acc: Accuracy, target: float) -> pd.DataFrame:
    rows = []
    for action, violation in (("auto-remove", True), ("auto-approve", False)):
        t = threshold_for(acc, target, violation=violation)
        rows.append(
            {
                "action": action,
                "target_precision": target,
                "min_confidence": t.confidence if t else None,
                "precision": t.precision if t else None,
                "posts": t.posts if t else 0,
                "share_of_decided": t.share if t else of_decided(acc, 0.0),
            }
        )
    return pd.DataFrame(rows)


def agreement_tables(agr: Agreement) -> dict[str, pd.DataFrame]:
    overall = pd.DataFrame(
        [
            {
                "multi_rated_posts": agr.posts,
                "fleiss_kappa": agr.fleiss_kappa,
                "fleiss_posts": agr.fleiss_posts,
                "fleiss_raters_per_post": agr.fleiss_raters,
                "krippendorff_alpha": agr.krippendorff_alpha,
            }
        ]
    )
    pairs = pd.DataFrame([asdict(p) for p in agr.pairs], columns=["first", "second", "posts", "agreement", "kappa"])
    raters = pd.DataFrame(
        [asdict(r) for r in agr.raters],
        columns=["username", "decisions", "overturn_rate", "with_consensus", "agrees_with_consensus"],
    )
    disputed = pd.DataFrame(agr.disputed, columns=["category", "multi_rated_posts", "share_disputed"])
    return {"agreement": overall, "agreement_pairs": pairs, "agreement_raters": raters, "disputed_categories": disputed}


def activity_tables(act: Activity) -> dict[str, pd.DataFrame]:
    """The Activity page's tables; their names (``operations_days``…) are the files and keys
    scripts already read, kept from before the page was called Activity."""
    days = pd.DataFrame(
        [asdict(d) for d in act.days],
        columns=[
            "day",
            "decisions",
            "escalations",
            "median_handling_s",
            "verdicts",
            "model_failures",
            "waiting",
            "oldest_waiting_h",
        ],
    )
    per_day = pd.DataFrame(act.per_moderator_day, columns=["day", "username", "actions"])
    moderators = pd.DataFrame(
        [asdict(m) for m in act.moderators],
        columns=["username", "decisions", "escalations", "overturns", "median_handling_s", "days_active"],
    )
    models = pd.DataFrame(
        [{**asdict(m), "cache_hit_rate": m.cache_hit_rate} for m in act.models],
        columns=[
            "provider",
            "model_id",
            "verdicts",
            "failures",
            "cache_hits",
            "cache_hit_rate",
            "latency_p50_ms",
            "latency_p95_ms",
        ],
    )
    return {"operations_days": days, "moderator_days": per_day, "moderators": moderators, "models": models}


def build(
    session: Session,
    actor: Actor,
    flt: MetricFilter,
    *,
    sections: tuple[str, ...] = SECTIONS,
    period: str = "week",
    target: float = 0.95,
) -> dict[str, pd.DataFrame]:
    """Every table of the chosen sections (``operations`` is ``activity``), by name, in page order."""
    actor = require_live(session, actor, Permission.METRICS)
    flt = clean_filter(flt)
    sections = tuple(SECTION_ALIASES.get(s, s) for s in sections)
    tables: dict[str, pd.DataFrame] = {}
    if "accuracy" in sections:
        acc = accuracy(session, actor, flt)
        tables["accuracy"] = binary_table(acc)
        tables["categories"] = categories_table(acc)
        tables["confusion"] = confusion_table(acc)
        tables["calibration"] = calibration_table(acc)
        tables["thresholds"] = thresholds_table(acc, target)
        tables[f"trend_{period}"] = slices_table(breakdown(session, actor, flt, period), period)
        for by, rows in slices(session, actor, flt).items():
            tables[f"by_{by}"] = slices_table(rows, by)
    if "agreement" in sections:
        tables.update(agreement_tables(agreement(session, actor, flt)))
    if "activity" in sections:
        tables.update(activity_tables(activity(session, actor, flt)))
    return tables


def clean_filter(flt: MetricFilter) -> MetricFilter:
    """``flt`` with its text fields reduced to what the database can compare (``db_text``)."""
    changes: dict[str, Any] = {f.name: db_text(v) for f in fields(flt) if isinstance(v := getattr(flt, f.name), str)}
    return replace(flt, **changes)


def filters_dict(flt: MetricFilter) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in asdict(flt).items() if v is not None}


def to_json(tables: dict[str, pd.DataFrame], flt: MetricFilter) -> str:
    body = {
        "filters": filters_dict(flt),
        "tables": {name: json.loads(df.to_json(orient="records", force_ascii=False)) for name, df in tables.items()},
    }
    return json.dumps(body, ensure_ascii=False, indent=2)


def to_csv(df: pd.DataFrame) -> str:
    return csvout.to_csv(df)


def write_files(out: Path, files: dict[str, str], *, force: bool = False) -> list[Path]:
    """Write ``files`` (name → text) into the folder ``out``, made if missing. Refuses (a
    ``ReviewError``, before writing anything) when ``out`` is not a folder or, unless ``force``,
    when it already holds a file of one of the names: a report run again must not silently
    replace the one before. Each file is written beside its place and renamed over it, so a
    reader never sees half a file and a link in the way is replaced, not followed."""
    if out.exists() and not out.is_dir():
        raise ReviewError(f"{out} is a file, not a folder: name a folder for the report")
    clashes = [name for name in files if os.path.lexists(out / name)]
    if clashes and not force:
        more = f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
        raise ReviewError(
            f"{out} already holds {', '.join(clashes[:3])}{more}: name another folder, or pass --force to replace them"
        )
    if any((out / name).is_dir() for name in clashes):
        raise ReviewError(f"{out} holds a folder named like a report file: name another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in files.items():
            # permissions as a plain write would make them (the umask); without force, a file
            # that appeared since the check above is not replaced either
            write_text(out / name, text, overwrite=force)
            written.append(out / name)
    except FileExistsError:
        raise ReviewError(
            f"{out} gained a file named like the report's while it was written: name another folder, or pass --force"
        ) from None
    except OSError as exc:
        raise ReviewError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return written
