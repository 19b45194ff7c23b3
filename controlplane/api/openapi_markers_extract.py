"""Development-time extractor of ``openapi_markers.json`` from the Go API types (k8s.io/api, apimachinery).

Run: ``python -m controlplane.api.openapi_markers_extract K8S_IO_API_DIR K8S_IO_APIMACHINERY_DIR``
(checkouts of github.com/kubernetes/api and github.com/kubernetes/apimachinery). Like
``openapi_gen`` it runs at development time only; its output is committed and ``openapi_gen``
folds it into ``openapi_schemas.json``.

Why: the official Python client's models (``openapi_gen``'s source) drop what kube-openapi's
generator reads from the Go comments of ``types.go``:
- ``+listType=atomic|set|map`` and ``+listMapKey=…`` → ``x-kubernetes-list-type`` /
  ``x-kubernetes-list-map-keys`` (what server-side apply merges list elements by);
- ``+mapType=atomic`` on a map field, ``+structType=atomic``/``+mapType=atomic`` on a struct →
  ``x-kubernetes-map-type: atomic``;
- ``+enum`` string types and their constants → ``enum`` plus the description lines kube-openapi
  appends (``Possible enum values:`` then `` - `"Value"` comment``, sorted; kube-openapi
  ``pkg/generators/enum.go``);
- whether a struct-valued field is a pointer (kube-openapi gives non-pointer structs
  ``default: {}``).

The committed file was extracted from kubernetes/api 10b39a39b and kubernetes/apimachinery
(their 1.37 development heads), the Kubernetes version of the ``kubernetes`` 37.x client models
``openapi_gen`` reads, so fields and markers describe the same types.

Output: ``{"fields": {schema name: {json field: {...}}}, "types": {schema name: {"mapType": …}}}``,
schema names as Kubernetes' OpenAPI spells them (``io.k8s.api.core.v1.Container``). The parser
reads the regular layout of these generated-from-conventions files (``type X struct {`` blocks,
one field per line, ``const (`` blocks), not Go in general. Deterministic (sorted keys).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("openapi_markers.json")

# k8s.io/api package directories → OpenAPI schema-name prefix
API_PACKAGES = (
    "core/v1", "apps/v1", "batch/v1", "coordination/v1", "discovery/v1", "networking/v1", "rbac/v1",
    "authorization/v1", "authentication/v1", "autoscaling/v1", "policy/v1", "scheduling/v1",
)  # fmt: skip
META = "pkg/apis/meta/v1"

_TYPE_STRUCT = re.compile(r"^type (\w+) struct \{")
_TYPE_STRING = re.compile(r"^type (\w+) string\b")
_FIELD = re.compile(r"^\s+(\w+)\s+([\w.*\[\]]+)\s+`([^`]*)`")
_CONST = re.compile(r'^\s*(?:const\s+)?(\w+)\s+(\w+)\s*=\s*"([^"]*)"')
_CONST_CONVERSION = re.compile(r'^\s*(?:const\s+)?(\w+)\s*=\s*(\w+)\("([^"]*)"\)')  # Name = Type("v")
_JSON_TAG = re.compile(r'json:"([^"]*)"')


def _tags(comments: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in comments:
        m = re.match(r"^\+([\w.-]+)=(\S+)", c.strip())
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
        elif c.strip().startswith("+") and "=" not in c:
            out.setdefault(c.strip()[1:], []).append("")
    return out


def parse_file(text: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(structs: name → {"tags", "fields": [(go name, go type, json tag, tags)]}, enums, consts)."""
    structs: dict[str, Any] = {}
    enums: dict[str, Any] = {}
    consts: list[tuple[str, str, str, str]] = []
    comments: list[str] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            comments.append(stripped[2:].removeprefix(" "))
            continue
        if current is not None:
            if stripped == "}":
                current = None
            else:
                m = _FIELD.match(line)
                if m:
                    jm = _JSON_TAG.search(m.group(3))
                    if jm:
                        current["fields"].append((m.group(1), m.group(2), jm.group(1), _tags(comments)))
            comments = []
            continue
        m = _TYPE_STRUCT.match(line)
        if m:
            current = {"tags": _tags(comments), "fields": []}
            structs[m.group(1)] = current
            comments = []
            continue
        m = _TYPE_STRING.match(line)
        if m and "enum" in _tags(comments):
            enums[m.group(1)] = True
        m = _CONST.match(line) or _CONST_CONVERSION.match(line)
        if m:
            consts.append((m.group(1), m.group(2), m.group(3), " ".join(comments)))
        comments = []
    const_map: dict[str, Any] = {}
    for name, typ, value, comment in consts:
        const_map.setdefault(typ, []).append((name, value, comment))
    return structs, enums, const_map


