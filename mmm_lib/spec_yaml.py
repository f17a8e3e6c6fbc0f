"""Run spec text to plain data, bounded: what :func:`mmm_lib.spec.load_spec` parses a spec file with.

A spec may come from someone else, so reading it is bounded and plain:

- the file must be a regular file of at most :data:`MAX_SPEC_BYTES` (``$MMM_MAX_SPEC_BYTES``, 1 MiB);
- YAML anchors and aliases are refused (a few lines of aliases expand to gigabytes), and so is
  nesting deeper than :data:`MAX_DEPTH`;
- a key given twice in one section is an error naming the key and both lines, not "last one wins";
- only plain values are built: text, numbers, true/false, null, lists and mappings (a date stays the
  text written; ``!!binary``, ``!!set``, ``!!python/...`` and other tags are refused);
- a list or mapping holds at most :data:`MAX_SPEC_ITEMS` entries (``$MMM_MAX_SPEC_ITEMS``) and every
  number is finite (``.nan`` and ``.inf`` are refused with the key that holds them).

Each check is linear in the size of the spec. Errors are :class:`SpecTextError` (a ``ValueError``)
whose message says where (line, or dotted key) and the fix; ``spec.py`` adds the spec's name.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_SPEC_BYTES_ENV = "MMM_MAX_SPEC_BYTES"
MAX_SPEC_ITEMS_ENV = "MMM_MAX_SPEC_ITEMS"
MAX_SPEC_BYTES = 1024**2
MAX_SPEC_ITEMS = 10_000
MAX_DEPTH = 32
_MAX_NUMBER_CHARS = 100
_PLAIN = "write plain values: text, numbers, true/false, lists and mappings"


class SpecTextError(ValueError):
    """Spec text that cannot be used; the message says where and the fix (without the spec's name)."""


class SpecFileMissing(SpecTextError):
    """No file at the spec's path."""


def _env_limit(env: str, default: int) -> int:
    raw = os.environ.get(env, "").strip()
    try:
        n = int(raw.replace("_", "")) if raw else default
    except ValueError:
        n = 0
    if n < 1:
        raise SpecTextError(f"environment variable {env}={raw!r} is not a positive whole number; fix or unset it")
    return n


# --------------------------------------------------------------------------- reading the file


def read_spec_text(path: Path) -> str:
    """The spec file's text: a regular file (checked before opening), at most ``$MMM_MAX_SPEC_BYTES``, UTF-8."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SpecFileMissing("not found") from None
    except OSError as e:
        raise SpecTextError(f"cannot be read ({e.strerror}); check the path") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe or a device?)"
        raise SpecTextError(f"is {kind}; pass the path of a YAML file such as params/example.yaml")
    limit = _env_limit(MAX_SPEC_BYTES_ENV, MAX_SPEC_BYTES)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise SpecTextError(f"cannot be opened ({e.strerror}); check the path and its permissions") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpecTextError("is not a regular file (it changed while being opened); pass the path of a YAML file")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise SpecTextError(
            f"is larger than {limit:,} bytes; a run spec is a few kilobytes, so check that this is the right file "
            f"(or raise the limit with the environment variable {MAX_SPEC_BYTES_ENV}={2 * limit})"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecTextError(f"is not UTF-8 text (byte {e.start}); save it as UTF-8") from None


# --------------------------------------------------------------------------- YAML, plain and bounded


class _Refused(yaml.MarkedYAMLError):
    """A YAML feature a run spec may not use, at its line."""

    def __str__(self) -> str:
        where = f"line {self.problem_mark.line + 1}: " if self.problem_mark is not None else ""
        return f"{where}{self.problem}"


def _tag(tag: str | None) -> str:
    return str(tag).replace("tag:yaml.org,2002:", "!!")


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader building plain data only: no aliases, no duplicate keys, no tags beyond plain values."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Refused(
                problem="YAML anchors and aliases (&name, *name) are not allowed in a run spec: a few lines of them "
                "can expand to gigabytes. Write each value out in full",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(problem=f"nested more than {MAX_DEPTH} levels deep; a run spec has a few levels of sections",
                           problem_mark=event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)
        mapping: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise _Refused(problem=f"a key must be text, not {type(key).__name__}", problem_mark=key_node.start_mark)
            if key in lines:
                raise _Refused(
                    problem=f"the key {key!r} is given twice in the same section (first on line {lines[key]}); "
                    "keep one of them",
                    problem_mark=key_node.start_mark,
                )
            lines[key] = line
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        if len(str(node.value)) > _MAX_NUMBER_CHARS:  # Python refuses to parse ints of 4,300+ digits anyway
            raise _Refused(problem=f"a number written with {len(node.value):,} characters; write a number of a few digits",
                           problem_mark=node.start_mark)
        return super().construct_yaml_int(node)

    def refuse_tag(self, node: yaml.Node) -> Any:
        raise _Refused(problem=f"the tag {_tag(node.tag)} is not allowed in a run spec; {_PLAIN}",
                       problem_mark=node.start_mark)


_SpecLoader.add_constructor("tag:yaml.org,2002:int", _SpecLoader.construct_yaml_int)
for _t in ("binary", "set", "omap", "pairs"):
    _SpecLoader.add_constructor(f"tag:yaml.org,2002:{_t}", _SpecLoader.refuse_tag)
_SpecLoader.add_constructor(None, _SpecLoader.refuse_tag)
# A date is kept as the text written (dataset_id: 2024-01-01 is a name, and JSON has no dates).
_SpecLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def _yaml_problem(e: yaml.YAMLError) -> str:
    if isinstance(e, _Refused):
        return str(e)
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        context = f"{e.context}: " if e.context else ""
        return f"line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1}: {context}{e.problem}; fix the YAML there"
    return f"{e}; fix the YAML"


def parse_yaml(text: str) -> Any:
    """Plain data from YAML (or JSON) text, refusing what a run spec may not use (see the module)."""
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise SpecTextError(_yaml_problem(e)) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:  # a constructor's own failure
        raise SpecTextError(f"cannot be read ({type(e).__name__}: {e}); fix the value it names") from None


# --------------------------------------------------------------------------- plain data


def _key_text(key: Any, where: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    if isinstance(key, int) or (isinstance(key, float) and math.isfinite(key)):
        return str(key)  # as JSON writes a number key
    raise SpecTextError(f"{where or 'the spec'}: the key {key!r} is not text; write keys as text")


def plain_copy(obj: Any, where: str = "", depth: int = 0) -> Any:
    """A deep copy of spec data, checked: plain types, finite numbers, bounded sizes and depth; keys as text."""
    if depth > MAX_DEPTH:
        raise SpecTextError(f"{where or 'the spec'}: nested more than {MAX_DEPTH} levels deep; a run spec has a few levels")
    if isinstance(obj, (dict, list, tuple)) and len(obj) > _env_limit(MAX_SPEC_ITEMS_ENV, MAX_SPEC_ITEMS):
        n = _env_limit(MAX_SPEC_ITEMS_ENV, MAX_SPEC_ITEMS)
        raise SpecTextError(
            f"{where or 'the spec'}: {len(obj):,} entries, more than {n:,}; check the spec (or raise the limit with "
            f"the environment variable {MAX_SPEC_ITEMS_ENV})"
        )
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            key = _key_text(k, where)
            inner = f"{where}.{key}" if where else key
            if key in out:
                raise SpecTextError(f"{inner}: given twice (as {k!r} and as text); keep one")
            out[key] = plain_copy(v, inner, depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        return [plain_copy(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        raise SpecTextError(non_finite_message(where, obj))
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise SpecTextError(f"{where or 'the spec'}: a {type(obj).__name__} value is not allowed; {_PLAIN}")


def non_finite_message(where: str, value: float) -> str:
    return (f"{where or 'spec'}: {value} is not a finite number (.nan and .inf are not allowed); write a number, "
            "or leave the key out for its default")


def find_non_finite(obj: Any, where: str = "", depth: int = 0) -> tuple[str, float] | None:
    """The dotted key and value of the first NaN or infinity in nested dicts and lists, or ``None``."""
    if depth > MAX_DEPTH:
        raise SpecTextError(f"{where or 'the spec'}: nested more than {MAX_DEPTH} levels deep; a run spec has a few levels")
    if isinstance(obj, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        try:
            return (where, obj) if isinstance(obj, (float, int)) and not math.isfinite(obj) else None
        except (TypeError, OverflowError):
            return None
    for inner, v in items:
        hit = find_non_finite(v, inner, depth + 1)
        if hit:
            return hit
    return None
