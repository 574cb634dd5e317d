"""The model registry (issue 29): every model by name, arguments checked from the builder's
signature, the conditional variants, and the recipe resolving names through it."""

from __future__ import annotations

import inspect

import pytest
import torch

from flowlab.models import registry
from flowlab.models.registry import MODELS, ModelSpec, create, get_model, model_names

TINY = {
    "realnvp": {"couplings": 2, "hidden": [8]},
    "nsf": {"couplings": 2, "hidden": [8], "bins": 4},
    "maf": {"transforms": 2, "hidden": [8]},
    "iaf": {"transforms": 2, "hidden": [8]},
    "multiscale": {"scales": 1, "hidden_channels": 4, "blocks": 1},
    "glow": {"levels": 1, "steps": 1, "hidden_channels": 4},
    "tarflow": {"width": 8, "blocks": 1, "depth": 1, "heads": 2},
    "class-conditional": {"transforms": 1, "hidden": [8]},
}


def test_every_model_of_the_issue_is_registered():
    assert set(model_names()) == set(TINY)
    assert model_names()[:4] == ("realnvp", "nsf", "maf", "iaf")


def _data(spec: ModelSpec) -> tuple[tuple[int, ...], int | None, torch.Tensor]:
    if spec.data == "vector":
        return (3,), None, torch.randn(4, 3)
    return (1, 4, 4), 17, torch.randint(0, 17, (4, 1, 4, 4)).float()


@pytest.mark.parametrize("name", list(TINY))
def test_each_model_builds_by_name_and_scores_data(name, perturb):
    spec = get_model(name)
    shape, levels, x = _data(spec)
    k = 3 if spec.needs_context else 0
    model = create(name, shape, levels, k, **TINY[name])
    c = torch.randn(4, k) if k else None
    assert model.log_prob(x, c).shape == (4,) if c is not None else model.log_prob(x).shape == (4,)


@pytest.mark.parametrize("name", [n for n, s in MODELS.items() if s.context_arg])
def test_the_conditional_variants_depend_on_their_context(name, perturb):
    spec = get_model(name)
    shape, levels, x = _data(spec)
    model = perturb(create(name, shape, levels, 2, **TINY[name]), scale=0.2)
    assert model.conditional
    c = torch.randn(4, 2)
    torch.manual_seed(1)  # the same dequantization noise for both
    a = model.log_prob(x, c)
    torch.manual_seed(1)
    b = model.log_prob(x, c.flip(0))
    assert a.shape == (4,) and not torch.allclose(a, b)
    s = model.sample(3, context=c[0])
    assert s.shape == (3, *shape) and bool(torch.isfinite(s).all())


def test_arguments_are_checked_from_the_builders_signature():
    with pytest.raises(ValueError, match="has no argument 'hiden'. Did you mean 'hidden'"):
        create("nsf", (2,), hiden=[8])
    with pytest.raises(ValueError, match="'couplings' must be int"):
        create("nsf", (2,), couplings="two")
    with pytest.raises(ValueError, match="'hidden_channels' must be int"):
        create("multiscale", (1, 8, 8), 17, hidden_channels=[4.5])
    # the accepted keys are exactly the builder's keyword parameters
    params = list(inspect.signature(get_model("maf").builder).parameters)[1:]
    with pytest.raises(ValueError) as err:
        create("maf", (2,), nope=1)
    assert f"It accepts: {', '.join(params)}." in str(err.value)
    # lists from YAML become tuples
    assert create("maf", (2,), hidden=[8], transforms=1).transform[0].made is not None


def test_wrong_data_or_context_say_what_to_use():
    with pytest.raises(ValueError, match="works on vectors .* use one of multiscale, glow"):
        create("realnvp", (1, 8, 8), 17)
    with pytest.raises(ValueError, match="needs image data"):
        create("glow", (2,))
    with pytest.raises(ValueError, match="cannot condition on a context .* realnvp, nsf"):
        create("glow", (1, 8, 8), 17, 10)
    with pytest.raises(ValueError, match="needs data with a context"):
        create("class-conditional", (1, 8, 8), 17)
    with pytest.raises(ValueError, match="disagrees with the data's context size 2"):
        create("nsf", (2,), None, 2, context_features=3)
    # without data, the context size may be given as the builder's own keyword
    assert create("maf", (2,), context_features=3, hidden=[8]).conditional
    with pytest.raises(ValueError, match="Did you mean 'tarflow'"):
        get_model("tarflo")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model(MODELS["maf"])


def test_recipes_resolve_models_through_the_registry_only():
    from flowlab.train import recipes
    from flowlab.train.recipes import Recipe, build_data, build_model

    source = inspect.getsource(recipes)
    assert "importlib" not in source and "multiscale_realnvp" not in source
    with pytest.raises(ValueError, match="unknown model 'nsff'. Did you mean 'nsf'"):
        Recipe(model="nsff")
    recipe = Recipe(data="moons-labels", model="nsf", n_train=256,
                    model_args={"couplings": 2, "hidden": [8]})
    data = build_data(recipe)
    assert data.context_features == 2 and data.train_set.tensors[1].shape == (256, 2)
    flow = build_model(recipe, data)
    assert flow.conditional
    x, c = data.train_set[:5]
    assert flow.log_prob(x, c).shape == (5,)
