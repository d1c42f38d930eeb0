"""`aigc k8s render|check`: paths come from --repo / --k8s-dir (default: the current directory)."""

from __future__ import annotations

import argparse
from pathlib import Path

from control.k8s.crds import CRD_ENV, check_custom, crd_dir
from control.k8s.kustomize import Rendered, kustomize
from control.k8s.layout import OVERLAYS, Layout
from control.k8s.render import drift, load_overlay_config, render
from control.k8s.rules import check_dockerfile, check_project
from control.k8s.validate import check_builtin, check_serve_config


def check_overlay(layout: Layout, overlay: str, crds: Path) -> dict[str, list[str]]:
    """Every check of one overlay: name -> problems (empty = passed)."""
    results: dict[str, list[str]] = {"drift": drift(layout, overlay)}
    docs = kustomize(layout.overlay_dir(overlay))
    rendered = Rendered(overlay, docs)
    cfg = load_overlay_config(layout.overlay_config(overlay))
    results["kubernetes schemas"] = check_builtin(docs)
    results["CRD schemas"] = check_custom(docs, crds)
    results["serveConfigV2"] = check_serve_config(
        rendered.one("RayService")["spec"]["serveConfigV2"]
    )
    results["project rules"] = check_project(rendered, cfg)
    return results


def _cmd_render(layout: Layout, args: argparse.Namespace) -> int:
    config = Path(args.config).resolve() if args.config else None
    for overlay in [args.overlay] if args.overlay else sorted(OVERLAYS):
        out = Path(args.out) if args.out else layout.overlay_dir(overlay)
        for name, text in render(layout, overlay, config).items():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    return 0


def _cmd_check(layout: Layout, args: argparse.Namespace) -> int:
    crds = crd_dir(layout.k8s_dir)
    via = f" (${CRD_ENV})" if crds != layout.k8s_dir / "crds" else ""
    print(f"CRD schemas from {crds}{via}")
    failed = check_dockerfile(layout)
    print(("FAIL" if failed else "ok  ") + " Dockerfile Ray pin")
    for line in failed:
        print(f"     {line}")
    for overlay in [args.overlay] if args.overlay else sorted(OVERLAYS):
        for name, problems in check_overlay(layout, overlay, crds).items():
            print(("FAIL" if problems else "ok  ") + f" {overlay}: {name}")
            for line in problems:
                print(f"     {line}")
            failed += problems
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="aigc k8s", description="render and check the Kubernetes manifests, offline"
    )
    p.add_argument(
        "--repo", default=".", help="checkout holding configs/ and k8s/ (default: current dir)"
    )
    p.add_argument("--k8s-dir", help="the manifests (default: REPO/k8s)")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="write serveConfigV2 and the gateway config of overlays")
    r.add_argument("--overlay", choices=sorted(OVERLAYS), help="default: every overlay")
    r.add_argument("--config", help="model config (default: REPO/configs/k8s-OVERLAY.yaml)")
    r.add_argument("--out", help="directory to write generated/ into (default: the overlay)")
    c = sub.add_parser("check", help="validate the rendered overlays offline")
    c.add_argument("--overlay", choices=sorted(OVERLAYS), help="default: every overlay")
    args = p.parse_args(argv)
    layout = Layout.at(args.repo, args.k8s_dir)
    try:
        layout.require()
    except FileNotFoundError as exc:
        p.error(str(exc))
    if args.command == "render":
        if args.config and not args.overlay:
            p.error("--config needs --overlay")
        return _cmd_render(layout, args)
    return _cmd_check(layout, args)
