"""Per-subgroup utility from a workspace dataset: real chest X-rays (PneumoniaMNIST) written as DICOM
with PatientSex / PatientAge, ingested, then `radsynth evaluate --utility` with the dataset as the
real set reports AUC per sex and age group on its held-out split, from the attributes stored at
ingest. Tiny classifier (width 4, one epoch): the numbers are not meaningful, their bookkeeping is."""

from __future__ import annotations

import json

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from app.cli import main
from app.engine.data.ingest import IngestSpec
from app.engine.jobs import Done, run_collect
from tests.conftest import shared_file


def _write_dicom(path, pixels: np.ndarray, sex: str, age: str, patient: int) -> None:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = f"ROE^RICHARD{patient}", f"ID{patient:05d}X", "19620101"
    ds.PatientSex, ds.PatientAge, ds.Manufacturer, ds.Modality = sex, age, "ACME", "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels, np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_evaluate_utility_reports_per_subgroup_auc_from_a_workspace_dataset_ingested_from_dicom(workspace, tmp_path, capsys):
    d = np.load(shared_file("pneumoniamnist_balanced_28.npz"))
    x, y = d["train_images"], d["train_labels"].ravel()
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:40] for c in (0, 1)])
    src = tmp_path / "xr"
    sexes, ages = {}, {}
    for k, i in enumerate(pick):  # sex and age independent of the class
        cls = "normal" if y[i] == 0 else "pneumonia"
        (src / cls).mkdir(parents=True, exist_ok=True)
        sexes[f"{cls}/p{k}.dcm"], ages[f"{cls}/p{k}.dcm"] = "FM"[k % 2], ("034Y", "067Y")[(k // 2) % 2]
        _write_dicom(src / cls / f"p{k}.dcm", x[i], sexes[f"{cls}/p{k}.dcm"], ages[f"{cls}/p{k}.dcm"], k)
    ev = run_collect(IngestSpec(source=str(src), name="cxr", size=28, val_fraction=0.3, test_fraction=0.0),
                     workspace=workspace)[-1]
    assert isinstance(ev, Done), ev
    assert ev.result["attributes"]["sex"] == {"F": 40, "M": 40}
    assert ev.result["attributes"]["age_group"] == {"30-39": 40, "60-69": 40}
    val_sex = workspace.attributes("cxr", "val")["sex"]

    gen = d["val_images"][:40][:, None].astype(np.float32) / 127.5 - 1
    np.savez(tmp_path / "gen.npz", images=gen, labels=d["val_labels"].ravel()[:40], class_names=np.array(["normal", "pneumonia"]))
    code = main(["evaluate", "--real", "cxr", "--generated", str(tmp_path / "gen.npz"), "--utility",
                 "--utility-epochs", "1", "--utility-width", "4", "--utility-bootstrap", "20",
                 "--kid-subsets", "5", "--kid-subset-size", "30", "--ms-ssim-pairs", "10", "--clusters", "4",
                 "--out", str(tmp_path / "ev"), "--json", "-q"])
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, res
    u = res["utility"]
    assert res["sources"]["holdout"].endswith(":val") and u["counts"]["test"] == len(val_sex) >= 20
    per = u["per_subgroup"]
    assert set(per) == {"sex", "age_group"}  # manufacturer / modality: one value, no subgroups
    assert {v: g["n"] for v, g in per["sex"].items()} == {s: int((val_sex == s).sum()) for s in ("F", "M")}
    assert sum(g["n"] for g in per["age_group"].values()) == len(val_sex)
    with_auc = 0
    for groups in (per["sex"], per["age_group"]):
        for g in groups.values():
            if g["n"] >= 10:  # subgroups of 10+ get both classifiers' accuracy, and AUC when both classes are there
                for key in ("real_only", "real_plus_synthetic"):
                    assert 0.0 <= g[key]["accuracy"] <= 1.0
                    if "auc" in g[key]:
                        with_auc += 1
                        assert g[key]["auc"]["ci95"][0] <= g[key]["auc"]["auc"] <= g[key]["auc"]["ci95"][1]
    assert with_auc >= 4
    page = (tmp_path / "ev" / "evaluation.html").read_text()
    report = (tmp_path / "ev" / "evaluation.json").read_text()
    assert "Subgroups by sex" in page and "Subgroups by age_group" in page
    for secret in ("ROE^RICHARD", "RICHARD", "ID00007X", "19620101"):
        assert secret not in page and secret not in report
