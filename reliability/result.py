"""What a scenario measured: counts for the report, checks for the test."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Result:
    scenario: str
    sent: int = 0  # requests sent by the scenario's clients
    failed: int = 0  # ...that failed although they had to succeed
    expected_failures: int = 0  # ...that failed where the scenario allows it
    faults_injected: int = 0
    faults_survived: int = 0
    exit_codes: list[int] = field(default_factory=list)
    figures: dict[str, float | int | str] = field(default_factory=dict)
    # What must hold, each named as the report prints it: {"exits 0": True}.
    checks: dict[str, bool] = field(default_factory=dict)
    log: str = ""  # the container's output, shown when a check fails

    def check(self, name: str, holds: bool) -> None:
        self.checks[name] = bool(holds)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(self.checks.values()) and self.failed == 0

    def explain(self) -> str:
        broken = [name for name, holds in self.checks.items() if not holds]
        return (f"{self.scenario}: failed checks {broken}, {self.failed} unexpected failures, "
                f"figures {self.figures}\n--- container output ---\n{self.log[-4000:]}")
