"""The pytest plugin: assert in CI that an agent still behaves as recorded.

Installed as the ``agentledger`` pytest plugin (entry point), it offers the
``agentledger`` fixture, a ``Ledger``:

    def test_agent_replays_as_recorded(agentledger):
        agentledger.replay("support_bot", store="tests/ledger.db").assert_identical()

    def test_agent_succeeds_often_enough(agentledger):
        agentledger.run_experiment(".").assert_success_rate(0.9)

    def test_scores_hold(agentledger):
        outcome = agentledger.evaluate("support_bot", store="tests/ledger.db")
        outcome.assert_passed()
        outcome.assert_metric("quality.helpfulness", 0.7)

``replay`` and ``evaluate`` work on a copy of a SQLite store file, so the file committed
with the tests is never modified; a PostgreSQL URL is used as it is. ``--agentledger-store`` (or
``AGENTLEDGER_STORE``) sets the default store.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from agentledger.projections.compare import ReplayRow, count_verdicts

if TYPE_CHECKING:
    from agentledger.evaluation import EvaluationOutcome
    from agentledger.experiments.runner import ExperimentResult


@dataclass(frozen=True)
class ExperimentOutcome:
    """How an experiment run from a test went."""

    experiment_id: str
    output_dir: Path
    total: int
    successful: int
    failed: int

    @property
    def success_rate(self) -> float:
        return self.successful / self.total if self.total else 0.0

    def assert_success_rate(self, minimum: float) -> None:
        """Fail the test when fewer than ``minimum`` (0..1) of the runs succeeded."""
        if self.success_rate < minimum:
            raise AssertionError(
                f"experiment {self.experiment_id}: success rate {self.success_rate:.1%} is "
                f"below {minimum:.1%} ({self.failed} of {self.total} runs failed; report in "
                f"{self.output_dir})"
            )


@dataclass(frozen=True)
class ReplayOutcome(ExperimentOutcome):
    """How a replay from a test went: the verdict of every run."""

    rows: list[ReplayRow] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return count_verdicts(self.rows).all_identical

    def assert_identical(self) -> None:
        """Fail the test unless every run came out as recorded, listing the ones that did
        not with their first divergence."""
        bad = [r for r in self.rows if r.verdict != "identical"]
        if bad:
            lines = [f"{r.source_trace_id}: {r.verdict} {r.detail}".rstrip() for r in bad]
            raise AssertionError(
                f"replay {self.experiment_id}: {len(bad)} of {len(self.rows)} runs differ "
                "from the recording:\n" + "\n".join(lines)
            )


def _outcome(result: ExperimentResult) -> dict[str, Any]:
    return {
        "experiment_id": result.experiment_id,
        "output_dir": result.output_dir,
        "total": result.total,
        "successful": result.successful,
        "failed": result.failed,
    }


class Ledger:
    """The ``agentledger`` fixture."""

    def __init__(self, default_store: str | None, workdir: Path) -> None:
        self._default_store = default_store
        self._workdir = workdir
        self._evaluations = 0

    def _store_url(self, store: str | Path | None, project: Path) -> str:
        location = store or self._default_store
        return str(location) if location else str(project / ".agentledger" / "ledger.db")

    def run_experiment(
        self,
        project: str | Path = ".",
        *,
        store: str | Path | None = None,
        config: str | None = None,
        iterations: int | None = None,
        output_dir: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> ExperimentOutcome:
        """Run the project's experiment (``configs/simulation.yaml``) live and record it."""
        from agentledger.api import run_experiment
        from agentledger.experiments.config import Overrides

        project_dir = Path(project).resolve()
        overrides = Overrides(
            iterations=iterations,
            output_dir=str(output_dir or self._workdir / "experiments"),
        )
        result = run_experiment(
            project_dir,
            store=self._store_url(store, project_dir),
            config=config,
            overrides=overrides,
            env=env,
        )
        return ExperimentOutcome(**_outcome(result))

    def replay(
        self,
        experiment: str,
        *,
        store: str | Path | None = None,
        project: str | Path = ".",
        mode: str = "replay",
        copy_store: bool = True,
    ) -> ReplayOutcome:
        """Replay a recorded experiment (id or name) from ``store`` against the project's
        current code; model calls are answered from the log."""
        from agentledger.api import replay_experiment

        project_dir = Path(project).resolve()
        url = self._store_url(store, project_dir)
        if copy_store and "://" not in url and Path(url).is_file():
            copy = self._workdir / f"replay-{Path(url).name}"
            shutil.copyfile(url, copy)
            url = str(copy)
        replayed = replay_experiment(
            experiment,
            project_dir,
            store=url,
            mode=mode,
            project_dir=project_dir,
            output_dir=self._workdir / "replays",
        )
        return ReplayOutcome(**_outcome(replayed.result), rows=replayed.rows)

    def evaluate(
        self,
        experiment: str,
        *,
        store: str | Path | None = None,
        project: str | Path = ".",
        config: str | None = None,
        name: str | None = None,
        record_mode: str = "live",
        judge_model: str | None = None,
        parallel: int = 4,
        copy_store: bool = True,
    ) -> EvaluationOutcome:
        """Score a recorded experiment (id or name) with the project's
        ``configs/evaluation.yaml`` (or ``config``), as ``agentledger evaluate`` does;
        ``record_mode="replay"`` answers the judges from the experiment's latest recorded
        evaluation, offline. Returns the outcome with ``assert_passed``,
        ``assert_pass_rate`` and ``assert_metric``; its files are under the temporary
        folder. ``copy_store=False`` records the evaluation into the store itself."""
        from agentledger.evaluation import evaluate

        project_dir = Path(project).resolve()
        url = self._store_url(store, project_dir)
        self._evaluations += 1
        if copy_store and "://" not in url and Path(url).is_file():
            # A fresh copy per call: the store as it is now, the committed file untouched.
            copy = self._workdir / f"evaluate-{self._evaluations}-{Path(url).name}"
            shutil.copyfile(url, copy)
            url = str(copy)
        return evaluate(
            experiment,
            project_dir,
            store=url,
            config=config,
            name=name,
            record_mode=record_mode,
            parallel=parallel,
            judge_model=judge_model,
            output_dir=self._workdir / "evaluations" / str(self._evaluations),
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agentledger")
    group.addoption(
        "--agentledger-store",
        default=None,
        metavar="URL",
        help="default store of the agentledger fixture [default: $AGENTLEDGER_STORE, else "
        "the project's .agentledger/ledger.db]",
    )


@pytest.fixture
def agentledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    """Run or replay agentledger experiments from a test (see this module)."""
    default = request.config.getoption("--agentledger-store") or os.environ.get("AGENTLEDGER_STORE")
    with tempfile.TemporaryDirectory(prefix="agentledger-") as workdir:
        yield Ledger(default, Path(workdir))
