import time

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from dmlbench.assets import GLYPH_V1_BACKBONE, GLYPH_V2_BACKBONE
from dmlbench.data import transforms
from dmlbench.data.glyphs.benchmark import Glyphs, GlyphsV1
from dmlbench.data.image_list import ImageListDataset
from dmlbench.errors import UserError
from dmlbench.eval.retrieval import retrieval_metrics
from dmlbench.nn.backbone import GLYPH_BACKBONE, create_backbone, shipped_weights_path
from dmlbench.nn.model import build_model


def test_weights_file_is_loaded_through_timm(tmp_path):
    source = create_backbone(GLYPH_BACKBONE, None)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = create_backbone(GLYPH_BACKBONE, str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_wrong_weights_file_is_one_line(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"nothing": torch.zeros(1)}, str(path))
    with pytest.raises(UserError, match="does not fit backbone"):
        create_backbone(GLYPH_BACKBONE, str(path))


def test_hub_weights_fail_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(UserError, match="--weights FILE"):
        create_backbone("vit_small_patch16_224.augreg_in21k", "pretrained")
    assert time.monotonic() - start < 10


def test_head_is_layernorm_linear_unit_vectors():
    model = build_model(GLYPH_BACKBONE, None, 32, 5)
    out = model(torch.randn(3, 3, 48, 48))
    assert out.shape == (3, 32)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.count_nonzero(model.head.proj.bias) == 0


def test_shipped_backbone_is_registered_and_loads():
    assert timm.is_model(GLYPH_BACKBONE)
    assert shipped_weights_path().is_file()
    model = timm.create_model(GLYPH_BACKBONE, pretrained=True, num_classes=0)
    assert model.num_features == 192 and len(model.blocks) == 6


def _test_class_r1(spec, backbone) -> float:
    records = [r for r in spec.records() if r.split == "test"]
    data = ImageListDataset(
        records, transforms.test_transform(spec.transform, 48, (0.5,) * 3, (0.5,) * 3)
    )
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        emb = torch.nn.functional.normalize(backbone(x), dim=1).numpy()
    return retrieval_metrics(emb, np.array(data.targets), ks=(1,))["recall@1"]


@pytest.mark.parametrize(
    ("spec", "backbone", "margin"),
    [
        # measured at commit time: 0.561 vs 0.050 (10 images per test class, eval style)
        (lambda: GlyphsV1(images_per_class=10), GLYPH_V1_BACKBONE, 0.40),
        # measured at commit time: 0.852 vs 0.032 (5 images per test class)
        (lambda: Glyphs(images_per_class=5), GLYPH_V2_BACKBONE, 0.60),
    ],
    ids=["glyphs-v1", "glyphs"],
)
def test_shipped_backbone_beats_random_init_on_unseen_classes(spec, backbone, margin):
    torch.manual_seed(0)
    data = spec()
    random_r1 = _test_class_r1(data, create_backbone(backbone, None).eval())
    shipped_r1 = _test_class_r1(data, create_backbone(backbone, "pretrained").eval())
    assert shipped_r1 >= 5 * random_r1 and shipped_r1 >= random_r1 + margin, (shipped_r1, random_r1)


def _run_probe(env: dict) -> str:
    import subprocess
    import sys

    code = "from dmlbench.nn.backbone import hub_unreachable_reason as r; print(r('timm/x'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return out.stdout.strip()


def test_hub_probe_goes_through_the_users_proxy_and_offline_switch():
    """The probe asks through huggingface_hub's client: a hub reachable only through an
    HTTP proxy (a loopback one here, the hub's host does not even resolve) is
    reachable; HF_HUB_OFFLINE=1 answers at once."""
    import http.server
    import os
    import threading

    requests = []

    class FakeProxy(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # what the hub answers for a file's metadata
            requests.append(self.path)
            self.send_response(200)
            self.send_header("ETag", '"0123"')
            self.send_header("X-Repo-Commit", "0" * 40)
            self.send_header("Content-Length", "10")
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(HTTP_PROXY=f"http://127.0.0.1:{server.server_port}")
        env.update(HF_ENDPOINT="http://hub.invalid")
        env.pop("HF_HUB_OFFLINE", None)
        assert _run_probe(env) == "None"
        assert "http://hub.invalid/timm/x/resolve/main/model.safetensors" in requests
        assert _run_probe({**env, "HF_HUB_OFFLINE": "1"}).startswith("OfflineModeIsEnabled")
    finally:
        server.shutdown()


def test_folding_the_stem_norms_keeps_the_stems_output():
    """Pretraining uses BatchNorm in the conv stem; the shipped stem has it folded into
    the convolutions (torch's fuse_conv_bn_weights): same output in eval mode."""
    from dmlbench.nn.backbone import ConvStemEmbed, fold_stem_norms

    torch.manual_seed(0)
    normed = ConvStemEmbed(img_size=48, patch_size=8, in_chans=3, embed_dim=16, norm=True)
    for module in normed.proj:
        if isinstance(module, torch.nn.BatchNorm2d):  # statistics a training run would leave
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    plain = ConvStemEmbed(img_size=48, patch_size=8, in_chans=3, embed_dim=16, norm=False)
    fold_stem_norms(normed, plain)
    images = torch.randn(2, 3, 48, 48)
    normed.eval()
    torch.testing.assert_close(plain(images), normed(images), rtol=1e-5, atol=1e-5)
