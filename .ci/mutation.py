"""Mutation testing of the core modules: mutmut 3, then the score per module.

`make mutation` runs this; the configuration (which modules, which fast tests) is
`[tool.mutmut]` in pyproject.toml and docs/MUTATION.md has the latest score.

mutmut 3 leaves every decorated function unmutated (it cannot know what an arbitrary
decorator does with a copy of the function), and here that would leave out the core of
the modules: `@step` tasks such as `count_rows` and `split_valid_rows`, and the
`@contextmanager` `ledger_stage`. These decorators only wrap a function, so this script
lets mutmut mutate the bodies of functions whose decorators are all `step`, `task` or
`contextmanager`: the function that the decorators wrap dispatches to the original or the
mutated body, which are kept undecorated. The decorators' own arguments (retries) are still
not mutated: they are evaluated once, at import. The patch fits mutmut 3.8 (pinned).

    python .ci/mutation.py            # run what is not yet run, then print the score
    python .ci/mutation.py --max-children 2   # the same, two test processes at once
    python .ci/mutation.py --score    # only print the score of the last run (the mutants
                                      # listed in mutation-equivalents.txt left out)
    python .ci/mutation.py --survivors  # the mutants no test killed, with their changes
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

WRAPPING_DECORATORS = {"step", "task", "contextmanager"}
# mutmut's exit codes (mutmut.stats.status_by_exit_code): a failed test or pytest error is a
# kill, and so are a timeout (the tests did not finish) and a test process ended by a signal
# (e.g. a mutant that sends SIGHUP instead of probing with signal 0). Skipped mutants are not
# counted; survivors and mutants no test reaches ("no tests") count against the score.
STATUS = {1: "killed", 3: "killed", 0: "survived", 33: "no tests", 34: "skipped", None: "not run"}
STATUS |= dict.fromkeys((24, -24, 152, 255, 36), "timeout")
DETECTED = ("killed", "timeout", "crashed")


def _decorator_name(decorator) -> str | None:
    import libcst as cst

    node = decorator.decorator
    if isinstance(node, cst.Call):
        node = node.func
    return node.value if isinstance(node, cst.Name) else None


def _only_wrapping(function) -> bool:
    """Whether `function` is decorated, and only by decorators that just wrap it."""
    names = [_decorator_name(d) for d in function.decorators]
    return bool(names) and all(name in WRAPPING_DECORATORS for name in names)


def allow_wrapped_functions() -> None:
    """Let mutmut mutate the bodies of functions that `WRAPPING_DECORATORS` wrap."""
    import libcst as cst
    import mutmut
    from mutmut.mutation import file_mutation

    if not mutmut.__version__.startswith("3.8."):
        sys.exit(f"mutmut {mutmut.__version__}: .ci/mutation.py patches mutmut 3.8 only")

    skip = file_mutation.MutationVisitor._skip_node_and_children

    def skip_node_and_children(self, node):
        if isinstance(node, cst.FunctionDef) and _only_wrapping(node):
            position = self.get_metadata(file_mutation.PositionProvider, node, None)
            if position and position.start.line in self._ignored_node_lines:
                return skip(self, node)  # `# pragma: no mutate` on the def line
            return skip(self, node.with_changes(decorators=()))
        return skip(self, node)

    arrange = file_mutation.function_trampoline_arrangement

    def function_trampoline_arrangement(function, mutants, class_name):
        declarations, methods, assignments, names = arrange(function, mutants, class_name)
        if _only_wrapping(function):
            # methods[0] is the decorated trampoline; the original and the mutants it calls
            # must be plain functions, or each call would go through the decorators twice.
            methods = [methods[0], *(m.with_changes(decorators=()) for m in methods[1:])]
        return declarations, methods, assignments, names

    file_mutation.MutationVisitor._skip_node_and_children = skip_node_and_children
    file_mutation.function_trampoline_arrangement = function_trampoline_arrangement


def run_fastest_tests_first() -> None:
    """Hand each mutant's tests to pytest fastest first: with `-x` a killed mutant then
    costs its quickest failing test, not whatever slow test the set put first."""
    import mutmut.__main__ as main
    from mutmut.state import state

    get_runner = main.get_mutant_runner

    def get_mutant_runner(*args, **kwargs):
        runner = get_runner(*args, **kwargs)
        submit = runner.submit

        def sorted_submit(mutant_name, tests, *rest):
            durations = state().duration_by_test
            return submit(mutant_name, sorted(tests, key=lambda t: (durations[t], t)), *rest)

        runner.submit = sorted_submit
        return runner

    main.get_mutant_runner = get_mutant_runner


EQUIVALENTS = Path(__file__).with_name("mutation-equivalents.txt")


def equivalent_mutants() -> dict[str, str]:
    """The mutants listed as equivalent (`mutation-equivalents.txt`), with why."""
    listed = {}
    for line in EQUIVALENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, why = line.split(maxsplit=1)
            listed[name] = why
    return listed


def score() -> int:
    """Print killed / (tested - equivalent) per mutated module from mutmut's results; 1 if
    there are none."""
    from mutmut.configuration import config

    equivalent, stale, rows = equivalent_mutants(), [], []
    for path in sorted(config().only_mutate):
        meta = Path("mutants") / f"{path}.meta"
        if not meta.exists():
            continue
        status = Counter()
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            what = STATUS.get(code, "crashed" if code is not None and code < 0 else f"exit {code}")
            if name in equivalent and what == "survived":
                what = "equivalent"
            elif name in equivalent and what in DETECTED:
                stale.append(name)
            status[what] += 1
        status.pop("skipped", None)
        rows.append((path, status))
    if not rows:
        print("no mutation results under mutants/: run `make mutation`")
        return 1
    print(f"{'module':<22} {'killed':>7} {'scored':>6} {'score':>7}  of which")
    total = Counter()
    for path, status in rows + [("all", None)]:
        if status is None:
            status = total
        else:
            total.update(status)
        scored = sum(n for what, n in status.items() if what not in ("not run", "equivalent"))
        detected = sum(status[what] for what in DETECTED)
        parts = ", ".join(f"{n} {what}" for what, n in sorted(status.items()) if what != "killed")
        share = f"{detected / scored:.1%}" if scored else "-"
        print(f"{path:<22} {detected:>7} {scored:>6} {share:>7}  {parts or '-'}")
    for name in stale:
        print(f"listed as equivalent but killed (remove it from {EQUIVALENTS.name}): {name}")
    return 0


def survivors() -> int:
    """Print each mutant that no test killed, with the lines it changed."""
    import ast
    import difflib

    from mutmut.configuration import config

    for path in sorted(config().only_mutate):
        mutated, meta = Path("mutants") / path, Path("mutants") / f"{path}.meta"
        if not meta.exists():
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        source = mutated.read_text()
        lines = source.splitlines()
        functions = {
            node.name: lines[node.lineno - 1 : node.end_lineno]
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef)
        }
        for name, code in codes.items():
            if STATUS.get(code) not in ("survived", "no tests"):
                continue
            function = name.rsplit(".", 1)[1]
            original_name = function.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"
            mutant = [line.replace(function, original_name) for line in functions[function]]
            changed = [
                line
                for line in difflib.unified_diff(functions[original_name], mutant, n=0)
                if line[:1] in "+-" and line[:3] not in ("+++", "---")
            ]
            print(f"{name} ({STATUS[code]})")
            print("\n".join(f"    {line.strip()[:1]} {line[1:].strip()}" for line in changed))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--score"]:
        return score()
    if argv[:1] == ["--survivors"]:
        return survivors()
    allow_wrapped_functions()
    run_fastest_tests_first()
    from mutmut.__main__ import cli

    started = time.monotonic()
    try:
        # one child at a time: the fast tests write Delta tables and time themselves
        cli(["run", "--max-children", "1", *argv], standalone_mode=False)
    except SystemExit as stop:
        if stop.code:
            return int(stop.code)
    print(f"\nmutmut run took {time.monotonic() - started:.0f} s")
    return score()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
