"""Every error hermes raises on purpose is a HermesError with a stable code and exit status."""

from __future__ import annotations

import asyncio

import pytest

from agents.engine import EngineError
from agents.errors import HermesError
from agents.models import ModelFileError
from agents.pool.gguf_info import GGUFInfoError
from agents.pool.queue import NeverFitsError, PoolBusyError
from agents.session import UnknownPersonaError
from hermes_tui.batch import ScriptError
from hermes_tui.config import ConfigError
from hermes_tui.errors import Fail
from hermes_tui.readfile import InputFileError
from hermes_tui.resume import ResumeError
from hermes_tui.server.client import ServerDownError
from hermes_tui.server.listener import ListenError
from hermes_tui.store import Store, StoreError

KINDS = [
    EngineError, PoolBusyError, NeverFitsError, GGUFInfoError, UnknownPersonaError,
    ModelFileError, ServerDownError, ListenError, Fail, ConfigError, ScriptError,
    InputFileError, StoreError, ResumeError,
]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_each_error_kind_is_a_hermes_error_with_an_e_code(kind: type[HermesError]) -> None:
    assert issubclass(kind, HermesError)
    assert kind.code.startswith("E_") and kind.code == kind.code.upper()


def test_codes_that_scripts_already_see_keep_their_names() -> None:
    assert (PoolBusyError.code, NeverFitsError.code) == ("E_POOL_BUSY", "E_NEVER_FITS")
    assert (GGUFInfoError.code, ServerDownError.code) == ("E_MODEL_FILE", "E_SERVER_DOWN")
    assert ModelFileError.code == "E_MODELFILEERROR"  # as the session named it before
    assert (Fail("x", 2).exit_status, Fail("x", 3).exit_status) == (2, 3)
    assert (ConfigError("f", "k", "bad").exit_status, ScriptError("x").exit_status) == (2, 2)


def test_a_real_store_failure_carries_its_code(tmp_path) -> None:
    with pytest.raises(HermesError) as caught:
        asyncio.run(Store.open(tmp_path / "missing.db", readonly=True))
    assert caught.value.code == "E_STORE" and "no hermes database" in str(caught.value)
