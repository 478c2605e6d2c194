"""Install ray[serve]'s extras (what `ray.data.llm` needs) from carried wheels, on a machine with no package index.

Run ON THE GPU MACHINE after ../shared/gpu/collect.sh installed vLLM + Ray into /tmp/site, with the wheel folder
carried (carry [".whl"]; it is git-ignored, about 39 MiB):

    export PYTHONPATH=/tmp/site-serve:/tmp/site && python3 benchmarks/serve_extras.py .whl

1. every wheel directly in `.whl/` (the extras themselves) goes into /tmp/site-serve (--no-deps);
2. the requirements of those wheels and of `ray[serve]` are checked against what Python sees (image + /tmp/site +
   /tmp/site-serve); a requirement that is missing or too old gets the matching wheel from `.whl/deps/` (only those:
   the image's own packages are kept wherever they already satisfy), repeated until nothing is missing;
3. `import ray.serve, ray.data.llm` proves it. Prints what was installed and anything still unsatisfied.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename
except ImportError:  # pip's own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

TARGET = Path("/tmp/site-serve")


def pip_install(wheels: list[Path]) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", str(TARGET), *map(str, wheels)], check=True)
    importlib.invalidate_caches()


def requirements(dist: str, extras: set[str]) -> list[Requirement]:
    out = []
    for r in md.distribution(dist).requires or []:
        req = Requirement(r)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            out.append(req)
    return out


def unsatisfied(reqs: list[Requirement]) -> list[tuple[Requirement, str | None]]:
    bad = []
    for req in reqs:
        try:
            v = md.version(req.name)
        except md.PackageNotFoundError:
            bad.append((req, None))
            continue
        if req.specifier and not req.specifier.contains(v, prereleases=True):
            bad.append((req, v))
    return bad


def main(folder: str = ".whl") -> int:
    if str(TARGET) not in sys.path:
        sys.exit(f"put {TARGET} first on PYTHONPATH: export PYTHONPATH={TARGET}:/tmp/site")
    folder = Path(folder)
    TARGET.mkdir(parents=True, exist_ok=True)
    core = sorted(folder.glob("*.whl"))
    deps = {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in sorted((folder / "deps").glob("*.whl"))}
    pip_install(core)
    print(f"installed {len(core)} ray[serve] extras into {TARGET}: {', '.join(w.name.split('-')[0] for w in core)}")
    added: dict[str, set[str]] = {}  # dependency wheels installed, with the extras asked of them
    for _ in range(10):
        reqs = requirements("ray", {"serve"})
        for w in core:
            reqs += requirements(parse_wheel_filename(w.name)[0], set())
        for n, extras in added.items():
            reqs += requirements(n, extras)
        bad = unsatisfied(reqs)
        fix: dict[str, set[str]] = {}
        for req, have in bad:
            n = canonicalize_name(req.name)
            w = deps.get(n)
            if w is not None and n not in added and n not in fix and req.specifier.contains(str(parse_wheel_filename(w.name)[1]), prereleases=True):
                fix[n] = set(req.extras)
                print(f"  {req} (have {have or 'none'}) -> {w.name}")
        if not fix:
            break
        pip_install([deps[n] for n in fix])
        added.update(fix)
    still = unsatisfied(reqs)
    for req, have in still:
        print(f"STILL UNSATISFIED: {req} (have {have or 'none'})")
    r = subprocess.run([sys.executable, "-c", "import ray, ray.serve, ray.data.llm, grpc; "
                        "print('ray', ray.__version__, '| grpcio', grpc.__version__, '| ray.serve and ray.data.llm import')"])
    return r.returncode or (1 if still else 0)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
