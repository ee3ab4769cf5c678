"""train.optimizer: each name a config may write trains, and an unknown one is refused before
any job, naming the valid ones."""

from __future__ import annotations

import logging

import pytest
import torch
import yaml

from segpipe.models.build import build_loss, build_model
from segpipe.training.optimizers import OPTIMIZERS, build_optimizer
from segpipe.training.train import train_step
from segpipe.workflow.config import ConfigError, load_schema, validate_config

from helpers.repo import REPO, TINY_MODEL
from helpers.train import tiny_splits, train


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return tiny_splits(tmp_path_factory.mktemp("data"), n_train=4)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimizer_trains_a_step(name) -> None:
    torch.manual_seed(0)
    model = build_model(
        TINY_MODEL["arch"],
        TINY_MODEL["encoder"],
        3,
        **{k: TINY_MODEL[k] for k in ("encoder_depth", "decoder_channels")},
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = build_optimizer(name, model.parameters(), lr=0.01, weight_decay=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    images = torch.randn(2, 3, 32, 32)
    masks = torch.randint(0, 3, (2, 32, 32))
    loss = train_step(
        model, build_loss("ce"), opt, scaler, images, masks, torch.device("cpu"), None
    )
    assert torch.isfinite(loss)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoder") for k in changed) and any("decoder" in k for k in changed)
    kind = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    assert type(opt) is kind
    if name == "sgd":
        assert opt.param_groups[0]["momentum"] == 0.9
        assert all("momentum_buffer" in state for state in opt.state.values())


def test_a_run_trains_and_resumes_with_sgd(data, tmp_path, caplog) -> None:
    """The optimiser's state is what the checkpoint saves: a second run with more epochs
    resumes it rather than starting afresh."""
    options = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.8}
    ckpt, _ = train(data, tmp_path, epochs=1, **options)
    assert ckpt["config"]["train"]["optimizer"] == "sgd"
    assert ckpt["optimizer"]["param_groups"][0]["momentum"] == 0.8
    caplog.set_level(logging.INFO, logger="segpipe.training")
    ckpt, _ = train(data, tmp_path, epochs=2, **options)
    assert "resuming from" in caplog.text and "extending training from 1 to 2 epochs" in caplog.text
    assert [row["epoch"] for row in ckpt["history"]] == [1, 2]


def test_an_unknown_optimizer_is_refused_before_any_job_naming_the_valid_ones() -> None:
    schema = load_schema(REPO / "config" / "schema.yaml")
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text(encoding="utf-8"))
    config["train"]["optimizer"] = "adam"
    with pytest.raises(ConfigError) as info:
        validate_config(config, schema, check_models=False)
    assert "'train.optimizer': 'adam' is not one of ['adamw', 'sgd']" in str(info.value)


def test_train_model_refuses_an_unknown_optimizer_before_training(data, tmp_path) -> None:
    with pytest.raises(
        ValueError, match=r"'train.optimizer': unknown 'Adam'; valid: \['adamw', 'sgd'\]"
    ):
        train(data, tmp_path, optimizer="Adam")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="valid: "):
        build_optimizer(
            "lbfgs", [torch.nn.Parameter(torch.zeros(1))], lr=1, weight_decay=0, momentum=0
        )
