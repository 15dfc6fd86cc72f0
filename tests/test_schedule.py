"""sched_env/schedule.py: the schedule type, its JSON form, and the validator's every violation kind."""

from __future__ import annotations

import numpy as np
import pytest

from instances import InfeasibleScheduleError, InvalidScheduleFileError, JobShopInstance
from sched_env.schedule import VIOLATION_KINDS, Schedule, find_violations, validate_schedule

# A feasible schedule of the `tiny` fixture, worked out by hand (makespan 12):
#   M0: J0 [0,3)  J1 [3,5)  J2 [7,8)
#   M1: J2 [0,4)  J0 [4,6)  J1 [8,12)
#   M2: J2 [4,7)  J1 [7,8)  J0 [8,10)
HAND = [  # job, op, machine, start, end
    (0, 0, 0, 0, 3),
    (0, 1, 1, 4, 6),
    (0, 2, 2, 8, 10),
    (1, 0, 0, 3, 5),
    (1, 1, 2, 7, 8),
    (1, 2, 1, 8, 12),
    (2, 0, 1, 0, 4),
    (2, 1, 2, 4, 7),
    (2, 2, 0, 7, 8),
]


def schedule_from(rows, name="tiny") -> Schedule:
    job, op, machine, start, end = (np.array(c) for c in zip(*rows))
    return Schedule(job, op, machine, start, end, instance_name=name)


@pytest.fixture
def good() -> Schedule:
    return schedule_from(HAND)


def kinds(instance, schedule) -> list[str]:
    return [v.kind for v in find_violations(instance, schedule)]


def test_validator_accepts_a_feasible_schedule(tiny, good):
    assert validate_schedule(tiny, good) is good
    assert good.makespan == 12 and len(good) == 9


def test_missing_operation_is_named(tiny):
    assert kinds(tiny, schedule_from(HAND[:-1])) == ["missing"]
    with pytest.raises(InfeasibleScheduleError, match="job 2 operation 2 is not scheduled") as error:
        validate_schedule(tiny, schedule_from(HAND[:-1]))
    assert [v.kind for v in error.value.violations] == ["missing"]


def test_extra_operation_is_named(tiny):
    assert kinds(tiny, schedule_from([*HAND, (3, 0, 0, 20, 21)])) == ["extra"]
    assert kinds(tiny, schedule_from([*HAND, (0, 3, 2, 20, 21)])) == ["extra"]


def test_duplicate_operation_is_named(tiny):
    assert kinds(tiny, schedule_from([*HAND, (0, 0, 0, 20, 23)])) == ["duplicate"]


def test_wrong_machine_is_named(tiny):
    rows = list(HAND)
    rows[0] = (0, 0, 2, 0, 3)
    assert kinds(tiny, schedule_from(rows)) == ["machine"]


def test_wrong_duration_is_named(tiny):
    rows = list(HAND)
    rows[-1] = (2, 2, 0, 7, 9)
    with pytest.raises(InfeasibleScheduleError, match="job 2 operation 2 lasts 2 .* its duration is 1"):
        validate_schedule(tiny, schedule_from(rows))


def test_precedence_violation_is_named(tiny):
    rows = list(HAND)
    rows[1] = (0, 1, 1, 2, 4)  # J0 op1 before op0 ends at 3 (and M1 busy with J2 until 4)
    found = find_violations(tiny, schedule_from(rows))
    assert "precedence" in [v.kind for v in found]
    assert any("job 0 operation 1 starts at 2 before operation 0 ends at 3" in v.message for v in found)


def test_machine_overlap_is_named(tiny):
    rows = list(HAND)
    rows[3] = (1, 0, 0, 2, 4)  # J1 on M0 during J0's [0,3)
    found = find_violations(tiny, schedule_from(rows))
    assert [v.kind for v in found] == ["overlap"]
    assert "machine 0: job 0 operation 0 [0, 3) overlaps job 1 operation 0 [2, 4)" in found[0].message


def test_release_date_violation_is_named(tiny, good):
    released = tiny.replace(release_dates=[0, 0, 1])
    assert kinds(released, good) == ["release"]


def test_negative_start_is_named():
    instance = JobShopInstance.from_jobs([[(0, 2)]])
    assert kinds(instance, schedule_from([(0, 0, 0, -2, 0)])) == ["negative_start"]


def test_every_violation_is_listed_not_only_the_first(tiny):
    rows = [(j, k, m, 0, e - s) for j, k, m, s, e in HAND]  # everything starts at 0
    found = kinds(tiny, schedule_from(rows))
    assert found.count("precedence") == 6 and found.count("overlap") == 6
    assert set(found) <= set(VIOLATION_KINDS)


def test_zero_length_operations_touching_others_do_not_overlap():
    instance = JobShopInstance.from_jobs([[(0, 3)], [(0, 0)], [(0, 0)]])
    ok = schedule_from([(0, 0, 0, 0, 3), (1, 0, 0, 3, 3), (2, 0, 0, 0, 0)])
    assert find_violations(instance, ok) == []
    inside = schedule_from([(0, 0, 0, 0, 3), (1, 0, 0, 1, 1), (2, 0, 0, 0, 0)])
    assert kinds(instance, inside) == ["overlap"]


