"""instances/: the instance type, formats, Taillard's generator, catalogue, generators."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import instances
from instances import InvalidInstanceError, JobShopInstance, UnknownInstanceError
from instances.catalogue import FLEXIBLE_FAMILIES
from tests.conftest import needs_jsplib


# ----------------------------------------------------------------- the instance type
def test_instance_is_immutable(tiny):
    with pytest.raises(AttributeError):
        tiny.name = "other"
    with pytest.raises(ValueError):
        tiny.durations[0, 0] = 5


def test_instance_copies_its_input():
    machines = np.array([[0, 1]])
    instance = JobShopInstance(machines, [[1, 2]])
    machines[0, 0] = 1
    assert instance.machines[0, 0] == 0


def test_jobs_of_different_lengths_and_revisits_are_legal():
    instance = JobShopInstance.from_jobs([[(0, 1), (0, 2), (1, 0)], [(1, 5)]])
    assert instance.n_ops.tolist() == [3, 1]
    assert instance.machines[1].tolist() == [1, -1, -1]
    assert instance.n_operations == 4 and not instance.is_classic
    assert instance.machine_load().tolist() == [3, 5]


@pytest.mark.parametrize(
    ("jobs", "kwargs", "message"),
    [
        ([[(0, 1), (3, 2)]], {"n_machines": 2}, "job 0 operation 1: machine 3 is out of range"),
        ([[(0, 1)], [(1, -4)]], {}, "job 1 operation 0: duration -4 is negative"),
        ([[(0, 1)], []], {}, "job 1 has no operations"),
        ([], {}, "at least one job"),
        ([[(0, 1)]], {"release_dates": [-1]}, "job 0: release_dates -1 is below 0"),
        ([[(0, 1)]], {"due_dates": [1, 2]}, "due_dates must have one entry per job (1)"),
        ([[(0, 1, 2)]], {}, "expected a (machine, duration) pair"),
    ],
)
def test_invalid_instance_names_the_fault(jobs, kwargs, message):
    with pytest.raises(InvalidInstanceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        JobShopInstance.from_jobs(jobs, **kwargs)


def test_non_integer_durations_are_rejected():
    with pytest.raises(InvalidInstanceError, match="whole numbers"):
        JobShopInstance([[0, 1]], [[1.5, 2.0]])
    assert JobShopInstance([[0, 1]], [[1.0, 2.0]]).durations.dtype == np.int64


def test_invalid_instance_error_is_a_value_error():
    assert issubclass(InvalidInstanceError, ValueError)
    assert issubclass(InvalidInstanceError, instances.SchedEnvError)


def test_simple_lower_bound_counts_release_dates(tiny):
    assert tiny.simple_lower_bound() == max(tiny.job_work().max(), tiny.machine_load().max()) == 10
    assert tiny.replace(release_dates=[0, 0, 10]).simple_lower_bound() == 18


# ----------------------------------------------------------------- Taillard's generator
def test_taillard_generator_small_case_from_the_paper_notes():
    instance = instances.generate_taillard(4, 4, 1166510396, 164000672)
    assert instance.durations.tolist() == [[54, 34, 61, 2], [9, 15, 89, 70], [38, 19, 28, 87], [95, 34, 7, 29]]
    assert (instance.machines + 1).tolist() == [[3, 1, 4, 2], [4, 1, 2, 3], [1, 2, 3, 4], [1, 3, 2, 4]]


def test_ta01_simple_lower_bound_is_977():
    assert instances.load("ta01").simple_lower_bound() == 977


@needs_jsplib
@pytest.mark.parametrize("name", [f"ta{i:02d}" for i in range(1, 81)])
def test_taillard_instances_regenerate_bit_exact(name, jsplib):
    generated = instances.taillard(name)
    published = instances.read_instance(jsplib / f"{name}.txt")
    assert generated.shape == published.shape
    assert np.array_equal(generated.machines, published.machines), f"{name}: machine routes differ"
    assert np.array_equal(generated.durations, published.durations), f"{name}: durations differ"


# ----------------------------------------------------------------- catalogue and bounds
def test_catalogue_knows_all_families():
    names = instances.names()
    assert len(names) == 238 + 850  # classic JSPLIB + the flexible families
    assert len(instances.names("sd1")) == 600 and len(instances.names("mk")) == 10
    assert instances.names("ta") == [f"ta{i:02d}" for i in range(1, 81)]
    assert {instances.family_of(n) for n in names} == set(instances.FAMILIES)


def test_bounds_of_ta01_give_its_optimum():
    bounds = instances.bounds("ta01")
    assert (bounds.lower, bounds.upper, bounds.optimum) == (1231, 1231, 1231)
    assert instances.bounds("TA50").optimum is None and instances.bounds("ta50").is_closed is False


@needs_jsplib
def test_shipped_bounds_equal_the_published_table(published_bounds):
    classic = {n for n in instances.names() if instances.family_of(n) not in FLEXIBLE_FAMILIES}
    assert set(published_bounds) == classic
    for name, published in published_bounds.items():
        ours = instances.bounds(name)
        assert (ours.lower, ours.upper, ours.optimum) == (
            published["lower_bound"],
            published["upper_bound"],
            published["optimum"],
        ), name
        entry = instances.entry(name)
        assert (entry.n_jobs, entry.n_machines) == (published["jobs"], published["machines"]), name


@needs_jsplib
def test_every_shared_instance_loads_and_respects_its_lower_bound(jsplib, published_bounds):
    loaded = 0
    for name, published in published_bounds.items():
        instance = instances.load(name, directory=jsplib)
        assert instance.shape == (published["jobs"], published["machines"]), name
        assert instance.is_classic, name
        assert instance.simple_lower_bound() <= published["lower_bound"], name
        loaded += 1
    assert loaded == 238


@needs_jsplib
def test_orb07_keeps_its_zero_duration(jsplib):
    orb07 = instances.load("orb07", directory=jsplib)
    assert orb07.durations[-1, -1] == 0 and orb07.machines[-1, -1] == 0


def test_catalogue_folder_from_argument_and_environment(tmp_path, monkeypatch, tiny):
    instances.write_instance(tiny, tmp_path / "la16.txt")
    assert instances.entry("la16").source == "bundled" and instances.load("la16").n_jobs == 10
    assert instances.load("la16", directory=tmp_path).same_data(tiny)  # a folder comes before the bundle
    monkeypatch.setenv(instances.INSTANCES_ENV_VAR, str(tmp_path))
    assert instances.load("la16").name == "la16"
    assert instances.entry("la16").source.endswith("la16.txt")


def test_every_catalogued_name_loads_out_of_the_box():
    for name in instances.names():
        entry = instances.entry(name)
        assert entry.source in ("generated", "bundled"), name
        instance = instances.load(name)
        assert (instance.n_jobs, instance.n_machines) == (entry.n_jobs, entry.n_machines), name


@needs_jsplib
def test_bundled_instances_equal_the_benchmark_files(jsplib):
    from instances.catalogue import BUNDLE, _read_bundle

    bundled = _read_bundle(BUNDLE)
    files = {p.stem for p in jsplib.glob("*.txt")} - set(instances.TAILLARD_SEEDS)
    assert set(bundled) == files
    for name in sorted(files):
        assert instances.load(name).same_data(instances.read_instance(jsplib / f"{name}.txt")), name


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UnknownInstanceError, match="did you mean ta10"):
        instances.load("ta100")
    with pytest.raises(UnknownInstanceError, match="no instance file"):
        instances.load("missing/dir/x.txt")


def test_load_reads_a_file_path(tmp_path, tiny):
    path = instances.write_instance(tiny, tmp_path / "mine.txt")
    assert instances.load(path).same_data(tiny)
    assert instances.load(str(path)).name == "mine"


# ----------------------------------------------------------------- formats
classic_instances = st.builds(
    lambda n, m, seed, low, spread: instances.random_instance(n, m, low=low, high=low + spread, seed=seed),
    st.integers(1, 8),
    st.integers(1, 8),
    st.integers(0, 2**32 - 1),
    st.integers(0, 50),
    st.integers(0, 200),
)


@settings(max_examples=60, deadline=None)
@given(classic_instances, st.sampled_from(["jsplib", "taillard", "json"]))
def test_formats_round_trip(instance, fmt):
    text = instances.format_instance(instance, fmt)
    back = instances.parse_instance(text, fmt=fmt, name=instance.name)
    assert back == instance
    assert instances.parse_instance(text, name=instance.name) == instance  # detected format


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_json_round_trips_general_instances(seed):
    from tests.reference import random_test_instance

    instance = random_test_instance(np.random.default_rng(seed)).replace(due_dates=None)
    assert instances.parse_instance(instances.format_instance(instance, "json")) == instance


def test_writers_refuse_what_their_format_cannot_hold(tiny):
    ragged = JobShopInstance.from_jobs([[(0, 1)], [(0, 1), (1, 1)]])
    with pytest.raises(InvalidInstanceError, match="Write it as JSON"):
        instances.format_jsplib(ragged)
    with pytest.raises(InvalidInstanceError, match="release/due dates"):
        instances.format_taillard(tiny.replace(due_dates=[1, 2, 3]))


def test_file_round_trip_through_disk(tmp_path, tiny):
    for suffix in ("txt", "json"):
        path = instances.write_instance(tiny, tmp_path / f"tiny.{suffix}")
        assert instances.read_instance(path) == tiny


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "file is empty"),
        ("# only a comment\n", "file is empty"),
        ("2 2\n0 1 1 2\n", ":2: file ends early: expected job 1"),
        ("2 2\n0 1 1 2\n0 1 1\n", ":3: expected 4 integers .*found 3"),
        ("2 2\n0 1 1 2\n0 1 1 x\n", ":3: 'x' is not an integer"),
        ("2 2\n0 1 1 2\n0 1 1 -3\n", ":3: job 1 operation 1: duration -3 is negative"),
        ("2 2\n0 1 1 2\n0 1 2 3\n", ":3: job 1 operation 1: machine 2 is out of range"),
        ("2 2 7\n0 1 1 2\n0 1 1 3\n", ":1: expected a header 'n_jobs n_machines', found 3"),
        ("0 2\n", ":1: n_jobs and n_machines must be >= 1"),
        ("1 2\n0 1 1 2\n0 1 1 3\n", ":3: unexpected extra content"),
        # Taillard's two-block format
        ("2 2\nTimes\n1 2\n3 4\nMachines\n1 2\n", ":6: file ends early"),
        ("2 2\nTimes\n1 2\n3 4\nMachinez\n1 2\n2 1\n", ":5: expected the line 'Machines'"),
        ("2 2\nTimes\n1 2\n3 4\nMachines\n1 2\n3 1\n", ":7: job 1 operation 0: machine 3 is out of range"),
        ("2 2\nTimes\n1 2\n3 -4\nMachines\n1 2\n2 1\n", ":4: job 1 operation 1: duration -4"),
    ],
)
def test_malformed_jsplib_and_taillard_files_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(InvalidInstanceError, match=f"bad.txt{message}" if message.startswith(":") else message):
        instances.read_instance(path)


def test_malformed_json_instance(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"jobs": [[[0, 1]], [[0]]]}')
    with pytest.raises(InvalidInstanceError, match="bad.json: job 1 operation 0: expected a \\(machine, duration\\)"):
        instances.read_instance(path)
    path.write_text("{")
    with pytest.raises(InvalidInstanceError, match="bad.json:1: not valid JSON"):
        instances.read_instance(path)


# ----------------------------------------------------------------- generators
def test_same_seed_same_instance():
    a = instances.random_instance(10, 5, seed=42)
    assert a == instances.random_instance(10, 5, seed=42)
    assert a != instances.random_instance(10, 5, seed=43)
    assert a.is_classic and a.durations.min() >= 1 and a.durations.max() <= 99


def test_mixed_size_generator_draws_each_size():
    generator = instances.MixedSizeGenerator([(6, 6), (10, 5)], low=1, high=9)
    rng = np.random.default_rng(0)
    shapes = {generator(rng).shape for _ in range(40)}
    assert shapes == {(6, 6), (10, 5)}
    assert (generator.max_jobs, generator.max_machines) == (10, 6)
    with pytest.raises(InvalidInstanceError):
        instances.MixedSizeGenerator([])
