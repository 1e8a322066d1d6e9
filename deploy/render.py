"""Render a Kustomize directory offline, without a cluster or a kustomize binary.

Covers exactly the Kustomize features ``deploy/k8s`` uses: ``resources`` (files and
directories), ``namespace``, ``labels`` (metadata labels only), ``images`` (newName, newTag,
digest) and ``patches`` (strategic merge, from ``path`` or inline ``patch``, with an optional
``target`` of kind and a name regex). Anything else in a kustomization.yaml is refused, so the
renderer never silently ignores a feature. The test suite checks the output equals
``kubectl kustomize`` wherever kubectl is installed.

    python -m deploy.render deploy/k8s/overlays/prod > prod.yaml
"""
from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "namespace", "labels", "resources", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}
#: Lists whose items are merged by this key in a strategic merge patch (others are replaced).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
              "volumeMounts": "mountPath", "envFrom": None}


class RenderError(ValueError):
    """A kustomization uses something this renderer does not support, or is malformed."""


def _load_docs(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise RenderError(f"{path}: every document needs kind and metadata")
    return docs


def _merge(base: Any, patch: Any, key: str | None = None) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = _merge(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    merge_key = MERGE_KEYS.get(key or "")
    if isinstance(base, list) and isinstance(patch, list) and merge_key:
        out = [copy.deepcopy(item) for item in base]
        index = {item.get(merge_key): i for i, item in enumerate(out) if isinstance(item, dict)}
        for item in patch:
            at = index.get(item.get(merge_key)) if isinstance(item, dict) else None
            if at is None:
                out.append(copy.deepcopy(item))
            else:
                out[at] = _merge(out[at], item)
        return out
    return copy.deepcopy(patch)


def _image_name(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def _set_images(node: Any, images: list[dict]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    for rule in images:
                        if isinstance(container, dict) and _image_name(container.get("image", "")) == rule["name"]:
                            new = rule.get("newName", rule["name"])
                            if "digest" in rule:
                                container["image"] = f"{new}@{rule['digest']}"
                            elif "newTag" in rule:
                                container["image"] = f"{new}:{rule['newTag']}"
                            else:
                                old = container["image"]
                                container["image"] = new + old[len(_image_name(old)):]
            else:
                _set_images(value, images)
    elif isinstance(node, list):
        for item in node:
            _set_images(item, images)


def _targets(docs: list[dict], patch: dict, target: dict | None) -> list[dict]:
    if target:
        unknown = set(target) - {"kind", "name"}
        if unknown:
            raise RenderError(f"patch target fields {sorted(unknown)} are not supported")
        return [d for d in docs if d["kind"] == target.get("kind", d["kind"])
                and re.fullmatch(target.get("name", ".*"), d["metadata"]["name"])]
    meta = patch.get("metadata", {})
    return [d for d in docs if d["kind"] == patch.get("kind") and d["metadata"]["name"] == meta.get("name")
            and ("namespace" not in meta or d["metadata"].get("namespace") == meta["namespace"])]


def render(directory: Path | str) -> list[dict]:
    """The documents a kustomization directory renders to."""
    directory = Path(directory)
    kfile = directory / "kustomization.yaml"
    if not kfile.exists():
        raise RenderError(f"{directory}: no kustomization.yaml")
    spec = yaml.safe_load(kfile.read_text(encoding="utf-8")) or {}
    unknown = set(spec) - SUPPORTED_KEYS
    if unknown:
        raise RenderError(f"{kfile}: unsupported fields {sorted(unknown)}")
    docs: list[dict] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        docs.extend(render(path) if path.is_dir() else _load_docs(path))
    for item in spec.get("patches", []):
        if ("path" in item) == ("patch" in item):
            raise RenderError(f"{kfile}: a patch needs exactly one of path or patch")
        patch_docs = (_load_docs(directory / item["path"]) if "path" in item
                      else [d for d in yaml.safe_load_all(item["patch"]) if d])
        for patch in patch_docs:
            matched = _targets(docs, patch, item.get("target"))
            if not matched:
                raise RenderError(f"{kfile}: patch for {patch.get('kind')} matches no resource")
            for doc in matched:
                merged = _merge(doc, {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")})
                merged["metadata"] = _merge(doc["metadata"], {k: v for k, v in patch.get("metadata", {}).items()
                                                             if k not in ("name", "namespace")})
                doc.clear()
                doc.update(merged)
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = spec["namespace"]
    for group in spec.get("labels", []):
        if set(group) - {"pairs"}:
            raise RenderError(f"{kfile}: labels support only pairs (metadata labels)")
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(group["pairs"])
    if spec.get("images"):
        _set_images(docs, spec["images"])
    return docs


def resource_id(doc: dict) -> tuple[str, str, str, str]:
    return (doc["apiVersion"], doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m deploy.render DIR", file=sys.stderr)
        return 2
    try:
        docs = render(args[0])
    except (RenderError, OSError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
