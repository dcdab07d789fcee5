from pathlib import Path

import pytest

from dupdetect.settings import Settings, SettingsError, load_settings


def test_defaults_serve_a_single_user_locally() -> None:
    settings = load_settings({})
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8000
    assert settings.database.database_url is None  # embedded PostgreSQL
    assert settings.model.model == "resnet50"
    assert settings.limits.max_image_bytes == 10 * 1024 * 1024
    assert settings.limits.max_images_per_request == 100


def test_values_are_read_and_typed() -> None:
    settings = load_settings(
        {
            "DUPDETECT_PORT": "9001",
            "DUPDETECT_DATA_DIR": "/srv/dupdetect",
            "DUPDETECT_MIGRATE_ON_START": "false",
            "DUPDETECT_NEAR_THRESHOLD": "0.85",
            "DUPDETECT_FETCH_ALLOW_NETWORKS": "127.0.0.0/8, 10.0.0.0/8",
            "DUPDETECT_DATABASE_URL": "postgresql://u:p@db:5432/dupdetect",
        }
    )
    assert settings.server.port == 9001
    assert settings.database.data_dir == Path("/srv/dupdetect")
    assert settings.database.migrate_on_start is False
    assert settings.duplicates.near_threshold == 0.85
    assert settings.fetch.fetch_allow_networks == ("127.0.0.0/8", "10.0.0.0/8")
    assert settings.database.database_url == "postgresql://u:p@db:5432/dupdetect"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DUPDETECT_PORT", "eighty"),
        ("DUPDETECT_PORT", "70000"),
        ("DUPDETECT_MODEL", "vgg16"),
        ("DUPDETECT_NEAR_THRESHOLD", "1.5"),
        ("DUPDETECT_MIGRATE_ON_START", "perhaps"),
        ("DUPDETECT_MAX_IMAGE_BYTES", "0"),
    ],
)
def test_malformed_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable) as caught:
        load_settings({variable: value})
    assert repr(value) in str(caught.value)


def test_unknown_variable_is_refused_by_name_with_the_one_meant() -> None:
    with pytest.raises(SettingsError, match=r"unknown setting DUPDETECT_PROT: did you mean DUPDETECT_PORT\?"):
        load_settings({"DUPDETECT_PROT": "8000"})
    with pytest.raises(SettingsError) as caught:
        load_settings({"DUPDETECT_COLOUR": "blue"})
    assert "did you mean" not in str(caught.value) and "DUPDETECT_PORT" not in str(caught.value)


def test_a_value_out_of_a_list_is_answered_with_the_list() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"DUPDETECT_MODEL": "resnet51"})
    assert str(caught.value) == (
        "DUPDETECT_MODEL='resnet51' is not valid: choose one of resnet18, resnet34, resnet50, resnet101, resnet152,"
        " efficientnet_lite0"
    )


def test_other_variables_are_ignored() -> None:
    assert load_settings({"HOME": "/root", "PATH": "/bin"}) == Settings()


@pytest.mark.parametrize("conflict", [{"DUPDETECT_PRECISION": "bf16"}, {"DUPDETECT_DEVICE": "cuda"}])
def test_the_onnx_runtime_refuses_what_it_cannot_run(conflict: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="DUPDETECT_RUNTIME=onnx runs fp32 on the CPU"):
        load_settings({"DUPDETECT_RUNTIME": "onnx", **conflict})
    assert load_settings({"DUPDETECT_RUNTIME": "onnx"}).model.runtime == "onnx"
