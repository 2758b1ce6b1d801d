"""Contract tests over the model registry: every model does a forward and backward pass on CPU."""
from __future__ import annotations

import pytest
import torch

from classifier.models import MAX_CONCENTRATION, MIN_CONCENTRATION, create_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_every_model(name, short_tree):
    torch.manual_seed(0)
    model = create_model(name, tree=short_tree)
    x = torch.rand(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features)
    conc = model.forward_head(feats)
    assert conc.shape == (2, len(short_tree.columns))
    assert ((conc > MIN_CONCENTRATION) & (conc < MAX_CONCENTRATION)).all()
    conc.log().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in model.backbone.parameters() for g in [g.grad])


def test_unknown_model_lists_known_names():
    with pytest.raises(KeyError) as exc:
        create_model("no_such_model")
    for name in list_models():
        assert name in str(exc.value)


def test_registry_has_the_issue_backbones():
    assert {"convnext_nano_tree", "convnext_atto_tree", "efficientnet_b0_tree", "resnet18_tree"} <= set(list_models())


def test_default_tree_is_gz_decals(decals_tree):
    model = create_model("test_convnext_tree")
    assert model.columns == decals_tree.columns


def test_mc_dropout_stays_on_in_eval_and_eval_forward_is_deterministic(short_tree):
    torch.manual_seed(0)
    model = create_model("test_convnext_tree", tree=short_tree, dropout_rate=0.5).eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        feats = model.forward_features(x)
        samples = model.sample(feats, 8)
    assert samples.shape == (8, 3, len(short_tree.columns))
    assert samples.std(0).mean() > 1e-3          # dropout masks differ between samples
    # one sample equals one full stochastic pass with the same dropout mask
    torch.manual_seed(1)
    one = model.sample(feats, 1)[0]
    torch.manual_seed(1)
    full = model.forward_head(model.forward_features(x), mc=True)
    assert torch.allclose(one, full, atol=1e-6)


def test_checkpoint_loading_full_and_backbone_only(tmp_path, short_tree, decals_tree):
    from classifier.checkpoint import Checkpoint, state_dict_cpu

    torch.manual_seed(0)
    model = create_model("test_convnext_tree", tree=short_tree).eval()
    path = Checkpoint(kind="morphology", model_name="test_convnext_tree", model_args=model.model_args,
                      state_dict=state_dict_cpu(model)).save(tmp_path / "m.pt")
    x = torch.rand(2, 3, 32, 32)
    same = create_model("test_convnext_tree", checkpoint_path=path).eval()
    assert same.columns == short_tree.columns
    assert torch.equal(same(x), model(x))
    # a new tree: the backbone is reused, the head is fresh
    other = create_model("test_convnext_tree", tree=decals_tree, checkpoint_path=path).eval()
    assert other.columns == decals_tree.columns
    assert torch.equal(other.forward_features(x), model.forward_features(x))
    with pytest.raises(ValueError, match="backbone"):
        create_model("resnet18_tree", checkpoint_path=path)
