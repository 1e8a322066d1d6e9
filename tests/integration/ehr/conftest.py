pytest_plugins = ["tests.fixtures.ehr"]
