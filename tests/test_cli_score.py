"""review/cli/score.py: ``python -m review score`` and what it says about posts it could not score."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from db.models import Post
from review.cli import main
from tests.conftest import point_cli_at, unscored_posts


def test_score_says_when_posts_stay_leased_by_another_worker(sqlite_desk, tmp_path, monkeypatch, capsys) -> None:
    desk = sqlite_desk
    unscored_posts(desk, 6)
    until = datetime.now(UTC) + timedelta(minutes=9)
    with desk.sessions() as session, session.begin():
        ids = session.scalars(select(Post.id).order_by(Post.id)).all()
        session.execute(  # a worker that died with two posts; another whose lease already ran out
            update(Post).where(Post.id.in_(ids[:2])).values(score_lease_owner="dead:1", score_lease_expires_at=until)
        )
        session.execute(
            update(Post)
            .where(Post.id == ids[2])
            .values(score_lease_owner="dead:2", score_lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    point_cli_at(monkeypatch, desk, tmp_path)
    assert main(["score", "--provider", "baseline", "--quiet"]) == 1
    said = capsys.readouterr()
    assert "4 scored" in said.out  # the expired lease was taken over
    (line,) = [x for x in said.err.splitlines() if x.startswith("error:")]
    assert "2 posts are still leased by another scoring worker" in line
    assert f"{until:%Y-%m-%d %H:%M:%S} UTC" in line
    with desk.sessions() as session, session.begin():
        session.execute(update(Post).where(Post.id.in_(ids[:2])).values(score_lease_expires_at=datetime.now(UTC)))
    assert main(["score", "--provider", "baseline", "--quiet"]) == 0  # once the leases ended
