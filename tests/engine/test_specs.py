"""The spec layer: one typed, torch-free description of every job; options from one registry; path roles."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.engine.specs import kinds, spec_class
from app.engine.specs import options as O
from app.engine.specs.fields import describe, role_fields
from app.engine.specs.paths import PathRole, path_fields

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / "spec_fields.json"

#: the smallest valid spec of every kind (paths need not exist: validation does not read files)
MINIMAL = {
    "ingest": {"source": "scans/"}, "eda": {"dataset": "demo-phantoms"}, "demo": {}, "train": {},
    "sample": {"run": "RUN"}, "export-onnx": {"run": "RUN"}, "recon": {"input": "slice.npz"},
    "recon-sweep": {"input": "slices.npz"}, "ct-recon": {"input": "ct.npz"},
    "evaluate": {"real": "demo-phantoms:test", "generated": "gen.npz"},
    "audit": {"generated": "gen.npz", "train": "demo-phantoms:train"},
    "study-create": {"name": "s1", "real": ["a.npz"], "synthetic": ["b.npz"]}, "study-stats": {"study": "s1"},
    "study-export": {"study": "s1", "out": "s1.h5"}, "study-import": {"file": "s1.h5"}, "selftest": {},
}


def test_every_kind_has_a_minimal_example_here():
    assert sorted(MINIMAL) == kinds()


def test_the_refactor_kept_every_field_its_default_and_whether_it_is_required():
    golden = json.loads(GOLDEN.read_text())
    for kind in kinds():
        cls = spec_class(kind)
        now = {}
        for name, f in cls.model_fields.items():
            d = None if f.is_required() else f.get_default(call_default_factory=True)
            now[name] = {"required": f.is_required(),
                         "default": json.loads(json.dumps(d, default=lambda o: getattr(o, "value", str(o))))}
        assert now == golden[kind], kind


def test_every_verb_helps_and_validates_in_a_process_where_torch_never_loads():
    script = f"""
import json, sys
from app.cli import main
from app.engine.specs import kinds, parse_spec
minimal = json.loads({json.dumps(json.dumps(MINIMAL))})
for kind in kinds():
    verb = kind.replace("-", " ", 1).split() if kind.startswith("study-") else [kind]
    try:
        main([*verb, "--help"])
    except SystemExit as exc:
        assert exc.code == 0, (kind, exc.code)
    parse_spec({{"kind": kind, **minimal[kind]}})
from app.engine.specs import fields, paths, options
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("app."))
print("torch-free", len(kinds()))
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == f"torch-free {len(kinds())}"


def test_options_are_the_ones_the_engine_implements_and_nothing_more():
    from app.engine.audit import nn
    from app.engine.metrics import features
    from app.engine.recon.mri import masks
    from app.engine.sampling.api import SAMPLERS

    assert set(SAMPLERS) == set(O.SAMPLER_NAMES) == set(typing.get_args(O.SamplerName))
    assert set(masks._MAKERS) == set(O.MASK_KINDS)
    assert nn.MEASURES == O.MEASURES and features.EXTRACTORS == O.EXTRACTORS
    assert set(typing.get_args(O.ExportFormat)) == set(O.EXPORT_FORMATS)
    assert set(typing.get_args(O.MeasureName)) == set(O.MEASURES)
    # a recon spec offers exactly the registry's methods, and the CLI's choices are the same list
    recon_method = next(f for f in describe(spec_class("recon")) if f.name == "method")
    assert recon_method.choices == O.METHODS


def test_path_fields_carry_their_role_and_every_path_like_field_has_one():
    roles = {k: {n: r.role for n, (r, _) in path_fields(spec_class(k)).items()} for k in kinds()}
    assert roles["ingest"] == {"source": "input", "name": "name", "labels": "input"}
    assert roles["study-create"] == {"name": "name", "real": "input", "synthetic": "input"}
    assert roles["study-export"] == {"study": "ref", "out": "output"}
    assert roles["audit"] == {"generated": "input", "train": "input", "holdout": "input", "out": "output",
                              "clean_out": "output"}
    assert roles["train"] == {"dataset": "ref", "resume": "ref"}
    # no field that names a file or folder was left a plain string
    pathy = ("input", "source", "out", "file", "run", "real", "generated", "train", "holdout", "weights",
             "dataset", "study", "resume")
    for k in kinds():
        fields = path_fields(spec_class(k))
        for f in describe(spec_class(k)):
            if f.shape in ("str", "list") and any(f.name == p or f.name.endswith("_" + p) for p in pathy):
                assert f.name in fields, (k, f.name)


