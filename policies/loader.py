"""Load policy files: the built-ins in ``policies/data/`` plus operator directories.

``load_policies(dirs, params)`` reads every ``*.yaml`` of each directory in order; a policy
whose ``id`` was already loaded is replaced (operators override built-ins by id).
``params`` maps ``"<policy id>.<parameter>"`` to a string that replaces ``${parameter}``
in that policy's scalars; undeclared parameters are refused.

Errors name the file, the 1-based line and the field: the YAML is *composed* first
(PyYAML nodes carry ``start_mark``), and each pydantic error ``loc`` is walked down the
node tree to the deepest node that exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import TypeAdapter, ValidationError

from policies.errors import PolicyFileError, PolicyParamError
from policies.model import Kind, ParameterSpec, Policy, PolicySet

_RESOLVER = yaml.resolver.Resolver()
_PARAMS: TypeAdapter[dict[str, ParameterSpec]] = TypeAdapter(dict[str, ParameterSpec])
_PARAM = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def builtin_dir() -> Path:
    """The directory of the shipped policy files (package data)."""
    return Path(__file__).resolve().parent / "data"


def load_policies(dirs: Sequence[Path], params: Mapping[str, str] | None = None) -> PolicySet:
    """Load every policy file of ``dirs`` (in order). Raises PolicyFileError, PolicyParamError."""
    params = dict(params or {})
    by_id: dict[str, Policy] = {}
    for d in dirs:
        for path in sorted(Path(d).glob("*.yaml")):
            policy = load_policy_file(path, params)
            by_id[policy.id] = policy
    _check_params(by_id, params)
    defaults = [p.id for p in by_id.values() if p.enabled and p.kind is Kind.DEFAULT]
    if len(defaults) != 1:
        raise PolicyParamError(
            f"exactly one enabled policy of kind 'default' is needed, found {defaults or 'none'}"
        )
    return PolicySet(policies=dict(sorted(by_id.items())))


def load_policy_file(path: Path, params: Mapping[str, str] | None = None) -> Policy:
    """Parse and validate one file. Raises PolicyFileError naming file:line and field."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyFileError(name, [(0, "-", f"cannot read: {exc}")]) from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise PolicyFileError(name, [(line, "-", f"YAML syntax: {exc}")]) from exc
    if not isinstance(root, yaml.MappingNode):
        line = root.start_mark.line + 1 if root is not None else 1
        raise PolicyFileError(name, [(line, "-", "a policy file is one YAML mapping")])
    _refuse_duplicate_keys(name, root)

    declared = _declared_parameters(name, root)
    policy_id = _scalar(root, "id") or path.stem
    given = {k.split(".", 1)[1]: v for k, v in (params or {}).items()
             if k.split(".", 1)[0] == policy_id and "." in k}
    values = {k: given.get(k, spec.default) for k, spec in declared.items()}
    _substitute(name, root, values, skip_key="parameters")

    data = _construct(root)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyFileError(name, _problems(root, exc)) from exc
    return policy.model_copy(update={"resolved_parameters": values, "source_file": name})


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _declared_parameters(name: str, root: yaml.MappingNode) -> dict[str, ParameterSpec]:
    node = _child(root, "parameters")
    if node is None:
        return {}
    try:
        return _PARAMS.validate_python(_construct(node))
    except ValidationError as exc:
        probs = [(_line_for(root, ("parameters", *e["loc"])), _field(("parameters", *e["loc"])),
                  e["msg"]) for e in exc.errors()]
        raise PolicyFileError(name, sorted(probs)) from exc


def _substitute(
    name: str, node: yaml.Node, values: Mapping[str, str], *, skip_key: str | None = None
) -> None:
    if isinstance(node, yaml.ScalarNode):
        if "${" not in node.value:
            return
        missing = [m for m in _PARAM.findall(node.value) if m not in values]
        if missing:
            raise PolicyFileError(name, [(node.start_mark.line + 1, "${" + missing[0] + "}",
                                          "parameter is not declared under 'parameters'")])
        node.value = _PARAM.sub(lambda m: values[m.group(1)], node.value)
        # Re-resolve the tag so "true"/"6" become bool/int as if written literally.
        node.tag = _RESOLVER.resolve(  # type: ignore[no-untyped-call]  # PyYAML stubs lack it
            yaml.ScalarNode, node.value, (True, False)
        )
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _substitute(name, item, values)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if skip_key is not None and getattr(key, "value", None) == skip_key:
                continue
            _substitute(name, value, values)


def _refuse_duplicate_keys(name: str, node: yaml.Node) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                raise PolicyFileError(name, [(key.start_mark.line + 1, str(key.value),
                                              "duplicate key")])
            seen.add(key.value)
            _refuse_duplicate_keys(name, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(name, item)


def _child(node: yaml.Node, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                return cast(yaml.Node, v)
    elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
        if not 0 <= key < len(node.value):
            return None
        return cast(yaml.Node, node.value[key])
    return None


def _key_node(node: yaml.Node, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if k.value == key:
                return cast(yaml.Node, k)
    return None


def _scalar(node: yaml.MappingNode, key: str) -> str | None:
    child = _child(node, key)
    return child.value if isinstance(child, yaml.ScalarNode) else None


def _line_for(root: yaml.Node, loc: tuple[str | int, ...]) -> int:
    """1-based line for a pydantic ``loc``: the key's own line when the key exists (so an
    unknown or mistyped field points at itself), else the line of the key that introduces
    the deepest mapping reached (so a missing field points at its parent's key)."""
    node, line = root, root.start_mark.line + 1
    for part in loc:
        key = _key_node(node, part)
        child = _child(node, part)
        if child is None:
            break
        line = (key if key is not None else child).start_mark.line + 1
        node = child
    return line


def _field(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "-"


def _problems(root: yaml.Node, exc: ValidationError) -> list[tuple[int, str, str]]:
    errors = []
    for err in exc.errors():
        # Drop pydantic's validator-name steps (e.g. "function-after[...]") from the path.
        loc = tuple(p for p in err["loc"] if isinstance(p, int) or "[" not in str(p))
        errors.append((loc, err["type"], err["msg"]))
    probs: set[tuple[int, str, str]] = set()
    for loc, kind, msg in errors:
        # pydantic also reports a list as "too short" when its only item failed: noise.
        if kind == "too_short" and any(o[: len(loc)] == loc and len(o) > len(loc)
                                       for o, _, _ in errors):
            continue
        probs.add((_line_for(root, loc), _field(loc), msg))
    return sorted(probs)


def _check_params(by_id: Mapping[str, Policy], params: Mapping[str, str]) -> None:
    for key in params:
        pid, _, pname = key.partition(".")
        if pid not in by_id:
            raise PolicyParamError(f"parameter {key!r} names no loaded policy {pid!r}")
        if pname not in by_id[pid].parameters:
            declared = ", ".join(sorted(by_id[pid].parameters)) or "none"
            raise PolicyParamError(
                f"parameter {key!r}: policy {pid!r} declares no {pname!r} (declared: {declared})"
            )
