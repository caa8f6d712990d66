"""The review floor in Chromium, as a moderator meets it: `streamlit run app.py` on the demo
desk (40 posts scored by the baseline, as the README's first command leaves it), Debian's
chromium driven by Playwright on 127.0.0.1.

    python bench/floor.py [--decisions 30] [--reloads 10]

- next: on the Review page, Y (confirm) → the next post shown with every image of it loaded
  (its heading names the new post, no element of the old one is left, each <img> decoded), timed
  in the page itself from the key press (performance.now). Also counted: the decisions after
  which the Confirm button of the new post was there before its images had loaded (since issue
  17 the page holds back keys and clicks on the decision buttons until then).
- reload: a reload of each page (Review, Queue, Posts, Accuracy as a lead) → that page usable
  again, signed in (its heading, "Signed in as", and the script done), timed from the reload.

Prints one JSON object; medians and p95 over the samples.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.live_app import (  # noqa: E402  (as the browser tests)
    CHROMIUM,
    CHROMIUM_ARGS,
    CONFIRM_ENABLED,
    PICTURES_LOADED,
    served_app,
    sign_in,
)

MODERATOR = ("mia", "mia's long password")
LEAD = ("lou", "lou's long password")

# In the page: has the post after ``before`` arrived, whole? Returns the ms since the key press
# (window.benchT0) once the heading names another post, no stale element is left, and every
# image in the main area is decoded; records when the Confirm button first stood enabled.
ARRIVED = """(before) => {
  const main = document.querySelector('[data-testid=stMain]');
  const heading = [...main.querySelectorAll('h3')].find(h => h.innerText.startsWith('Post '));
  if (!heading || heading.innerText === before) return false;
  if ((CONFIRM_ENABLED)() && window.benchConfirm === null) window.benchConfirm = performance.now();
  if (main.querySelector('[data-stale=true]') || window.reviewPicturesLoading()) return false;
  return {ms: performance.now() - window.benchT0, images: window.reviewPictures || 0};
}""".replace("CONFIRM_ENABLED", CONFIRM_ENABLED)  # the browser tests' own check, inlined


DIAGNOSIS = """() => {
  const main = document.querySelector('[data-testid=stMain]');
  return JSON.stringify({headings: [...main.querySelectorAll('h3')].map(h => h.innerText),
    stale: main.querySelectorAll('[data-stale=true]').length,
    images: [...main.querySelectorAll('img')].map(i => [i.complete, i.naturalWidth, i.src.slice(0, 60)]),
    confirms: [...main.querySelectorAll('.st-key-review_confirm')].map(c => c.outerHTML.slice(0, 300))});
}"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(values), 1), "p95_ms": round(percentile(values, 0.95), 1),
            "max_ms": round(max(values), 1), "n": len(values)}  # fmt: skip


def prepared(home: Path) -> dict[str, str]:
    """The demo desk in ``home`` as the README's first command leaves it, with a moderator, a
    lead and an admin; the settings for the app."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{home / 'review.db'}",
           "MEDIA_DIR": str(home / "media"), "MODEL": str(home / "no-weights")}  # fmt: skip
    for command in (["db", "upgrade"], ["demo"], ["score", "--provider", "baseline"]):
        subprocess.run([sys.executable, "-m", "review", *command], cwd=home, env=env, check=True, capture_output=True)
    for (name, password), role in ((("root", "root's long password"), "admin"), (MODERATOR, "moderator"),
                                   (LEAD, "lead")):  # fmt: skip
        subprocess.run([sys.executable, "-m", "review", "user", "add", name, "--role", role, "--password-stdin"],
                       cwd=home, env=env, check=True, capture_output=True, input=password.encode())  # fmt: skip
    return env


def settled(page) -> None:
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=30_000)
    page.evaluate("document.activeElement && document.activeElement.blur()")


def next_post_times(page, decisions: int) -> tuple[list[float], int, int]:
    """The ms from Y to the next post whole, per decision; how many decisions had the new post's
    Confirm enabled before its images were decoded; how many posts had images."""
    page.get_by_text("to take the next post of the queue").wait_for(timeout=30_000)
    settled(page)
    page.keyboard.press("n")
    page.get_by_role("heading", name="Post ").wait_for(timeout=30_000)
    settled(page)
    times, confirm_first, with_images = [], 0, 0
    for _ in range(decisions):
        before = page.get_by_role("heading", name="Post ").inner_text()
        page.wait_for_function(PICTURES_LOADED, timeout=30_000)  # as a moderator waits for the picture
        usable = page.evaluate(CONFIRM_ENABLED)
        key = "y" if usable else "s"  # a post without a usable verdict: skipped, not timed
        page.evaluate("window.benchT0 = performance.now(); window.benchConfirm = null")
        page.keyboard.press(key)
        try:
            arrived = page.wait_for_function(ARRIVED, arg=before, timeout=30_000, polling="raf").json_value()
        except Exception:
            print(page.evaluate(DIAGNOSIS), file=sys.stderr)
            raise
        if key == "s":
            settled(page)
            continue
        times.append(arrived["ms"])
        if arrived["images"]:
            with_images += 1
            confirm_at = page.evaluate("window.benchConfirm")
            image_at = page.evaluate("window.benchT0") + arrived["ms"]
            confirm_first += confirm_at is not None and confirm_at < image_at - 1
        settled(page)
    return times, confirm_first, with_images


def reload_times(page, url: str, path: str, heading: str, user: str, runs: int) -> list[float]:
    page.goto(url + path)
    page.get_by_role("heading", name=heading).first.wait_for(timeout=30_000)
    settled(page)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        page.reload()
        page.get_by_text(f"Signed in as {user}").wait_for(timeout=30_000)
        page.get_by_role("heading", name=heading).first.wait_for(timeout=30_000)
        page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=30_000)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=30)
    parser.add_argument("--reloads", type=int, default=10)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        home = Path(tmp)
        with served_app(home, prepared(home)) as url:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = sign_in(browser, url, *MODERATOR)
            times, confirm_first, with_images = next_post_times(page, args.decisions)
            reloads = {
                path or "/": summary(reload_times(page, url, path, heading, MODERATOR[0], args.reloads))
                for path, heading in (("", "Review"), ("/queue", "Queue"), ("/posts", "Posts"))
            }
            lead = sign_in(browser, url, *LEAD)
            reloads["/accuracy"] = summary(reload_times(lead, url, "/accuracy", "Accuracy", LEAD[0], args.reloads))
            browser.close()
    print(json.dumps({
        "y_to_next_post_with_images": summary(times),
        "posts_with_images": with_images,
        "confirm_shown_before_images_loaded": confirm_first,
        "reload_to_usable_signed_in": reloads,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
