"""The spec layer: one typed, torch-free description of every job (pydantic, stdlib and numpy only).

- ``base``: ``Spec``, the kind -> spec class registry (``spec_class``, ``parse_spec``);
- ``paths``: path roles as types (input, output, workspace reference, new name);
- ``options``: the one registry of named options (samplers, masks, methods, measures, extractors...);
- ``fields``: the one description of a spec's fields, from which the CLI builds its flags, ``SpecForm``
  its widgets and the server its checks;
- one module per area with the spec classes: ``data``, ``train``, ``generate``, ``recon``, ``evaluate``,
  ``study``, ``selftest``.
"""

from app.engine.specs.base import SPEC_MODULES, Spec, format_validation_error, kinds, parse_spec, spec_class

__all__ = ["SPEC_MODULES", "Spec", "format_validation_error", "kinds", "parse_spec", "spec_class"]
