"""Generated datasets are listed with the synthetic badge wherever sets are picked, never as real cases."""

from __future__ import annotations

from app.views.audit.controls import AuditControls
from app.views.widgets.set_picker import SYNTHETIC_BADGE, SetPicker


def test_a_real_set_picker_leaves_generated_datasets_out_and_a_synthetic_one_badges_them(qtbot):
    real, syn = SetPicker("Real sets", offer_synthetic=False), SetPicker("Synthetic sets")
    for p in (real, syn):
        qtbot.addWidget(p)
        p.set_datasets(["phantoms", "run1-samples-abc123"], {"run1-samples-abc123"})
    assert real.labels() == ["phantoms"]
    assert syn.labels() == ["phantoms", f"run1-samples-abc123   {SYNTHETIC_BADGE}"]
    syn.check("run1-samples-abc123")
    assert syn.refs() == ["run1-samples-abc123"]  # the ref, without its badge


def test_the_audit_pickers_badge_generated_sets_and_give_their_refs_and_the_size_is_auto_by_default(qtbot):
    c = AuditControls()
    qtbot.addWidget(c)
    c.set_datasets(["phantoms", "gen"], {"gen"})
    assert c.generated.itemText(0) == f"gen   {SYNTHETIC_BADGE}"  # generated sets first where generated is picked
    assert c.train.itemText(0) == "phantoms" and c.train.findData("gen") > c.train.findData("phantoms:test")
    c.choose(c.generated, "gen")
    c.choose(c.train, "phantoms:train")
    assert c.sets() == ("gen", "phantoms:train", "")
    assert c.compare_size() is None and c.size.text() == "auto"
    c.size.setValue(64)
    assert c.compare_size() == 64
