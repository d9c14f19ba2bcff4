import pytest

from dmlbench.config import RunConfig, make_config, resolve
from dmlbench.data.spec import get_dataset
from dmlbench.errors import UserError


def test_yaml_then_cli_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: full-ft\nepochs: 3\nlr: 0.01\nmethod_options: {a: 1}\n")
    config = make_config(path, {"epochs": 5, "lr": None, "method_options": {"b": "2"}})
    assert config.method == "full-ft"
    assert config.epochs == 5  # the flag wins
    assert config.lr == 0.01  # an unset flag does not erase the YAML value
    assert config.method_options == {"a": 1, "b": "2"}


def test_recipe_fills_unset_keys():
    config = resolve(RunConfig(method="full-ft", epochs=2), get_dataset("glyphs"))
    recipe = get_dataset("glyphs").recipe
    assert config.epochs == 2
    assert config.lr == recipe.lr and config.backbone == recipe.backbone


def test_recipe_settings_for_one_method_yield_to_explicit_values():
    glyphs = get_dataset("glyphs")
    probe = resolve(RunConfig(method="linear-probe"), glyphs)
    assert (probe.lr, probe.images_per_class) == (3e-3, 1)
    full = resolve(RunConfig(method="full-ft"), glyphs)
    assert (full.lr, full.images_per_class) == (glyphs.recipe.lr, glyphs.recipe.images_per_class)
    explicit = resolve(RunConfig(method="linear-probe", lr=1e-4, images_per_class=4), glyphs)
    assert (explicit.lr, explicit.images_per_class) == (1e-4, 4)


@pytest.mark.parametrize("name", ["glyphs", "cub", "cars", "sop", "inshop"])
def test_shipped_per_method_recipe_settings_name_real_methods_and_keys(name):
    from dmlbench.config import CONFIG_KEYS
    from dmlbench.registry import get_method, method_names

    recipe = get_dataset(name).recipe
    assert set(recipe.defaults_for("full-ft")) <= set(CONFIG_KEYS)
    for method, settings in recipe.per_method.items():
        assert method in method_names()
        assert set(settings) <= set(CONFIG_KEYS)
        resolved = resolve(RunConfig(method=method), get_dataset(name))  # batches compose
        get_method(method).from_values(resolved.method_options)  # options exist and are valid


def test_recipe_method_options_fill_only_what_the_config_leaves_unset():
    cars = get_dataset("cars")
    resolved = resolve(RunConfig(method="vptsp-g", method_options={"alpha": 0.3}), cars)
    assert resolved.method_options["alpha"] == 0.3  # the user's value wins
    assert resolved.method_options["prompts"] == 80  # the rest from the reference's Cars config


def test_weights_none_means_random_init():
    # "none" (random init) stays explicit, so a resolved config written to YAML means the same
    assert resolve(make_config(None, {"weights": "none"}), get_dataset("glyphs")).weights == "none"


