pytest_plugins = ["tests.fixtures.ehr", "tests.fixtures.writeback"]
