"""Typed configs: YAML + base + dotted overrides, and errors that name the fix."""

from __future__ import annotations

import dataclasses

import pytest

from reflectrm.config import ConfigError, JudgeConfig, ModelConfig, load_config


@dataclasses.dataclass(frozen=True)
class Job:
    model: ModelConfig = ModelConfig()
    judge: JudgeConfig = JudgeConfig()
    datasets: tuple[str, ...] = ()
    output: str = "out"


def test_yaml_base_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("judge:\n  n: 4\n  seed: 3\noutput: a\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\njudge:\n  n: 6\n")
    cfg = load_config(
        Job,
        tmp_path / "child.yaml",
        ["judge.temperature=0.5", "datasets=[llmbar:x, pandalm:y]", "model.name=tiny-random"],
    )
    assert cfg.judge.n == 6 and cfg.judge.seed == 3 and cfg.judge.temperature == 0.5
    assert cfg.datasets == ("llmbar:x", "pandalm:y") and cfg.output == "a" and cfg.model.name == "tiny-random"


@pytest.mark.parametrize(
    "override, message",
    [
        ("judge.nn=3", "unknown config key judge.nn; valid keys here:"),
        ("judge.mode=vote", "judge.mode='vote': valid options are greedy, majority, reflect"),
        ("judge.n=many", "expected an integer"),
        ("judge.n=0", "must be a positive integer"),
        ("judge.confidence_fraction=2", "must be in (0, 1]"),
        ("model.trust_remote_code=maybe", "expected true or false"),
        ("novalue", "expected dotted.key=value"),
        ("output.x=1", "output={'x': 1}: expected a string"),
    ],
)
def test_bad_values_name_the_problem(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(Job, None, [override])
    assert message in str(err.value)


def test_missing_file_and_cycles(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Job, tmp_path / "nope.yaml")
    (tmp_path / "a.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(Job, tmp_path / "a.yaml")


@dataclasses.dataclass(frozen=True)
class Mix:
    ratio: str = "4:1"
    day: str = ""
    lr: float = 0.0


@dataclasses.dataclass(frozen=True)
class Checked:
    x: int = 1

    def __post_init__(self):
        if self.x > 5:
            raise ValueError("x must be at most 5")


@dataclasses.dataclass(frozen=True)
class Top:
    part: Checked = Checked()


def test_ratios_and_dates_stay_strings(tmp_path):
    (tmp_path / "m.yaml").write_text("ratio: 4:1\nday: 2026-11-23\nlr: 1e-6\n")
    cfg = load_config(Mix, tmp_path / "m.yaml", ["ratio=1:0"])
    assert (cfg.ratio, cfg.day, cfg.lr) == ("1:0", "2026-11-23", 1e-6)


def test_section_validation_errors_become_config_errors():
    with pytest.raises(ConfigError, match="part: x must be at most 5"):
        load_config(Top, None, ["part.x=9"])


def test_a_section_name_shorthand():
    import dataclasses

    from reflectrm.config import ModelConfig, load_config

    @dataclasses.dataclass(frozen=True)
    class C:
        model: ModelConfig = ModelConfig()
        output: str = "x"

    cfg = load_config(C, None, ["model=tiny-random", "model.dtype=float32", "output=y"])
    assert cfg.model.name == "tiny-random" and cfg.model.dtype == "float32" and cfg.output == "y"


def test_a_named_section_given_as_a_string_in_any_mapping():
    from jobs.ray_scoring import ScoreConfig
    from reflectrm.config import from_dict

    cfg = from_dict(ScoreConfig, {"model": "tiny-random", "judge": {"n": 2}})
    assert cfg.model.name == "tiny-random" and cfg.model.engine == "auto" and cfg.judge.n == 2


def test_dotted_settings_stand_anywhere_among_a_jobs_flags():
    from jobs.common import parse_job_config
    from jobs.ray_training import TrainConfig

    argv = ["max_steps=2", "--config", "jobs/configs/grpo.yaml", "seed=3", "--verbose", "trainer.num_workers=2"]
    cfg = parse_job_config(TrainConfig, argv, "")
    assert (cfg.max_steps, cfg.seed, cfg.trainer.num_workers, cfg.ray.verbose) == (2, 3, 2, True)
    assert cfg.recipe == "grpo"  # the --config between the settings was read, and the settings applied on it


def test_a_flag_value_that_looks_like_a_setting_stays_the_flags():
    from reflectrm.cli import build_parser

    parser, _ = build_parser()
    args = parser.parse_args(["judge", "--prompt", "x=1", "judge.n=2", "--response-1", "a", "--response-2", "b"])
    assert args.prompt == "x=1" and args.overrides == ["judge.n=2"]
