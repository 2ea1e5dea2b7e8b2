"""CrossGuard policy pack run by every CI preview (`pulumi preview --policy-pack policy`).

The policies live in the package policies/ (one module per thing they guard), where tests
import them without starting the analyzer.

Imports the package policies/ only: nothing of the program (components/, __main__.py).
"""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the analyzer's cwd may differ

from policies import POLICIES

PolicyPack(
    name="cilium-eks",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
