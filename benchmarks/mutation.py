"""Mutation testing of the method's core with cosmic-ray: does a deliberate break fail a test?

    pip install -e ".[dev]"
    python benchmarks/mutation.py strategies selection --minutes 20

Each target is one module and the tests that should guard it. cosmic-ray mutates the module on
disk one mutant at a time (commit first: an interrupted run is undone with ``git checkout``),
runs the target's tests, and records whether they failed (killed) or passed (survived). Runs
stop at ``--minutes`` per target and resume where they stopped (the session database lives in
``--workdir``). The table counts killed and surviving mutants; every survivor is listed with
its diff, to be killed by a test or explained as equivalent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: target -> (module, tests that guard it)
TARGETS = {
    "strategies": ("uir/lora/strategies.py", "tests/test_pipeline_oracles.py tests/test_router.py "
                                             "tests/test_uir_lora_pipeline.py tests/test_restorer_pipeline.py"),
    "mixture": ("uir/lora/mixture.py", "tests/test_lora_mixture.py tests/test_pipeline_oracles.py"),
    "router": ("uir/router.py", "tests/test_router.py tests/test_pipeline_oracles.py"),
    "pipelines": ("pipelines/base.py", "tests/test_pipeline_oracles.py tests/test_uir_lora_pipeline.py "
                                       "tests/test_restorer_pipeline.py"),
    "selection": ("uir/grids/selection.py", "tests/test_grids.py"),
}


def config_text(module: str, tests: str, timeout: float) -> str:
    return "\n".join([
        "[cosmic-ray]",
        f'module-path = "{REPO / module}"',
        f"timeout = {timeout}",
        "excluded-modules = []",
        f'test-command = "{sys.executable} -m pytest -x -q -p no:cacheprovider {tests}"',
        "[cosmic-ray.distributor]",
        'name = "local"',
        "",
    ])


def run_target(name: str, workdir: Path, minutes: float, timeout: float) -> dict:
    module, tests = TARGETS[name]
    config, session = workdir / f"{name}.toml", workdir / f"{name}.sqlite"
    config.write_text(config_text(module, tests, timeout))
    if not session.exists():
        subprocess.run(["cosmic-ray", "init", str(config), str(session)], check=True, cwd=REPO)
    try:
        subprocess.run(["cosmic-ray", "exec", str(config), str(session)], cwd=REPO, timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        subprocess.run(["git", "checkout", "--", module], cwd=REPO, check=True)  # undo the mutant in flight
    dump = subprocess.run(["cosmic-ray", "dump", str(session)], check=True, capture_output=True, text=True, cwd=REPO)
    counts = {"mutants": 0, "killed": 0, "survived": 0, "not run": 0}
    survivors = []
    for line in dump.stdout.splitlines():
        item, result = json.loads(line)
        counts["mutants"] += 1
        if result is None:
            counts["not run"] += 1
        elif result["test_outcome"] == "killed":
            counts["killed"] += 1
        else:
            counts["survived"] += 1
            mutation = item["mutations"][0]
            survivors.append(f"{name}: {mutation['operator_name']} at line {mutation['start_pos'][0]}\n"
                             f"{result.get('diff', '')}")
    return {"target": name, **counts, "survivors": survivors}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", choices=sorted(TARGETS))
    parser.add_argument("--minutes", type=float, default=20.0, help="time budget per target")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one test run may take")
    parser.add_argument("--workdir", default=str(REPO / "outputs" / "mutation"))
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = [run_target(name, workdir, args.minutes, args.timeout) for name in args.targets]
    print("| target | mutants | killed | survived | not run |\n| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['target']} | {row['mutants']} | {row['killed']} | {row['survived']} | {row['not run']} |")
    for row in rows:
        for survivor in row["survivors"]:
            print("\n" + survivor)


if __name__ == "__main__":
    main()
