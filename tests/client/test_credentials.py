"""Token files (`--token-file`, FARMHAND_TOKEN_FILE) and the order tokens are taken in."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from farmhand.cli.main import main
from farmhand.client import FarmhandClient, FarmhandError, credentials
from farmhand.client.credentials import TokenError, read_token_file, resolve_token


def private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_token_file_gives_its_one_line(tmp_path: Path) -> None:
    assert read_token_file(private(tmp_path / "t", "fh_secret\n")) == "fh_secret"


@pytest.mark.parametrize(
    ("text", "mode", "problem"),
    [
        (None, 0o600, "does not exist"),
        ("", 0o600, "is empty"),
        (" \n\n", 0o600, "is empty"),
        ("fh_a\nfh_b\n", 0o600, "more than one token"),
        ("fh_secret\n", 0o644, "open to others (mode 0644); make it private: chmod 600"),
        ("fh_secret\n", 0o640, "open to others (mode 0640)"),
        ("fh_secret\n", 0o602, "open to others (mode 0602)"),
    ],
)
def test_an_unusable_token_file_is_refused_by_name(
    tmp_path: Path, text: str | None, mode: int, problem: str
) -> None:
    path = tmp_path / "token"
    if text is not None:
        private(path, text, mode)
    with pytest.raises(TokenError, match=f"token file {path} .*") as caught:
        read_token_file(path)
    assert problem in str(caught.value)


def test_tokens_are_taken_from_flags_then_the_environment(tmp_path: Path) -> None:
    file = str(private(tmp_path / "t", "from-file\n"))
    env = {"FARMHAND_TOKEN": "from-env", "FARMHAND_TOKEN_FILE": file}
    assert resolve_token("flag", None, env) == "flag"
    assert resolve_token(None, file, {"FARMHAND_TOKEN": "from-env"}) == "from-file"
    assert resolve_token(None, None, env) == "from-env"
    assert resolve_token(None, None, {"FARMHAND_TOKEN_FILE": file}) == "from-file"
    assert resolve_token(None, None, {}) is None
    with pytest.raises(TokenError, match="not both"):
        resolve_token("flag", file, {})


@pytest.mark.parametrize("command", [["status"], ["ls", "campaigns"], ["agent"]])
@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_the_cli_names_a_bad_token_file_and_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], problem: str
) -> None:
    path = tmp_path / "token"
    if problem == "empty":
        private(path, "")
    server = ["--server", "http://127.0.0.1:9"]  # nothing listens: nothing may be asked
    assert main([*command, *server, "--token-file", str(path)]) == 1
    expected = "does not exist" if problem == "missing" else "is empty"
    assert f"farmhand: error: token file {path} {expected}" in capsys.readouterr().err


def test_the_environments_token_file_serves_cli_and_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FARMHAND_TOKEN", raising=False)
    monkeypatch.setenv("FARMHAND_TOKEN_FILE", str(tmp_path / "nowhere"))
    assert main(["status", "--server", "http://127.0.0.1:9"]) == 1
    assert f"token file {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err

    monkeypatch.setenv("FARMHAND_TOKEN_FILE", str(private(tmp_path / "t", "fh_file\n")))
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"status": "ok", "version": "x", "database": "sqlite"})

    with FarmhandClient("http://farm", transport=httpx.MockTransport(handler)) as client:
        client.health()
    assert seen == ["Bearer fh_file"]
    private(tmp_path / "t", "fh_file\n", 0o644)
    with pytest.raises(FarmhandError, match="chmod 600"):
        FarmhandClient("http://farm")


@pytest.mark.parametrize(
    ("argv", "rest", "token"),
    [
        (["agent", "--token", "T", "--slots", "2"], ["agent", "--slots", "2"], "T"),
        (["agent", "--token=T=x"], ["agent"], "T=x"),
        (["agent", "--token"], ["agent", "--token"], None),  # argparse names what is missing
        (["agent", "--", "--token", "T"], ["agent", "--", "--token", "T"], None),
        (["agent", "--token-file", "f"], ["agent", "--token-file", "f"], None),
    ],
)
def test_the_reexec_takes_token_flags_off_the_command_line(
    argv: list[str], rest: list[str], token: str | None
) -> None:
    assert credentials._without_token_flag(argv) == (rest, token)
