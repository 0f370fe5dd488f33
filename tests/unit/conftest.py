from pathlib import Path

import pytest

from tests.rules_fixtures import RulesDir


@pytest.fixture
def rules_dir(tmp_path: Path) -> RulesDir:
    return RulesDir(tmp_path)
