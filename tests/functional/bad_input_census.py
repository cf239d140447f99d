"""Count the bad API inputs of ``bad_inputs.py`` that fail clearly, unclearly or silently.

clear   = raised, and the message names the argument;
unclear = raised, but the message does not name it (e.g. a ZeroDivisionError from inside);
silent  = returned without an error.
"as specified" additionally counts the cases whose exception type and message regex match the
table (what ``test_bad_input.py`` asserts).

Run: ``PYTHONPATH=$PWD/src python -m tests.functional.bad_input_census [-v]``
"""

from __future__ import annotations

import re
import sys
import warnings

from tests.functional.bad_inputs import all_cases


def classify() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {"clear": [], "unclear": [], "silent": [], "as specified": []}
    for case in all_cases():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                case.call()
        except Exception as error:
            message = str(error)
            first_line = message.splitlines()[0][:110] if message else ""
            named = re.search(rf"\b{re.escape(case.arg)}\b", message) is not None
            groups["clear" if named else "unclear"].append(
                f"{case.id}: {type(error).__name__}: {first_line}"
            )
            if isinstance(error, case.error) and re.search(case.match, message):
                groups["as specified"].append(case.id)
        else:
            groups["silent"].append(case.id)
    return groups


def main() -> None:
    groups = classify()
    total = sum(len(groups[k]) for k in ("clear", "unclear", "silent"))
    print(
        f"{total} bad inputs: {len(groups['clear'])} clear, {len(groups['unclear'])} unclear, "
        f"{len(groups['silent'])} silent; {len(groups['as specified'])} as specified"
    )
    if "-v" in sys.argv:
        for key in ("unclear", "silent"):
            for line in groups[key]:
                print(f"  {key}: {line}")


if __name__ == "__main__":
    main()
