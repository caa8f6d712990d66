"""Compute the signals images are missing, and store them.

Each image (media row) gets, once: an ``ocr`` signal (the lines, boxes and scores rapidocr read),
an ``nsfw`` signal (``{"score": p}``), and a ``dup_cluster`` signal (its cluster, the nearest
earlier image and their distance), plus the hashes and ``dup_cluster`` on ``media``. A
failure of one model on one image is stored as that signal's ``error`` and never stops the run;
an image whose ``dup_cluster`` is set counts as done, so failures are not retried forever.

Clusters: an image joins the cluster of the nearest earlier image within ``DUP_RADIUS`` bits,
comparing the whole-image perceptual hash, the content hash (a caption bar trimmed) and the
corner-crop hashes, and whose colours agree (see :class:`Clusters`); otherwise it starts its
own cluster, named by its own id. Lookups go through :class:`review.signals.neardup.MultiIndex`, never a scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from sqlalchemy import ColumnElement, Select, and_, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import Media, PostMedia, Signal
from db.session import rows_changed, writing
from review.config import Settings
from review.errors import MediaError
from review.media import colour_signature, content_phash, corner_phashes, load_normalised
from review.signals import nsfw, ocr
from review.signals.neardup import MultiIndex, colours_agree

# A candidate within DUP_RADIUS bits (of 64) of any hash pairing is a near duplicate when its
# colours agree too (review.signals.neardup.colours_agree). Measured on generated reposts
# (tests/test_signals_neardup.py): reposts ≤ 8 bits.
DUP_RADIUS = 8
# The clustering rule as recorded on each dup_cluster signal: the radius, and the colour check's
# version (2: a photo filter's copy agrees with its original, issue 19), so that clusters made
# under an earlier rule can be told apart.
DUP_RULE = f"radius-{DUP_RADIUS};colours-2"
BATCH = 16


@dataclass
class SignalStats:
    images: int = 0
    ocr_failed: int = 0
    nsfw_failed: int = 0
    unreadable: int = 0  # the stored file could not be loaded
    joined: int = 0  # images that joined an earlier image's cluster

    def summary(self) -> str:
        problems = [f"{self.unreadable} unreadable"] if self.unreadable else []
        problems += [f"OCR failed on {self.ocr_failed}"] if self.ocr_failed else []
        problems += [f"NSFW failed on {self.nsfw_failed}"] if self.nsfw_failed else []
        return f"signals for {self.images} images ({self.joined} near-duplicates of earlier images)" + (
            f"; {', '.join(problems)} (recorded as signal errors)" if problems else ""
        )


@dataclass(frozen=True)
class ImageHashes:
    """An image's perceptual hashes as 64-bit integers: the whole image, its content box
    (caption bar trimmed), its four corner crops; and its colour signature (see
    :mod:`review.media`). An unreadable image has only the phash stored at ingest."""

    whole: tuple[int, ...]
    corners: tuple[int, ...] = ()
    colour: bytes | None = None

    @classmethod
    def of(
        cls, phash: str, content: str | None = None, corners: str | list[str] | None = None, colour: str | None = None
    ) -> ImageHashes:
        corner_list = corners.split(",") if isinstance(corners, str) else corners or []
        whole = dict.fromkeys(int(h, 16) for h in (phash, content) if h)
        corner_set = tuple(dict.fromkeys(int(h, 16) for h in corner_list))
        return cls(tuple(whole), corner_set, bytes.fromhex(colour) if colour else None)

    @classmethod
    def of_image(cls, phash: str, image: Image.Image) -> ImageHashes:
        return cls.of(phash, content_phash(image), corner_phashes(image), colour_signature(image))

    def stored(self) -> dict[str, str | None]:
        """The media columns that keep these hashes (the phash is stored at ingest)."""
        corners = ",".join(f"{h:016x}" for h in self.corners) or None
        content = f"{self.whole[-1]:016x}" if len(self.whole) > 1 else None
        colour = self.colour.hex() if self.colour else None
        return {"content_phash": content, "corner_phashes": corners, "colour_signature": colour}


class Clusters:
    """Every clustered image's hashes, for near-duplicate lookups.

    Two multi-indexes: one of whole-image and content hashes, one of corner-crop hashes. A new
    image is compared whole-to-whole, whole-to-corner (it is a corner crop of an earlier image)
    and corner-to-whole (an earlier image is a corner crop of it); never corner-to-corner, which
    would only add chances of a false match."""

    def __init__(
        self,
        rows: Iterable[tuple[int, ImageHashes, int]] = (),
        agree: Callable[[bytes, bytes], bool] = colours_agree,
    ) -> None:
        """``rows``: (media id, hashes, cluster) of the images clustered so far; ``agree``: the
        colour check (another one only to measure it against, as bench/neardup.py does)."""
        self.agree = agree
        self.cluster_of: dict[int, int] = {}
        self.colour_of: dict[int, bytes] = {}
        whole_keys: list[int] = []
        whole: list[int] = []
        corner_keys: list[int] = []
        corners: list[int] = []
        for media_id, hashes, cluster in rows:
            self.cluster_of[media_id] = cluster
            if hashes.colour:
                self.colour_of[media_id] = hashes.colour
            whole_keys += [media_id] * len(hashes.whole)
            whole += hashes.whole
            corner_keys += [media_id] * len(hashes.corners)
            corners += hashes.corners
        self.whole = MultiIndex(whole_keys, whole)
        self.corners = MultiIndex(corner_keys, corners)

    @classmethod
    def load(cls, session: Session) -> Clusters:
        query = select(
            Media.id, Media.phash, Media.content_phash, Media.corner_phashes, Media.colour_signature, Media.dup_cluster
        ).where(Media.dup_cluster.is_not(None))
        return cls(
            (r.id, ImageHashes.of(r.phash, r.content_phash, r.corner_phashes, r.colour_signature), r.dup_cluster)
            for r in session.execute(query)
        )

    def __len__(self) -> int:
        return len(self.cluster_of)

    def nearest(self, hashes: ImageHashes, radius: int = DUP_RADIUS) -> tuple[int, int] | None:
        """(distance, media id) of the nearest clustered image within ``radius`` bits whose
        colours agree (when both colour signatures are known)."""
        found: dict[int, int] = {}
        for index, queries in ((self.whole, hashes.whole + hashes.corners), (self.corners, hashes.whole)):
            keys, distances = index.near_many(list(queries), radius)
            for key, distance in zip(keys.tolist(), distances.tolist(), strict=True):
                found[key] = min(distance, found.get(key, distance))
        for distance, key in sorted((distance, key) for key, distance in found.items()):
            theirs = self.colour_of.get(key)
            if not hashes.colour or not theirs or self.agree(hashes.colour, theirs):
                return distance, key
        return None

    def add(self, media_id: int, hashes: ImageHashes, cluster: int) -> None:
        self.cluster_of[media_id] = cluster
        if hashes.colour:
            self.colour_of[media_id] = hashes.colour
        for h in hashes.whole:
            self.whole.add(media_id, h)
        for h in hashes.corners:
            self.corners.add(media_id, h)

    def assign(self, media_id: int, hashes: ImageHashes) -> tuple[int, int | None, int | None]:
        """(cluster, nearest earlier image, distance) for a new image, which is then indexed."""
        best = self.nearest(hashes)
        cluster = self.cluster_of[best[1]] if best else media_id
        self.add(media_id, hashes, cluster)
        return cluster, (best[1] if best else None), (best[0] if best else None)


def _pending(posts: Select | None) -> ColumnElement[bool]:
    """Images without signals; with ``posts`` (a select of post ids), only those posts' images."""
    if posts is None:
        return Media.dup_cluster.is_(None)
    theirs = select(PostMedia.media_id).where(PostMedia.post_id.in_(posts))
    return and_(Media.dup_cluster.is_(None), Media.id.in_(theirs))


