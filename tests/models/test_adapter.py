"""The adapter file: written once, loaded into a classifier equal to PERL, refused when wrong."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

from perl_pipeline.models import (
    PERL,
    AdapterFileError,
    BackboneMismatchError,
    load_adapter,
    make_adapter,
    read_adapter,
    save_adapter,
)
from perl_pipeline.models.adapter import class_prompts
from tests.conftest import TINY

CLASSES = ("red_circle", "blue square", "green triangle")
TEMPLATE = "a photo of a {}."
PERL_SETTINGS = {
    "split_layer": 2,
    "steps": 3,
    "rank": 1,
    "modalities": ["image", "text"],
    "share_projector": True,
    "share_layers": True,
    "projector_init": "default",
}
LAYER_STEP = {**PERL_SETTINGS, "split_layer": [1, 3], "share_projector": False, "share_layers": False}


def trained_like(clip, seed: int = 5, perl: dict = PERL_SETTINGS) -> PERL:
    """A PERL whose projectors are perturbed away from their initialisation (as training would)."""
    model = PERL(clip, **perl, seed=seed)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def tiny_adapter(clip):
    """The adapter of `trained_like(clip)` on the tiny random-weight CLIP (the predict tests')."""
    return make_adapter(
        trained_like(clip).projector_state_dict(),
        backbone={"model_name": TINY, "weights": "random:0"},
        perl=PERL_SETTINGS,
        template=TEMPLATE,
        classnames=CLASSES,
    )


def write(tmp_path, model, backbone=None, name="a.adapter.safetensors", perl=PERL_SETTINGS):
    backbone = backbone or {"model_name": TINY, "weights": "random:0", "pretrained": None}
    adapter = make_adapter(
        model.projector_state_dict() | {"recipe": {"seed": 5}},
        backbone=backbone,
        perl=perl,
        template=TEMPLATE,
        classnames=CLASSES,
        metrics={"base": {"step_3": 61.0}},
        benchmark="mine",
    )
    return save_adapter(adapter, tmp_path / name)


def test_round_trip_describes_itself(tmp_path, tiny_clip):
    path = write(tmp_path, trained_like(tiny_clip))
    adapter = read_adapter(path)
    assert adapter.classnames == CLASSES
    assert adapter.template == TEMPLATE
    assert adapter.perl == PERL_SETTINGS
    assert adapter.backbone["weights"] == "random:0"
    assert adapter.metrics == {"base": {"step_3": 61.0}}
    assert adapter.recipe == {"seed": 5} and adapter.extra == {"benchmark": "mine"}
    with pytest.raises(FileExistsError, match="exists"):
        write(tmp_path, trained_like(tiny_clip))


def test_loaded_classifier_equals_perl_and_step_0_is_zero_shot(tmp_path, tiny_clip, tokenize):
    model = trained_like(tiny_clip)
    classifier = load_adapter(write(tmp_path, model))
    images = torch.randn(4, 3, 64, 64)
    tokens = tokenize(class_prompts(TEMPLATE, CLASSES))
    with torch.no_grad():
        v, t = model.encode_image(images), model.encode_text(tokens)
        expected = (model.logit_scale * F.normalize(v[3], dim=-1) @ F.normalize(t[3], dim=-1).T).softmax(-1)
        image = F.normalize(tiny_clip.encode_image(images), dim=-1)
        zero = tiny_clip.logit_scale.exp() * image @ F.normalize(tiny_clip.encode_text(tokens), dim=-1).T
    assert torch.allclose(classifier(images), expected, atol=1e-5)
    assert torch.allclose(classifier(images, step=0), zero.softmax(-1), atol=1e-5)
    assert not torch.allclose(classifier(images), classifier(images, step=0), atol=1e-3)
    with pytest.raises(ValueError, match="outside 0..3"):
        classifier(images, step=4)


def test_open_vocabulary_classes(tmp_path, tiny_clip):
    classifier = load_adapter(write(tmp_path, trained_like(tiny_clip)))
    classifier.set_classes(["cat", "dog", "car", "tree"])
    probs = classifier(torch.randn(2, 3, 64, 64))
    assert probs.shape == (2, 4) and torch.allclose(probs.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="at least 2"):
        classifier.set_classes(["cat"])


def test_refuses_another_backbone_naming_both(tmp_path, tiny_clip):
    path = write(tmp_path, trained_like(tiny_clip))
    with pytest.raises(BackboneMismatchError, match=r"'PERL-Tiny-ViT'.*not 'ViT-B-16-quickgelu'"):
        load_adapter(path, model_name="ViT-B-16-quickgelu")


def test_refuses_another_weights_file_naming_both(tmp_path, tiny_clip):
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tiny_clip.state_dict().items()}, str(other))
    identity = {"model_name": TINY, "weights": "sha256:" + "0" * 64, "pretrained": str(other)}
    path = write(tmp_path, trained_like(tiny_clip), backbone=identity)
    with pytest.raises(BackboneMismatchError, match=r"sha256:0000.*but .*other.safetensors.* is sha256:"):
        load_adapter(path)
    missing = {**identity, "pretrained": str(tmp_path / "gone.safetensors")}
    path = write(tmp_path, trained_like(tiny_clip), backbone=missing, name="b.adapter.safetensors")
    with pytest.raises(BackboneMismatchError, match="gone.safetensors.*not here; pass that file"):
        load_adapter(path)