def test_json_round_trip(tmp_path, good):
    assert Schedule.from_json(good.to_json()) == good
    path = good.save(tmp_path / "s.json")
    loaded = Schedule.load(path)
    assert loaded == good and loaded.instance_name == "tiny" and loaded.makespan == 12


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected an object with an 'operations' list"),
        ('{"operations": [{"job": 0}]}', "operation 0 must be an object with keys job, op, machine, start, end"),
        ('{"operations": [{"job": 0, "op": 0, "machine": 0, "start": 1.5, "end": 2}]}', "start must be an integer"),
        ("{", "not valid JSON"),
    ],
)
def test_malformed_schedule_json(text, message):
    with pytest.raises(InvalidScheduleFileError, match=message):
        Schedule.from_json(text)


def test_missing_schedule_file_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidScheduleFileError, match="cannot read schedule file"):
        Schedule.load(tmp_path / "nope.json")


def test_sorted_orders_by_start_then_end(good):
    rows = good.sorted()
    keys = list(zip(rows.start.tolist(), rows.end.tolist()))
    assert keys == sorted(keys)


def test_start_matrix(tiny, good):
    matrix = good.start_matrix(tiny)
    assert matrix.shape == (3, 3) and matrix[1, 2] == 8


# ----------------------------------------------------------------- dynamic constraints
def test_operation_starting_while_its_machine_is_down_is_named(tiny, good):
    down = np.array([[1, 4, 5]])  # M1 down [4, 5): J0 op1 starts at 4 on M1
    found = find_violations(tiny, good, downtimes=down, interruption="restart")
    assert [v.kind for v in found] == ["downtime"] and "starts at 4 while machine 1 is down [4, 5)" in found[0].message
    # under resume the down time inside [4, 6) also leaves it one unit short of its duration
    assert sorted(v.kind for v in find_violations(tiny, good, downtimes=down)) == ["downtime", "duration"]


def test_resume_lets_an_operation_span_a_downtime(tiny):
    rows = list(HAND)
    rows[7] = (2, 1, 2, 4, 9)  # J2 op1 on M2: [4, 9) with M2 down [5, 7): 3 units of work, as planned
    rows[2], rows[4] = (0, 2, 2, 10, 12), (1, 1, 2, 9, 10)
    rows[5], rows[8] = (1, 2, 1, 10, 14), (2, 2, 0, 9, 10)
    schedule = schedule_from(rows)
    down = np.array([[2, 5, 7, 0]])
    assert find_violations(tiny, schedule, downtimes=down, interruption="resume") == []
    found = {v.kind for v in find_violations(tiny, schedule, downtimes=down, interruption="restart")}
    assert found == {"downtime", "duration"}  # restart: no spanning, and the run must last 3


def test_realised_durations_override_the_plan(tiny, good):
    realised = tiny.durations.copy()
    realised[0, 0] = 4
    assert [v.kind for v in find_violations(tiny, good, durations=realised)] == ["duration"]


def test_the_vectorised_pass_never_clears_what_the_full_pass_refuses():
    """find_violations' fast path (``_plainly_feasible``) on valid dynamic schedules and on
    thousands of one-field corruptions of them: it may send a schedule to the row-by-row pass,
    but never calls feasible one that pass refuses."""
    from sched_env import _kernels as K
    from sched_env import schedule as S
    from sched_env.standard import StandardSetting, run_streams

    rng = np.random.default_rng(0)
    for name, interruption in (("missing-0.90-4-bl5-rtf5-w0-r30", "resume"), ("full-0.85-2-m4-w0-r30", "resume")):
        scenario = StandardSetting.parse(name).scenario(1)
        start, end, _ = run_streams([scenario], rules=[K.RULE.spt])[0]
        good = S.Schedule.from_matrices(scenario.jobs, start, end)
        options = (scenario.realized_durations, scenario.downtimes, interruption)
        assert S._plainly_feasible(scenario.jobs, good, *options)
        assert S._all_violations(scenario.jobs, good, *options) == []
        refused = 0
        for _ in range(300):
            columns = {c: getattr(good, c).copy() for c in ("job", "op", "machine", "start", "end")}
            column = str(rng.choice(list(columns)))
            i = int(rng.integers(len(good)))
            columns[column][i] += int(rng.choice([-3, -1, 1, 2, 7]))
            if rng.random() < 0.3 and column in ("start", "end"):
                other = "end" if column == "start" else "start"
                columns[other][i] += columns[column][i] - getattr(good, column)[i]  # shift the whole operation
            bad = S.Schedule(*(columns[c] for c in ("job", "op", "machine", "start", "end")))
            fast = S._plainly_feasible(scenario.jobs, bad, *options)
            full = S._all_violations(scenario.jobs, bad, *options)
            assert not (fast and full), (column, i, full[:1])
            refused += bool(full)
        assert refused > 150  # the corruptions do break the schedule