def pending_count(session: Session, posts: Select | None = None) -> int:
    return session.scalar(select(func.count(Media.id)).where(_pending(posts))) or 0


def _ocr(image: Image.Image) -> tuple[dict | None, str | None]:
    try:
        return ocr.read(image).as_json(), None
    except Exception as exc:  # a model failure on one image is that image's signal error
        return None, f"{type(exc).__name__}: {exc}"


def _nsfw(images: list[Image.Image]) -> tuple[list[float | None], str | None]:
    try:
        return list(nsfw.scores(images)), None
    except Exception as exc:
        return [None] * len(images), f"{type(exc).__name__}: {exc}"


def compute_signals(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    limit: int | None = None,
    posts: Select | None = None,
    progress: Callable[[int], None] | None = None,
) -> SignalStats:
    """Signals for images that have none yet (oldest first), ``limit`` images at most; with
    ``posts`` (a select of post ids), only for those posts' images."""
    ocr_version, nsfw_version = ocr.producer_version(), nsfw.producer_version()
    stats = SignalStats()
    with sessions() as session:
        clusters = Clusters.load(session)
    after = 0
    while limit is None or stats.images < limit:
        want = BATCH if limit is None else min(BATCH, limit - stats.images)
        with sessions() as session:
            batch = list(
                session.scalars(select(Media).where(_pending(posts), Media.id > after).order_by(Media.id).limit(want))
            )
        if not batch:
            break
        after = batch[-1].id
        images: dict[int, Image.Image] = {}
        rows: list[Signal] = []
        for media in batch:
            try:
                images[media.id] = load_normalised(Path(settings.media_dir), media.path, settings.max_image_pixels)
            except MediaError as exc:
                stats.unreadable += 1
                for kind, producer, version in (("ocr", "rapidocr", ocr_version), ("nsfw", "open_nsfw", nsfw_version)):
                    rows.append(Signal(media_id=media.id, kind=kind, value=None, producer=producer,
                                       producer_version=version, error=f"image unreadable: {exc}"))  # fmt: skip
        scores, nsfw_error = _nsfw(list(images.values()))
        nsfw_by_id = dict(zip(images, scores, strict=True))
        updates: dict[int, dict] = {}
        for media in batch:
            image = images.get(media.id)
            hashes = ImageHashes.of(media.phash)
            if image is not None:
                value, error = _ocr(image)
                stats.ocr_failed += error is not None
                rows.append(Signal(media_id=media.id, kind="ocr", value=value, producer="rapidocr",
                                   producer_version=ocr_version, error=error))  # fmt: skip
                score = nsfw_by_id[media.id]
                stats.nsfw_failed += score is None
                rows.append(Signal(media_id=media.id, kind="nsfw", value=None if score is None else {"score": score},
                                   producer="open_nsfw", producer_version=nsfw_version,
                                   error=nsfw_error if score is None else None))  # fmt: skip
                hashes = ImageHashes.of_image(media.phash, image)
            cluster, nearest, distance = clusters.assign(media.id, hashes)
            stats.joined += nearest is not None
            rows.append(Signal(media_id=media.id, kind="dup_cluster", producer="phash-multi-index",
                               producer_version=DUP_RULE,
                               value={"cluster": cluster, "nearest": nearest, "distance": distance}))  # fmt: skip
            updates[media.id] = {**hashes.stored(), "dup_cluster": cluster}
        with writing(sessions) as session:
            done = set()
            for media_id, values in updates.items():
                moved = rows_changed(
                    session,
                    update(Media)
                    .where(Media.id == media_id, Media.dup_cluster.is_(None))
                    .values(**values)
                    .execution_options(synchronize_session=False),
                )
                if moved == 1:  # another runner may have done this image meanwhile
                    done.add(media_id)
            session.add_all(r for r in rows if r.media_id in done)
            lost = set(updates) - done
            if lost:  # keep the cluster that runner stored, so later images join that one
                stored = select(Media.id, Media.dup_cluster).where(Media.id.in_(lost))
                found = session.execute(stored)
                clusters.cluster_of.update({media_id: cluster for media_id, cluster in found if cluster is not None})
        stats.images += len(done)
        if progress:
            progress(stats.images)
    return stats