@pytest.mark.parametrize(
    "text, message",
    [
        ("epochs: [1\n", r"c\.yaml: line \d+ is not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("epoch: 3\n", "unknown option 'epoch'; valid options: method, "),
        ("epochs: three\n", "option epochs='three' must be an integer"),
        ("epochs: -2\n", "epochs must be ≥ 0"),
        ("batch_size: 0\n", "batch_size must be ≥ 1"),
        ("optimizer: adam\n", "must be one of sgd, adamw"),
        ("method_options: [1, 2]\n", "method_options must be a mapping such as"),
        ("lr: .nan\n", "lr must be > 0, got nan"),
        ("lr: .inf\n", "lr must be > 0, got inf"),
        ("num_workers: -1\n", "num_workers must be ≥ 0"),
        ("val_fraction: 1.5\n", "val_fraction must be > 0 and < 1, got 1.5"),
        ("momentum: 1.0\n", "momentum must be ≥ 0 and < 1"),
        ("loss_margin: .nan\n", "loss_margin must be finite"),
        ("lr: !!python/object/apply:os.system [echo]\n", "line 1 has a tag that is not plain"),
        ("mlflow_uri: http://me:secret@host\n", None),  # taken apart, see below
    ],
)
def test_bad_yaml_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    if message is None:
        return
    with pytest.raises(UserError, match=message):
        make_config(path, {})


def test_missing_yaml_file(tmp_path):
    with pytest.raises(UserError, match="nope.yaml: cannot read"):
        make_config(tmp_path / "nope.yaml", {})


def test_batch_must_divide_into_classes():
    with pytest.raises(UserError, match="batch_size 10 is not divisible by images_per_class 4"):
        resolve(RunConfig(batch_size=10, images_per_class=4), get_dataset("glyphs"))


def test_yaml_method_options_are_typed(tmp_path):
    from dmlbench.run.execute import prepare

    path = tmp_path / "vpt.yaml"
    path.write_text("method: vpt\nmethod_options: {layers: 2, prompts: '3', bias: true}\n")
    _, _, method = prepare(make_config(path, {}))
    assert (method.options.layers, method.options.prompts, method.options.bias) == (2, 3, True)
    assert method.label == "vpt (B)"


def test_unknown_method_option_lists_the_valid_ones(tmp_path):
    from dmlbench.run.execute import prepare

    path = tmp_path / "vpt.yaml"
    path.write_text("method: vpt\nmethod_options: {layer: 2}\n")
    with pytest.raises(UserError) as error:
        prepare(make_config(path, {}))
    assert str(error.value) == (
        "method vpt: unknown option 'layer'; valid options: "
        "bias, layers, prompts, taper, init, dropout, carry"
    )


def test_list_options_convert_from_text_or_yaml_and_others_fail_in_one_line():
    from dataclasses import dataclass, field

    from dmlbench.options import build_options, describe_options

    @dataclass
    class Opts:
        blocks: list[int] = field(default_factory=list)
        pair: tuple[float, float] = (0.0, 1.0)
        when: object = None  # a type options cannot read

    owner = "method demo"
    assert build_options(Opts, {"blocks": "1,2, 3"}, owner).blocks == [1, 2, 3]
    assert build_options(Opts, {"blocks": "[4, 5]"}, owner).blocks == [4, 5]
    assert build_options(Opts, {"blocks": [6]}, owner).blocks == [6]
    assert build_options(Opts, {"blocks": ""}, owner).blocks == []
    assert build_options(Opts, {"pair": "0.5,2"}, owner).pair == (0.5, 2.0)
    with pytest.raises(UserError, match=r"^method demo: option blocks='1,x' must be an integer$"):
        build_options(Opts, {"blocks": "1,x"}, owner)
    with pytest.raises(UserError, match="option pair='1' must have exactly 2 items"):
        build_options(Opts, {"pair": "1"}, owner)
    with pytest.raises(UserError, match="option when='x' has type object, which dmlbench cannot"):
        build_options(Opts, {"when": "x"}, owner)
    assert [row[1] for row in describe_options(Opts)] == ["list of int", "list of float", "object"]


def test_a_non_utf8_file_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"label: caf\xe9\n")
    with pytest.raises(UserError, match=r"c\.yaml: not UTF-8 text \(byte 0xe9 at offset 10\)"):
        make_config(path, {})


def test_credentials_in_the_tracker_uri_are_never_kept(tmp_path, monkeypatch):
    """They go to MLflow's own variables (unless set), the config keeps the bare URI,
    and a config carrying credentials cannot even be built."""
    import dataclasses

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    config = make_config(None, {"mlflow_uri": "https://me:p%40ss@mlflow.lab:5000/api"})
    assert config.mlflow_uri == "https://mlflow.lab:5000/api"
    assert "p@ss" not in str(dataclasses.asdict(config)) and "me" not in config.mlflow_uri
    import os

    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "me"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "p@ss"
    with pytest.raises(ValueError, match="mlflow_uri must not carry credentials"):
        RunConfig(mlflow_uri="http://me:secret@host")
