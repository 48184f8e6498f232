"""What a careless user hands over: damaged experts and models, experts for another base, pickles.

Each case must end in one line (``ExpertError`` / ``ValueError`` in Python, exit 2 in the CLI)
and lose nothing.
"""

import json

import pytest
import torch

from uir.cli import EXIT_OK, EXIT_USAGE, main
from uir.images import save_image
from uir.lora import FINGERPRINT_KEY, ExpertError, LoRAExpert, fingerprints_match, short_fingerprint
from uir.lora.fingerprint import legacy_base_fingerprint
from uir.pipelines import RestorerPipeline
from uir.pipelines.loading import default_model_dir, load_pipeline
from uir.testing import random_expert, tiny_restorer_pipeline


@pytest.fixture()
def pipe():
    return tiny_restorer_pipeline(names=("noisy", "hazy"))


@pytest.fixture()
def photo(tmp_path, sample):
    return save_image(sample[:, :32, :32], tmp_path / "in" / "a.png")


def _expert(pipe, name="noisy", seed=7):
    expert = random_expert(name, restorer=pipe.restorer, base_model="tiny-nafnet", seed=seed)
    expert.extra[FINGERPRINT_KEY] = pipe.base_fingerprint
    return expert


def test_fingerprint_ignores_experts_and_dtype_but_not_weights(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    again = RestorerPipeline.from_pretrained(tmp_path / "model")
    assert again.base_fingerprint == pipe.base_fingerprint
    for dtype in (torch.bfloat16, torch.float16):
        cast = RestorerPipeline.from_pretrained(tmp_path / "model", dtype=dtype)
        assert fingerprints_match(pipe.base_fingerprint, cast.base_fingerprint, cast._base_models()), dtype
    other = tiny_restorer_pipeline(names=(), router=False, seed=1)
    assert not fingerprints_match(pipe.base_fingerprint, other.base_fingerprint, other._base_models())
    one_layer = tiny_restorer_pipeline(names=(), router=False)
    with torch.no_grad():
        one_layer.restorer.ending.weight.mul_(-1)
    one_layer._set_up_experts()
    assert not fingerprints_match(pipe.base_fingerprint, one_layer.base_fingerprint, one_layer._base_models())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_default_loads_with_its_experts_in_every_dtype(dtype):
    for pipe in (RestorerPipeline.from_pretrained(default_model_dir(), dtype=dtype), load_pipeline(dtype=dtype)):
        assert len(pipe.expert_list.names) == 10 and pipe.dtype == dtype


def test_an_expert_of_the_first_fingerprint_form_loads_and_is_saved_in_the_current_one(pipe, tmp_path):
    expert = _expert(pipe)
    expert.extra[FINGERPRINT_KEY] = legacy_base_fingerprint(pipe._base_models())
    assert len(expert.extra[FINGERPRINT_KEY]) == 16
    pipe.load_expert(expert, replace=True)
    assert pipe.save_experts(tmp_path)
    assert LoRAExpert.load(tmp_path / "noisy").extra[FINGERPRINT_KEY] == pipe.base_fingerprint
    other = tiny_restorer_pipeline(names=(), router=False, seed=1)
    foreign = _expert(other)
    foreign.extra[FINGERPRINT_KEY] = legacy_base_fingerprint(other._base_models())
    with pytest.raises(ExpertError, match="was trained on base"):
        pipe.load_expert(foreign, replace=True)


def test_expert_from_another_base_with_the_same_label_is_refused(pipe, tmp_path, photo, capsys):
    other = tiny_restorer_pipeline(names=(), router=False, seed=1)  # same architecture, same "tiny-nafnet" label
    foreign = _expert(other)
    with pytest.raises(ExpertError, match=f"{short_fingerprint(other.base_fingerprint)}.*"
                                          f"{short_fingerprint(pipe.base_fingerprint)}"):
        pipe.load_expert(foreign, replace=True)
    assert pipe.experts.names == ["noisy", "hazy"]
    pipe.save_pretrained(tmp_path / "model")
    foreign.save(tmp_path / "foreign")
    code = main(["restore", str(photo), "-o", str(tmp_path / "out.png"), "--model", str(tmp_path / "model"),
                 "--experts", str(tmp_path / "foreign")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.count("\n") == 1 and short_fingerprint(other.base_fingerprint) in err
    assert not (tmp_path / "out.png").exists()


def test_an_expert_replaces_the_loaded_one_only_when_asked(pipe, tmp_path, photo, capsys):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    before = pipe(x, weights={"noisy": 1.0}, output_type="pt").images
    new = _expert(pipe)
    with pytest.raises(ExpertError, match="replace=True"):
        pipe.load_expert(new)
    pipe.load_expert(new, replace=True)
    assert sorted(pipe.experts.names) == ["hazy", "noisy"]
    alone = tiny_restorer_pipeline(names=(), router=False)
    alone.load_expert(new)
    replaced = pipe(x, weights={"noisy": 1.0}, output_type="pt").images
    assert not torch.allclose(replaced, before)
    torch.testing.assert_close(replaced, alone(x, weights={"noisy": 1.0}, output_type="pt").images)
    new.save(tmp_path / "noisy")
    pipe.save_pretrained(tmp_path / "model")
    assert main(["restore", str(photo), "-o", str(tmp_path / "out.png"), "--model", str(tmp_path / "model"),
                 "--experts", str(tmp_path / "noisy")]) == EXIT_OK


def test_removing_experts_gives_the_plain_base(pipe):
    x = torch.rand(1, 3, 32, 32)
    pipe.remove_experts(["hazy"])
    assert pipe.experts.names == ["noisy"]
    pipe.remove_experts()
    plain = tiny_restorer_pipeline(names=(), router=False)
    assert pipe.experts.names == [] and not any("lora" in n for n, _ in pipe.restorer.named_parameters())
    torch.testing.assert_close(pipe(x, output_type="pt").images, plain(x, output_type="pt").images)


def _break(folder, how):
    meta = folder / "uir_expert.json"
    config = folder / "restorer" / "adapter_config.json"
    if how == "truncated":
        weights = folder / "restorer" / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    elif how == "no-degradation":
        data = json.loads(meta.read_text())
        del data["degradation"]
        meta.write_text(json.dumps(data))
    elif how == "not-an-object":
        meta.write_text("[1, 2]")
    elif how == "rank":
        data = json.loads(config.read_text())
        data["r"] = 64
        config.write_text(json.dumps(data))
    elif how == "targets":
        data = json.loads(config.read_text())
        data["target_modules"] = sorted(data["target_modules"]) + ["to_q_nowhere"]
        config.write_text(json.dumps(data))


@pytest.mark.parametrize("how, message", [
    ("truncated", "unreadable safetensors"),
    ("no-degradation", "missing degradation"),
    ("not-an-object", "JSON object"),
    ("rank", "says rank 64 but layer"),
    ("targets", "to_q_nowhere"),
])
def test_damaged_expert_is_one_line(pipe, tmp_path, photo, capsys, how, message):
    _expert(pipe).save(tmp_path / "noisy")
    _break(tmp_path / "noisy", how)
    with pytest.raises(ExpertError, match=message):
        pipe.load_expert(LoRAExpert.load(tmp_path / "noisy"), replace=True)
    pipe.save_pretrained(tmp_path / "model")
    code = main(["restore", str(photo), "-o", str(tmp_path / "out.png"), "--model", str(tmp_path / "model"),
                 "--experts", str(tmp_path / "noisy")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("index, message", [
    ("[1, 2]", "JSON object"),
    ('{"_class_name": "NoSuchPipeline"}', "NoSuchPipeline"),
    ("{not json", "not valid JSON"),
])
def test_damaged_model_index_is_one_line(tmp_path, photo, capsys, index, message):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_index.json").write_text(index)
    code = main(["restore", str(photo), "-o", str(tmp_path / "out.png"), "--model", str(tmp_path / "model")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.count("\n") == 1 and message in err and "config.json" not in err


def test_pickled_base_weights_need_allow_pickle(pipe, tmp_path, photo, capsys):
    pipe.save_pretrained(tmp_path / "model", safe_serialization=False)
    assert list((tmp_path / "model" / "restorer").glob("*.bin"))
    code = main(["restore", str(photo), "-o", str(tmp_path / "out.png"), "--model", str(tmp_path / "model")])
    assert code == EXIT_USAGE and "cannot load model" in capsys.readouterr().err
    assert load_pipeline(tmp_path / "model", allow_pickle=True).experts.names == ["noisy", "hazy"]
    with pytest.raises(OSError):
        load_pipeline(tmp_path / "model")


def test_a_refused_replacement_keeps_the_loaded_expert(pipe):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    before = pipe(x, weights={"noisy": 1.0}, output_type="pt").images
    other_label = _expert(pipe)
    other_label.base_model = "another-base"
    with pytest.raises(ExpertError, match="another-base"):
        pipe.load_expert(other_label, replace=True)
    assert pipe.experts.names == ["noisy", "hazy"]
    torch.testing.assert_close(pipe(x, weights={"noisy": 1.0}, output_type="pt").images, before)


@pytest.mark.parametrize("value", [float("nan"), 1e38])
def test_non_finite_or_absurd_weights_are_refused_at_load_naming_the_file(pipe, tmp_path, photo, capsys, value):
    """They used to be accepted: the output was all black, or the router said "confidence nan"."""
    expert = _expert(pipe)
    next(iter(expert.components["restorer"].state_dict.values()))[0].fill_(value)
    expert.save(tmp_path / "bad")
    with pytest.raises(ExpertError, match="bad/restorer/adapter_model.safetensors: tensor .* NaN, infinite or absurd"):
        LoRAExpert.load(tmp_path / "bad")
    pipe.save_pretrained(tmp_path / "model")
    code = main(["restore", str(photo), "-o", str(tmp_path / "out.png"), "--model", str(tmp_path / "model"),
                 "--experts", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.count("\n") == 1 and "NaN, infinite or absurd" in err

    with torch.no_grad():
        next(pipe.router.parameters()).fill_(value)
    pipe.save_pretrained(tmp_path / "bad-router")
    with pytest.raises(ValueError, match="router: tensor .* NaN, infinite or absurd"):
        RestorerPipeline.from_pretrained(tmp_path / "bad-router")
    capsys.readouterr()
    code = main(["restore", str(photo), "-o", str(tmp_path / "out.png"), "--model", str(tmp_path / "bad-router")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.count("\n") == 1 and "NaN, infinite or absurd" in err
    assert not (tmp_path / "out.png").exists()
