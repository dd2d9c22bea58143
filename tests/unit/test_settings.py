"""Settings are explicit, typed keyword parameters, each checked at construction."""

from __future__ import annotations

import pytest

from gatewayasgi import GatewayMiddleware, Overflow, WebSocketGateway
from gatewayasgi.exceptions import ConfigurationError, InvalidSettingError, UnknownSettingError
from gatewayasgi.settings import SETTING_NAMES, Settings


@WebSocketGateway("/settings")
class SettingsGateway:
    pass


def build(**settings: object) -> GatewayMiddleware:
    return GatewayMiddleware(gateways=[SettingsGateway], **settings)  # type: ignore[arg-type]


def test_every_setting_is_an_explicit_parameter_of_the_middleware() -> None:
    import inspect

    parameters = inspect.signature(GatewayMiddleware.__init__).parameters
    assert set(SETTING_NAMES) <= set(parameters)
    for name in SETTING_NAMES:
        assert parameters[name].default == getattr(Settings(), name), name


def test_a_typo_is_refused_with_a_suggestion() -> None:
    with pytest.raises(
        UnknownSettingError, match=r"'alowed_origins' \(did you mean 'allowed_origins'\?\)"
    ):
        build(alowed_origins=["https://a.example"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_message_size": "1MB"}, r"max_message_size='1MB': Input should be a valid integer"),
        ({"allowed_origins": "http://localhost:3000"}, r"allowed_origins=.*not one string"),
        ({"heartbeat_interval": -1}, r"heartbeat_interval=-1: Input should be greater than 0"),
        ({"rate_limit": 0}, r"rate_limit=0: Input should be greater than 0"),
        (
            {"outbox_max_bytes": 0},
            r"outbox_max_bytes=0: Input should be greater than or equal to 1",
        ),
        ({"overflow": "explode"}, r"overflow='explode': Input should be 'close'"),
        ({"close_timeout": "5"}, r"close_timeout='5': Input should be a valid number"),
        ({"allowed_origins": ["ftp://x"]}, r"allowed origin must look like"),
    ],
)
def test_a_bad_value_names_the_setting(settings: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSettingError, match=message):
        build(**settings)


def test_errors_are_configuration_errors_and_familiar_builtins() -> None:
    assert issubclass(UnknownSettingError, ConfigurationError)
    assert issubclass(UnknownSettingError, TypeError)
    assert issubclass(InvalidSettingError, ValueError)


def test_good_values_are_normalised() -> None:
    app = build(
        allowed_origins=["https://a.example"], overflow="drop_new", close_timeout=2, rate_limit=None
    )
    assert app.settings.allowed_origins == ("https://a.example:443",)
    assert app.settings.overflow is Overflow.DROP_NEW
    assert app.settings.close_timeout == 2.0
    assert app.settings.rate_limit is None


def test_defaults_are_safe_for_the_open_internet() -> None:
    settings = Settings()
    assert settings.outbox_max_bytes == 1024 * 1024
    assert settings.outbox_budget is not None and settings.outbox_budget <= 512 * 1024 * 1024
