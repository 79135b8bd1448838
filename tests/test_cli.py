"""The telesweep console script dispatches to each package's command line."""
import pytest

from ensemble import cli


def test_usage_and_unknown_command(capsys):
    assert cli.main([]) == 2 and "usage: telesweep" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert cli.main(["fly"]) == 2 and "unknown command 'fly'" in capsys.readouterr().err


@pytest.mark.parametrize("command, words", [("synth", "--rows"), ("sweep", "--time-budget"), ("plan", "--speedup"),
                                            ("build", "--decision"), ("demo", "--smoke-test"), ("check", "--fractions")])
def test_each_command_reaches_its_package(command, words, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--help"])
    assert stop.value.code == 0 and words in capsys.readouterr().out


def test_errors_keep_the_packages_exit_code(tmp_path, capsys):
    assert cli.main(["sweep", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "sweep file not found" in capsys.readouterr().err