def _enum_line(name: str, value: str, comment: str) -> str:
    """kube-openapi enum.go Description: the comment without its leading const name, whitespace folded."""
    c = comment.strip().removeprefix(name).strip()
    c = re.sub(r"\s+", " ", c)
    return f" - `{json.dumps(value)}` {c}"


def extract(api_dir: Path, machinery_dir: Path) -> dict[str, Any]:
    packages = [(api_dir / p, "io.k8s.api." + p.replace("/", ".")) for p in API_PACKAGES]
    packages.append((machinery_dir / META, "io.k8s.apimachinery.pkg.apis.meta.v1"))
    parsed: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {}
    for directory, prefix in packages:
        structs: dict[str, Any] = {}
        enums: dict[str, Any] = {}
        consts: dict[str, Any] = {}
        for f in sorted(directory.glob("types*.go")):
            st, en, co = parse_file(f.read_text())
            structs.update(st)
            enums.update(en)
            for k, v in co.items():
                consts.setdefault(k, []).extend(v)
        parsed[prefix] = (structs, enums, consts)

    def enum_of(prefix: str, go_type: str) -> tuple[list[str], list[str]] | None:
        t = go_type.lstrip("*")
        pkg = prefix
        if "." in t:  # v1.Protocol / corev1.Protocol: the core types
            pkg, t = "io.k8s.api.core.v1", t.split(".", 1)[1]
        _, enums, consts = parsed[pkg]
        if t not in enums:
            return None
        values: dict[str, tuple[str, str]] = {}
        for name, value, comment in consts.get(t, []):
            old = values.get(value)
            # enum.go addIfNotPresent: the longer comment (then the smaller) wins
            if old is None or len(old[1]) < len(comment) or (len(old[1]) == len(comment) and old[1] > comment):
                values[value] = (name, comment)
        if not values:
            return None
        lines = sorted(_enum_line(n, v, c) for v, (n, c) in values.items())
        return sorted(values, key=json.dumps), lines

    fields_out: dict[str, Any] = {}
    types_out: dict[str, Any] = {}
    for prefix, (structs, _, _) in parsed.items():
        for sname, st in structs.items():
            schema = f"{prefix}.{sname}"
            ttags = st["tags"]
            if "atomic" in ttags.get("structType", []) or "atomic" in ttags.get("mapType", []):
                types_out[schema] = {"mapType": "atomic"}
            props: dict[str, Any] = {}
            for _go_name, go_type, json_tag, tags in st["fields"]:
                parts = json_tag.split(",")
                jname = parts[0]
                if not jname or jname == "-":
                    continue
                info: dict[str, Any] = {}
                if tags.get("listType"):
                    info["listType"] = tags["listType"][0]
                if tags.get("listMapKey"):
                    info["listMapKeys"] = tags["listMapKey"]
                if tags.get("mapType"):
                    info["mapType"] = tags["mapType"][0]
                if go_type.startswith("*"):
                    info["pointer"] = True
                if "omitempty" not in parts[1:]:
                    info["omitempty"] = False
                if not go_type.startswith("[]") and not go_type.startswith("map["):
                    found = enum_of(prefix, go_type)
                    if found is not None:
                        info["enum"], info["enumLines"] = found
                elif go_type.startswith("[]"):
                    found = enum_of(prefix, go_type[2:])
                    if found is not None:
                        info["itemsEnum"] = found[0]
                if info:
                    props[jname] = info
            if props:
                fields_out[schema] = props
    return {"fields": dict(sorted(fields_out.items())), "types": dict(sorted(types_out.items()))}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write(__doc__ or "")
        return 2
    data = extract(Path(argv[0]), Path(argv[1]))
    text = json.dumps(data, sort_keys=True, indent=0, separators=(",", ":")) + "\n"
    OUT.write_text(text)
    sys.stdout.write(f"wrote {OUT} ({len(data['fields'])} types with field markers, {len(text)} bytes)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
