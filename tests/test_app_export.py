"""The Export page (pages/export.py), headless (AppTest): leads preview and export, moderators are refused."""

from __future__ import annotations

from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from db.models import Media
from tests.conftest import account, open_page


def test_export_page(desk, world, tmp_path, monkeypatch) -> None:
    """Leads preview the counts and export from the page (into EXPORT_DIR); moderators are refused."""
    monkeypatch.setenv("EXPORT_DIR", str(tmp_path / "exports"))

    def page(role: str) -> AppTest:
        return open_page(monkeypatch, desk, account(desk, role), "pages/export.py")

    refused = page("moderator")
    assert any("may not export" in e.value for e in refused.error)

    at = page("lead")
    assert not at.exception
    next(b for b in at.button if b.label == "Preview").click().run()
    assert not at.exception
    assert any(s.value == "8 examples" for s in at.subheader)
    shown = at.dataframe[0].value
    assert shown["train"].sum() + shown["validation"].sum() == 8
    next(b for b in at.button if b.label == "Export").click().run()
    assert not at.exception
    assert any("8 examples written" in s.value for s in at.success)
    folders = list((tmp_path / "exports").iterdir())
    assert len(folders) == 1 and (folders[0] / "dataset_info.json").exists()  # LLaMA-Factory, the first format
    assert any(b.proto.label.endswith(".zip") for b in at.get("download_button"))
    assert any(t.value.startswith("Longest example:") and "cutoff length" in t.value for t in at.text)

    # images the signals step has not clustered yet: refused, until the box allowing them is ticked
    with desk.sessions() as session, session.begin():
        first = session.scalars(select(Media.id).order_by(Media.id)).first()
        session.execute(update(Media).where(Media.id == first).values(dup_cluster=None))
    next(b for b in at.button if b.label == "Preview").click().run()
    assert any("python -m review signals" in c.value for c in at.code)
    next(c for c in at.checkbox if c.label == "Allow images without near-duplicate clusters").check()
    next(b for b in at.button if b.label == "Preview").click().run()
    assert not at.exception and any(s.value == "8 examples" for s in at.subheader)