@dataclass(frozen=True)
class MediaSignals:
    """What the signals say about one image, as pages and the scorer read them."""

    ocr_text: str = ""
    nsfw: float | None = None  # None: not computed, or the model failed on the image
    dup_cluster: int | None = None
    errors: tuple[str, ...] = ()  # "ocr: …" for each signal that failed


def load_media_signals(session: Session, media_ids: Iterable[int]) -> dict[int, MediaSignals]:
    """The latest OCR and NSFW signal and the cluster of each image in ``media_ids``."""
    ids = list(dict.fromkeys(media_ids))
    if not ids:
        return {}
    found: dict[int, dict] = {i: {"errors": []} for i in ids}
    for media_id, cluster in session.execute(select(Media.id, Media.dup_cluster).where(Media.id.in_(ids))):
        found[media_id]["dup_cluster"] = cluster
    rows = session.execute(
        select(Signal.media_id, Signal.kind, Signal.value, Signal.error)
        .where(Signal.media_id.in_(ids), Signal.kind.in_(("ocr", "nsfw")))
        .order_by(Signal.id)
    )
    for media_id, kind, value, error in rows:  # later rows replace earlier ones
        entry = found[media_id]
        entry["errors"] = [e for e in entry["errors"] if not e.startswith(f"{kind}:")]
        if error:
            entry["errors"].append(f"{kind}: {error}")
        if kind == "ocr":
            entry["ocr_text"] = (value or {}).get("text", "")
        else:
            entry["nsfw"] = (value or {}).get("score")
    return {i: MediaSignals(**{**v, "errors": tuple(v["errors"])}) for i, v in found.items()}