def test_toy_clip_adapter_loads_by_its_shipped_tag(tmp_path):
    from perl_pipeline.config import ClipConfig
    from perl_pipeline.models import backbone_identity, load_clip

    clip_config = ClipConfig(model_name="PERL-Toy-ViT", pretrained="toy_world", cache_dir=None)
    clip = load_clip("PERL-Toy-ViT", "toy_world")
    model = trained_like(clip)
    path = write(tmp_path, model, backbone=backbone_identity(clip_config) | {"pretrained": "toy_world"})
    assert read_adapter(path).backbone["weights"].startswith("sha256:")
    classifier = load_adapter(path)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model.encode_image(images)[3]
    got = classifier.model.encode_image(images)[3]
    assert torch.allclose(got, expected, atol=1e-5)  # the shipped weights and the trained projectors
    with pytest.raises(BackboneMismatchError, match="PERL-Toy-ViT with weights sha256:"):
        load_adapter(path, pretrained=str(tmp_path / "a.adapter.safetensors"))


def test_refuses_truncated_and_foreign_files(tmp_path, tiny_clip):
    path = write(tmp_path, trained_like(tiny_clip))
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(AdapterFileError, match="truncated or not a safetensors file"):
        load_adapter(truncated)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(AdapterFileError, match="truncated or not a safetensors file"):
        read_adapter(text)
    from safetensors.torch import save_file

    bare = tmp_path / "projector.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare), metadata={"perl_pipeline": json.dumps({"recipe": {}})})
    with pytest.raises(AdapterFileError, match="not a PERL adapter"):
        read_adapter(bare)
    with pytest.raises(AdapterFileError, match="does not exist"):
        read_adapter(tmp_path / "nothing.safetensors")


def test_a_multi_depth_untied_adapter_round_trips(tmp_path, tiny_clip):
    """PERL-LayerStep (docs/method.md §2.7): its depths and sharing are recorded and rebuilt."""
    model = trained_like(tiny_clip, perl=LAYER_STEP)
    path = write(tmp_path, model, perl=LAYER_STEP)
    assert read_adapter(path).perl == LAYER_STEP
    classifier = load_adapter(path)
    assert classifier.model.depths == (1, 3) and not classifier.model.share_layers
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(classifier.model.encode_image(images), model.encode_image(images))


def test_settings_without_share_layers_record_and_load_it_as_shared(tmp_path, tiny_clip):
    older = {k: v for k, v in PERL_SETTINGS.items() if k != "share_layers"}
    path = write(tmp_path, trained_like(tiny_clip), perl=older)
    assert read_adapter(path).perl["share_layers"] is True
    assert load_adapter(path).model.share_layers


def test_weights_of_another_loop_variant_are_refused(tmp_path, tiny_clip):
    layer = {**PERL_SETTINGS, "split_layer": [1, 3], "share_layers": False}
    path = write(tmp_path, trained_like(tiny_clip), perl=layer)  # shared weights, recorded as PERL-Layer
    with pytest.raises(AdapterFileError, match="do not fit its own settings.*share_layers"):
        load_adapter(path)
