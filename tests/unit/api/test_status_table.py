"""HTTP statuses live at the edge only: domain errors carry a stable ``code``, and
``archiver.api.errors.HTTP_STATUS`` is the one table that turns a code into a status.

Pinned here: every code any error can carry is in the table (so a new code is a
decision, not a silent 500), an unknown code answers 500 in the one error shape, and no
module outside ``archiver/api`` declares an HTTP status or imports one.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import get_args

from fastapi import FastAPI
from fastapi.testclient import TestClient

import archiver
import policies
import reports
import search
from archiver.api.errors import HTTP_STATUS, http_status, install_error_handlers
from archiver.errors import ArchiverError
from archiver.retention.holds import InvalidHoldScope
from archiver.whatsapp.signature import Reason
from search.errors import QueryTooComplex, SearchError

REPO = Path(__file__).resolve().parents[3]
PACKAGES = (archiver, search, reports, policies)
EDGE = "archiver.api"
# The attributes an HTTP status would hide under.
STATUS_NAMES = frozenset({"status", "status_code", "http_status"})
# Codes a function picks at run time (``code=code``), by (module, variable): every value.
COMPUTED_CODES = {
    ("archiver.cases.model", "code"): (
        "case_name_invalid", "case_matter_invalid", "case_field_invalid",
    ),
}  # fmt: skip


def _modules() -> list[ModuleType]:
    out = []
    for package in PACKAGES:
        out.append(package)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith(".__main__"):
                continue  # an entry point: importing it runs the CLI
            out.append(importlib.import_module(info.name))
    return out


MODULES = _modules()


def _subclasses(root: type) -> Iterator[type]:
    for sub in root.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _error_classes() -> set[type]:
    return {c for root in (ArchiverError, SearchError) for c in (root, *_subclasses(root))}


def _source(module: ModuleType) -> tuple[Path, ast.Module]:
    path = Path(str(module.__file__))
    return path, ast.parse(path.read_text(encoding="utf-8"))


def _raised_codes() -> dict[str, str]:
    """Every ``code=`` given to an error's constructor, resolved: ``{code: where}``.

    A code passed through from another error (``code=exc.code``) is that error's own
    code, checked with the classes; anything else that is not a literal fails here."""
    found: dict[str, str] = {}
    for module in MODULES:
        path, tree = _source(module)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            target = getattr(module, name, None) if name else None
            if not (isinstance(target, type) and issubclass(target, ArchiverError)):
                continue
            for kw in node.keywords:
                if kw.arg != "code":
                    continue
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                value = kw.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found[value.value] = where
                elif isinstance(value, ast.Name) and hasattr(module, value.id):
                    constant = getattr(module, value.id)
                    assert isinstance(constant, str), where
                    found[constant] = where
                elif isinstance(value, ast.Name):  # chosen in the function: listed below
                    for code in COMPUTED_CODES[(module.__name__, value.id)]:
                        found[code] = where
                else:
                    assert isinstance(value, ast.Attribute) and value.attr == "code", (
                        f"{where}: an error code must be a literal or a named constant"
                    )
    return found


def test_the_table_is_the_whole_mapping() -> None:
    # Sanity: the scans see the codes they must (a scan that finds nothing proves nothing).
    assert len(_error_classes()) > 40
    raised = _raised_codes()
    assert {"hold_not_found", "token_missing", "invalid_cursor", "media_id_invalid"} <= set(
        raised
    )
    assert all(isinstance(s, int) and 400 <= s <= 599 for s in HTTP_STATUS.values())


def test_every_error_class_code_is_mapped() -> None:
    missing = sorted(
        f"{c.__module__}.{c.__qualname__}: {c.code}"
        for c in _error_classes()
        if c.code not in HTTP_STATUS
    )
    assert missing == []
    for code in QueryTooComplex.CODES.values():
        assert http_status(code) == 400


def test_every_raised_code_is_mapped() -> None:
    missing = sorted(f"{where}: {code}" for code, where in _raised_codes().items()
                     if code not in HTTP_STATUS)  # fmt: skip
    assert missing == []


def test_every_code_a_route_answers_directly_is_mapped() -> None:
    # Routes that answer an error without raising one name the code themselves.
    assert {http_status(f"signature_{reason}") for reason in get_args(Reason)} == {401}
    for code, status in {
        "handshake_invalid": 403, "verify_token_mismatch": 403, "store_unavailable": 503,
        "sent_not_archived": 502, "payload_too_large": 413,
    }.items():  # fmt: skip
        assert HTTP_STATUS[code] == status


def _app_raising(error: Exception) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise error

    return TestClient(app, raise_server_exceptions=False)


def test_an_unknown_code_is_500_in_the_shape() -> None:
    assert "never_mapped" not in HTTP_STATUS
    assert http_status("never_mapped") == 500
    response = _app_raising(ArchiverError("odd", code="never_mapped")).get("/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "never_mapped", "message": "odd", "details": None}
    }


def test_a_domain_error_gets_its_status_from_the_table() -> None:
    response = _app_raising(InvalidHoldScope("a hold needs a scope")).get("/boom")
    assert response.status_code == 400 == HTTP_STATUS["hold_scope_missing"]
    assert response.json()["error"]["code"] == "hold_scope_missing"


def test_no_error_outside_the_api_carries_an_http_status() -> None:
    carrying = sorted(
        f"{c.__module__}.{c.__qualname__}.{name}"
        for c in _error_classes()
        if not c.__module__.startswith(EDGE)
        for name in STATUS_NAMES
        if hasattr(c, name)
    )
    assert carrying == []


def _http_imports(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ("http", "fastapi.status", "starlette.status"):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if node.module in ("http", "fastapi.status", "starlette.status"):
                yield node.module
            elif node.module.split(".")[0] in ("fastapi", "starlette") and (
                names & {"status", "HTTPException", "HTTPStatus"}
            ):
                yield f"{node.module}: {sorted(names)}"


def _is_exception(module: ModuleType, node: ast.ClassDef) -> bool:
    found = getattr(module, node.name, None)
    if isinstance(found, type):
        return issubclass(found, BaseException)
    return any(ast.unparse(b).endswith(("Error", "Exception")) for b in node.bases)


def _status_attributes(module: ModuleType, tree: ast.Module) -> Iterator[str]:
    """Class-level ``status = 404`` (or ``status_code``/``http_status``) on an exception."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ClassDef) and _is_exception(module, node)):
            continue
        for stmt in node.body:
            targets = (
                stmt.targets if isinstance(stmt, ast.Assign)
                else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
            )  # fmt: skip
            for target in targets:
                if isinstance(target, ast.Name) and target.id in STATUS_NAMES:
                    yield f"{node.name}.{target.id} (line {stmt.lineno})"


def test_no_module_outside_the_api_declares_or_imports_an_http_status() -> None:
    outside = [m for m in MODULES if not m.__name__.startswith(EDGE)]
    assert len(outside) > 100  # the walk really saw the tree
    offenders = []
    for module in outside:
        _, tree = _source(module)
        offenders += [f"{module.__name__}: import {i}" for i in _http_imports(tree)]
        offenders += [f"{module.__name__}: {a}" for a in _status_attributes(module, tree)]
    assert offenders == []