@pytest.mark.parametrize("kind,field", [(k, f.name) for k in kinds() for f in role_fields(spec_class(k))
                                         if f.role.role in ("input", "output", "ref")])
def test_an_empty_path_or_reference_is_an_error_naming_the_field(kind, field):
    f = next(d for d in describe(spec_class(kind)) if d.name == field)
    data = {"kind": kind, **MINIMAL[kind], field: [""] if f.many else ""}
    if f.role.prefix:
        data[field] = f.role.prefix
    with pytest.raises(ValidationError) as exc:
        spec_class(kind).model_validate(data)
    assert any(e["loc"][0] == field for e in exc.value.errors())


def test_locally_a_path_means_what_was_typed_with_the_home_folder_expanded():
    home = str(Path("~").expanduser())
    spec = spec_class("recon").model_validate({"kind": "recon", "input": "~/scans/slice.npz", "out": "rel/out"})
    assert spec.input == f"{home}/scans/slice.npz" and spec.out == "rel/out"
    ingest = spec_class("ingest").model_validate({"kind": "ingest", "source": "x", "labels": "csv:~/l.csv"})
    assert ingest.labels == f"csv:{home}/l.csv"
    assert spec_class("ingest").model_validate({"kind": "ingest", "source": "x", "labels": "auto"}).labels == "auto"


def test_names_of_new_workspace_objects_are_checked_where_they_are_typed():
    with pytest.raises(ValidationError, match="not valid"):
        spec_class("study-create").model_validate({**MINIMAL["study-create"], "kind": "study-create", "name": "../s"})
    with pytest.raises(ValidationError, match="not valid"):
        spec_class("ingest").model_validate({"kind": "ingest", "source": "x", "name": "a/b"})
    assert spec_class("ingest").model_validate({"kind": "ingest", "source": "x"}).name == ""  # derived by the job


def test_a_warm_start_without_score_dds_is_a_spec_error_the_form_can_show():
    with pytest.raises(ValidationError, match="score-dds"):
        spec_class("recon").model_validate({"kind": "recon", "input": "a.npz", "warm_start": 0.1})
    spec = spec_class("recon").model_validate({"kind": "recon", "input": "a.npz", "warm_start": "auto",
                                              "method": ["score-dds"], "run": "r"})
    assert spec.warm_start == "auto"


def test_a_field_added_to_a_spec_shows_up_as_a_cli_flag_with_its_role():
    from pydantic import Field

    from app.cli import build_parser, spec_from_args
    from app.engine.specs.base import Spec
    from app.engine.specs.paths import InputFile, OutputFolder

    class ProbeSpec(Spec):
        kind: typing.Literal["probe-cli"] = "probe-cli"
        weights_file: InputFile | None = Field(None, description="a file the probe reads")
        report_dir: OutputFolder | None = Field(None, description="where the probe writes")

    parser = build_parser("probe-cli", ProbeSpec)
    flags = {a.dest: a for a in parser._actions}
    assert flags["weights_file"].option_strings == ["--weights-file"] and flags["weights_file"].metavar == "PATH"
    assert "input file" in flags["weights_file"].help and "output folder" in flags["report_dir"].help
    ns = parser.parse_args(["--weights-file", "~/w.bin"])
    assert spec_from_args(ProbeSpec, ns).weights_file == str(Path("~/w.bin").expanduser())
    assert [f.name for f in role_fields(ProbeSpec)] == ["weights_file", "report_dir"]
    assert isinstance(role_fields(ProbeSpec)[0].role, PathRole)
