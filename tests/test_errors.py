"""Error messages: parameters named as the API spells them, or as flags on the command line; expected
failures of the environment turned into one line."""

from __future__ import annotations

import errno
import warnings

from smoothbench.errors import SettingsWarning, UserError, expected_failure, param


def test_parameters_are_keywords_in_the_api_and_flags_on_the_command_line():
    err = UserError(f"{param('batch_size')} must be at least 1, got 0; or skip with "
                    f"{param('verify', api='verify=False', cli='--no-verify')} [brackets, /paths/x_y.csv]")
    assert str(err) == "batch_size must be at least 1, got 0; or skip with verify=False [brackets, /paths/x_y.csv]"
    assert err.for_cli() == "--batch-size must be at least 1, got 0; or skip with --no-verify [brackets, /paths/x_y.csv]"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn(SettingsWarning(f"fewer {param('ensembles')}"))
    assert str(caught[0].message) == "fewer ensembles" and caught[0].message.for_cli() == "fewer --ensembles"


def test_expected_failures_become_one_line_and_bugs_stay_bugs():
    full = expected_failure(OSError(errno.ENOSPC, "No space left on device", "/data/out.csv"))
    assert str(full) == "the disk is full: /data/out.csv; fix that (or choose another path) and run again"
    denied = expected_failure(PermissionError(errno.EACCES, "Permission denied", "/root/x"))
    assert str(denied).startswith("permission denied: /root/x")
    encoding = expected_failure(UnicodeEncodeError("utf-8", "run-\udcff", 4, 5, "surrogates not allowed"))
    assert "cannot be encoded or decoded as UTF-8 (surrogates not allowed)" in str(encoding)
    own = UserError("mine")
    assert expected_failure(own) is own
    assert expected_failure(ValueError("a bug")) is None and expected_failure(KeyError("x")) is None
